//! Bit packing of integer codes into the formats' words, and back.
//!
//! Codes are `u8` values below `2^bits`, row-major `[rows, cols]`. Packed
//! int32 words are handled as `u32`, lowest bits first (QUANT_FORMATS.md):
//! * GPTQ `qweight` packs along K (rows): [`pack_rows`].
//! * GPTQ `qzeros` packs along N (columns): [`pack_cols`].
//! * AWQ `qweight` / `qzeros` pack along N with an interleave: [`pack_awq`].
//! * NVFP4 packs two E2M1 codes per byte, element 2j in the low nibble:
//!   [`pack_nibbles`].
//!
//! Every function checks its sizes and returns a typed error instead of
//! panicking; the unpackers are total on any word values.

use crate::error::{Error, Result};

const OP: &str = "pack";

/// AWQ interleave: nibble `i` of a word holds column `AWQ_ORDER[i]`.
pub const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Inverse of [`AWQ_ORDER`]: column `j` of a word sits in nibble
/// `AWQ_REVERSE[j]`, i.e. `(word >> 4·AWQ_REVERSE[j]) & 0xF`.
pub const AWQ_REVERSE: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

/// What GPTQ v1 (`format: "gptq"`) subtracts from each whole qzeros word:
/// one per field, with wrapping arithmetic (so a field holding z = 0 borrows
/// from its neighbour, and adding it back restores it exactly).
pub fn v1_offset(bits: u32) -> Result<u32> {
    match bits {
        4 => Ok(0x1111_1111),
        8 => Ok(0x0101_0101),
        other => Err(Error::invalid(
            OP,
            "bits",
            format!("GPTQ zero words exist for 4 and 8 bits, not {other}"),
        )),
    }
}

/// Values per 32-bit word for `bits` (4 → 8, 8 → 4).
pub fn per_word(bits: u32) -> Result<usize> {
    match bits {
        4 => Ok(8),
        8 => Ok(4),
        other => Err(Error::invalid(
            OP,
            "bits",
            format!("only 4 and 8 bits are packed, not {other}"),
        )),
    }
}

fn check_codes(codes: &[u8], rows: usize, cols: usize, bits: u32) -> Result<()> {
    if rows.checked_mul(cols) != Some(codes.len()) {
        return Err(Error::invalid(
            OP,
            "codes",
            format!("{} codes for a [{rows}, {cols}] matrix", codes.len()),
        ));
    }
    if let Some(i) = codes.iter().position(|&c| u32::from(c) >> bits != 0) {
        return Err(Error::invalid(
            OP,
            "codes",
            format!("code {} at index {i} does not fit in {bits} bits", codes[i]),
        ));
    }
    Ok(())
}

fn check_multiple(arg: &'static str, dim: usize, pf: usize) -> Result<()> {
    if !dim.is_multiple_of(pf) {
        return Err(Error::invalid(
            OP,
            arg,
            format!("{dim} is not a multiple of {pf} values per word"),
        ));
    }
    Ok(())
}

/// `a·b`, or an error when the product overflows.
fn size(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| Error::invalid(OP, "shape", format!("{a}·{b} overflows usize")))
}

fn check_words(len: usize, expected: Result<usize>) -> Result<()> {
    let expected = expected?;
    if len != expected {
        return Err(Error::invalid(
            OP,
            "words",
            format!("{len} words, expected {expected}"),
        ));
    }
    Ok(())
}

/// Packs `[rows, cols]` codes along rows into `[rows/pf, cols]` words:
/// code `(r, c)` sits at bits `b·(r % pf)` of word `(r / pf, c)`.
pub fn pack_rows(codes: &[u8], rows: usize, cols: usize, bits: u32) -> Result<Vec<u32>> {
    let pf = per_word(bits)?;
    check_codes(codes, rows, cols, bits)?;
    check_multiple("rows", rows, pf)?;
    let mut words = vec![0u32; rows / pf * cols];
    for r in 0..rows {
        for c in 0..cols {
            let shift = bits * (r % pf) as u32;
            words[r / pf * cols + c] |= u32::from(codes[r * cols + c]) << shift;
        }
    }
    Ok(words)
}

/// Inverse of [`pack_rows`]: `q[r, c] = (words[r/pf, c] >> b·(r % pf)) & mask`.
pub fn unpack_rows(words: &[u32], rows: usize, cols: usize, bits: u32) -> Result<Vec<u8>> {
    let pf = per_word(bits)?;
    check_multiple("rows", rows, pf)?;
    check_words(words.len(), size(rows / pf, cols))?;
    let mask = (1u32 << bits) - 1;
    let mut codes = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let shift = bits * (r % pf) as u32;
        for c in 0..cols {
            codes.push(((words[r / pf * cols + c] >> shift) & mask) as u8);
        }
    }
    Ok(codes)
}

/// Packs `[rows, cols]` codes along columns into `[rows, cols/pf]` words:
/// code `(r, c)` sits at bits `b·(c % pf)` of word `(r, c / pf)`.
pub fn pack_cols(codes: &[u8], rows: usize, cols: usize, bits: u32) -> Result<Vec<u32>> {
    let pf = per_word(bits)?;
    check_codes(codes, rows, cols, bits)?;
    check_multiple("cols", cols, pf)?;
    let mut words = vec![0u32; rows * (cols / pf)];
    for r in 0..rows {
        for c in 0..cols {
            let shift = bits * (c % pf) as u32;
            words[r * (cols / pf) + c / pf] |= u32::from(codes[r * cols + c]) << shift;
        }
    }
    Ok(words)
}

/// Inverse of [`pack_cols`].
pub fn unpack_cols(words: &[u32], rows: usize, cols: usize, bits: u32) -> Result<Vec<u8>> {
    let pf = per_word(bits)?;
    check_multiple("cols", cols, pf)?;
    check_words(words.len(), size(rows, cols / pf))?;
    let mask = (1u32 << bits) - 1;
    let mut codes = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let shift = bits * (c % pf) as u32;
            codes.push(((words[r * (cols / pf) + c / pf] >> shift) & mask) as u8);
        }
    }
    Ok(codes)
}

/// Packs 4-bit `[rows, cols]` codes along columns with the AWQ interleave
/// into `[rows, cols/8]` words: nibble `i` of word `w` holds column
/// `8w + AWQ_ORDER[i]`.
pub fn pack_awq(codes: &[u8], rows: usize, cols: usize) -> Result<Vec<u32>> {
    check_codes(codes, rows, cols, 4)?;
    check_multiple("cols", cols, 8)?;
    let mut words = vec![0u32; rows * (cols / 8)];
    for r in 0..rows {
        for w in 0..cols / 8 {
            let mut word = 0u32;
            for (nibble, &column) in AWQ_ORDER.iter().enumerate() {
                word |= u32::from(codes[r * cols + 8 * w + column]) << (4 * nibble);
            }
            words[r * (cols / 8) + w] = word;
        }
    }
    Ok(words)
}

/// Inverse of [`pack_awq`]: column `j` of word `w` is
/// `(word >> 4·AWQ_REVERSE[j]) & 0xF`.
pub fn unpack_awq(words: &[u32], rows: usize, cols: usize) -> Result<Vec<u8>> {
    check_multiple("cols", cols, 8)?;
    check_words(words.len(), size(rows, cols / 8))?;
    let mut codes = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let word = words[r * (cols / 8) + c / 8];
            codes.push(((word >> (4 * AWQ_REVERSE[c % 8])) & 0xF) as u8);
        }
    }
    Ok(codes)
}

/// Packs 4-bit `[rows, cols]` codes (cols even) two per byte into
/// `[rows, cols/2]` bytes: element `2j` in the low nibble of byte `j`,
/// element `2j+1` in the high nibble (NVFP4).
pub fn pack_nibbles(codes: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>> {
    check_codes(codes, rows, cols, 4)?;
    check_multiple("cols", cols, 2)?;
    Ok(codes
        .chunks_exact(2)
        .map(|pair| pair[0] | (pair[1] << 4))
        .collect())
}

/// Inverse of [`pack_nibbles`]: `rows·cols/2` bytes to `rows·cols` codes.
pub fn unpack_nibbles(bytes: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>> {
    check_multiple("cols", cols, 2)?;
    check_words(bytes.len(), size(rows, cols / 2))?;
    Ok(bytes.iter().flat_map(|&b| [b & 0xF, b >> 4]).collect())
}
