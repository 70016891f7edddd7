//! The quantized formats on the host: E4M3 / E2M1 codecs against the spec's
//! tables, bit packing, GPTQ v1/v2 zero storage, act-order, the AWQ
//! interleave, NVFP4 nibble order and global-scale conventions, and
//! quantize → dequantize error bounds. Layouts: shared/QUANT_FORMATS.md.

use half::{bf16, f16};
use radiant::quant::pack::{self, AWQ_ORDER, AWQ_REVERSE};
use radiant::quant::{
    AwqLayout, AwqQuantizeParams, AwqTensors, AwqWeight, GlobalScale, GptqLayout,
    GptqQuantizeParams, GptqTensors, GptqWeight, GroupSize, Nvfp4Producer, Nvfp4Tensors,
    Nvfp4Weight, ZeroFormat, e2m1, e4m3,
};
use radiant::{DType, HostTensor};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_weight(seed: u64, n: usize, k: usize, scale: f32) -> HostTensor {
    let mut rng = Rng(seed);
    let values: Vec<f32> = (0..n * k).map(|_| rng.uniform() * scale).collect();
    HostTensor::from_f32(DType::F32, &[n, k], &values).unwrap()
}

/// The next f32 above / below a positive finite value (f32::next_up is
/// newer than the crate's MSRV).
fn up(x: f32) -> f32 {
    f32::from_bits(x.to_bits() + 1)
}
fn down(x: f32) -> f32 {
    f32::from_bits(x.to_bits() - 1)
}

fn f32s(t: &HostTensor) -> Vec<f32> {
    t.to_f32_vec()
}

// ---------------------------------------------------------------------------
// E4M3

/// The spec's formula, evaluated independently of `e4m3::decode`: integer
/// significand times an exact power of two built from its bits.
fn e4m3_expected(byte: u8) -> f64 {
    let sign = if byte & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = i32::from((byte >> 3) & 0xF);
    let m = i64::from(byte & 7);
    if e == 15 && m == 7 {
        return f64::NAN;
    }
    let pow2 = |p: i32| f64::from_bits(((1023 + p) as u64) << 52);
    if e == 0 {
        sign * m as f64 * pow2(-9)
    } else {
        sign * (8 + m) as f64 * pow2(e - 7 - 3)
    }
}

#[test]
fn e4m3_all_256_bytes_match_the_spec_table() {
    for byte in 0..=255u8 {
        let want = e4m3_expected(byte);
        let got = e4m3::decode(byte);
        if want.is_nan() {
            assert!(got.is_nan(), "0x{byte:02X} must be NaN");
            assert!(e4m3::is_nan(byte));
            assert!(byte == 0x7F || byte == 0xFF);
            continue;
        }
        assert!(!e4m3::is_nan(byte));
        assert_eq!(
            f64::from(got).to_bits(),
            want.to_bits(),
            "0x{byte:02X}: got {got}, want {want}"
        );
        assert_eq!(e4m3::encode(got), byte, "encode(decode(0x{byte:02X}))");
    }
    // Literal spot checks from the spec.
    let table: [(u8, f32); 13] = [
        (0x00, 0.0),
        (0x01, 0.001_953_125), // 2^-9, the smallest subnormal
        (0x07, 0.013_671_875), // 7·2^-9
        (0x08, 0.015_625),     // 2^-6, the smallest normal
        (0x0F, 0.029_296_875), // 1.875·2^-6
        (0x38, 1.0),
        (0x3F, 1.875),
        (0x40, 2.0),
        (0x70, 128.0),
        (0x78, 256.0),
        (0x7E, 448.0),
        (0xB8, -1.0),
        (0xFE, -448.0),
    ];
    for (byte, value) in table {
        assert_eq!(e4m3::decode(byte), value, "0x{byte:02X}");
    }
    assert_eq!(
        e4m3::decode(0x80).to_bits(),
        (-0.0f32).to_bits(),
        "0x80 is -0"
    );
}

#[test]
fn e4m3_encode_rounds_to_nearest_even_and_saturates() {
    // Every midpoint between adjacent positive codes goes to the even code;
    // just off the midpoint goes to the nearer one. (Code values have at most
    // 4 significant bits, so the midpoints are exact in f32.)
    for c in 0u8..0x7E {
        let (lo, hi) = (e4m3_expected(c), e4m3_expected(c + 1));
        let mid = ((lo + hi) / 2.0) as f32;
        assert_eq!(f64::from(mid), (lo + hi) / 2.0);
        let even = if c % 2 == 0 { c } else { c + 1 };
        assert_eq!(
            e4m3::encode(mid),
            even,
            "midpoint of 0x{c:02X}/0x{:02X}",
            c + 1
        );
        assert_eq!(e4m3::encode(-mid), 0x80 | even);
        assert_eq!(e4m3::encode(down(mid)), c);
        assert_eq!(e4m3::encode(up(mid)), c + 1);
    }
    // Clamp first (no NaN past 464), keep the sign, NaN → 0x7F.
    assert_eq!(e4m3::encode(448.0), 0x7E);
    assert_eq!(e4m3::encode(463.9), 0x7E);
    assert_eq!(e4m3::encode(464.0), 0x7E);
    assert_eq!(e4m3::encode(1e9), 0x7E);
    assert_eq!(e4m3::encode(f32::INFINITY), 0x7E);
    assert_eq!(e4m3::encode(f32::NEG_INFINITY), 0xFE);
    assert_eq!(e4m3::encode(f32::NAN), 0x7F);
    assert_eq!(e4m3::encode(-1e-30), 0x80);
    assert_eq!(e4m3::encode(0.0009765625), 0x00, "2^-10 ties to 0");
    assert_eq!(e4m3::encode(0.0029296875), 0x02, "3·2^-10 ties to 0x02");
}

// ---------------------------------------------------------------------------
// E2M1

#[test]
fn e2m1_decode_table_and_encode_rules() {
    let table = [
        0.0f32, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
    ];
    for (code, &value) in table.iter().enumerate() {
        let got = e2m1::decode(code as u8);
        assert_eq!(got.to_bits(), value.to_bits(), "code {code}");
        assert_eq!(e2m1::encode(value), code as u8, "encode({value})");
    }
    // Ties to even, as listed in the spec.
    let ties = [
        (0.25, 0.0),
        (0.75, 1.0),
        (1.25, 1.0),
        (1.75, 2.0),
        (2.5, 2.0),
        (3.5, 4.0),
        (5.0, 4.0),
    ];
    for (input, want) in ties {
        assert_eq!(e2m1::decode(e2m1::encode(input)), want, "tie {input}");
        assert_eq!(e2m1::decode(e2m1::encode(-input)), -want, "tie -{input}");
        // Just above a tie goes up, just below goes down.
        let up = e2m1::decode(e2m1::encode(up(input)));
        let down = e2m1::decode(e2m1::encode(down(input)));
        assert!(up > down, "around {input}: {down} .. {up}");
    }
    assert_eq!(e2m1::encode(5.0001), 7, "above 5 saturates to 6");
    assert_eq!(e2m1::encode(100.0), 7);
    assert_eq!(e2m1::encode(f32::INFINITY), 7);
    assert_eq!(e2m1::encode(-100.0), 15);
    assert_eq!(e2m1::encode(-0.01), 8, "a tiny negative is -0 (code 8)");
    assert_eq!(e2m1::encode(0.01), 0);
}

// ---------------------------------------------------------------------------
// Packing

#[test]
fn pack_round_trips_and_bit_positions() {
    let mut rng = Rng(7);
    for bits in [4u32, 8] {
        let pf = (32 / bits) as usize;
        let (rows, cols) = (3 * pf, 2 * pf);
        let codes: Vec<u8> = (0..rows * cols)
            .map(|_| rng.below(1 << bits) as u8)
            .collect();
        let w = pack::pack_rows(&codes, rows, cols, bits).unwrap();
        assert_eq!(w.len(), rows / pf * cols);
        assert_eq!(pack::unpack_rows(&w, rows, cols, bits).unwrap(), codes);
        // code (r, c) at bits b·(r % pf) of word (r / pf, c)
        for r in 0..rows {
            for c in 0..cols {
                let field =
                    (w[r / pf * cols + c] >> (bits as usize * (r % pf))) & ((1 << bits) - 1);
                assert_eq!(field as u8, codes[r * cols + c]);
            }
        }
        let w = pack::pack_cols(&codes, rows, cols, bits).unwrap();
        assert_eq!(pack::unpack_cols(&w, rows, cols, bits).unwrap(), codes);
        for r in 0..rows {
            for c in 0..cols {
                let field =
                    (w[r * (cols / pf) + c / pf] >> (bits as usize * (c % pf))) & ((1 << bits) - 1);
                assert_eq!(field as u8, codes[r * cols + c]);
            }
        }
    }
    assert!(pack::pack_rows(&[16], 1, 1, 4).is_err(), "code too wide");
    assert!(
        pack::pack_rows(&[0; 4], 4, 1, 4).is_err(),
        "rows not a multiple of 8"
    );
    assert!(
        pack::unpack_rows(&[0; 3], 8, 2, 4).is_err(),
        "wrong word count"
    );
    assert!(pack::pack_rows(&[0; 8], 8, 1, 3).is_err(), "3 bits");
}

#[test]
fn awq_interleave_reads_column_j_at_nibble_rev_j() {
    // Nibble i holds value i: column j then reads REV[j].
    let codes = pack::unpack_awq(&[0x7654_3210], 1, 8).unwrap();
    assert_eq!(codes, vec![0, 4, 1, 5, 2, 6, 3, 7]);
    assert_eq!(codes, AWQ_REVERSE.map(|r| r as u8).to_vec());
    // Column j holds value j: nibble i then holds ORDER[i].
    let word = pack::pack_awq(&[0, 1, 2, 3, 4, 5, 6, 7], 1, 8).unwrap()[0];
    assert_eq!(word, 0x7531_6420);
    for (i, &column) in AWQ_ORDER.iter().enumerate() {
        assert_eq!((word >> (4 * i)) & 0xF, column as u32);
        assert_eq!(AWQ_REVERSE[column], i, "REV is ORDER's inverse");
    }
    let mut rng = Rng(11);
    let codes: Vec<u8> = (0..5 * 24).map(|_| rng.below(16) as u8).collect();
    let words = pack::pack_awq(&codes, 5, 24).unwrap();
    assert_eq!(pack::unpack_awq(&words, 5, 24).unwrap(), codes);
}

#[test]
fn nvfp4_nibble_order_is_low_first() {
    assert_eq!(
        pack::pack_nibbles(&[1, 2, 0xF, 0], 1, 4).unwrap(),
        vec![0x21, 0x0F]
    );
    assert_eq!(
        pack::unpack_nibbles(&[0x21, 0x0F], 1, 4).unwrap(),
        vec![1, 2, 0xF, 0]
    );
    assert!(
        pack::pack_nibbles(&[1, 2, 3], 1, 3).is_err(),
        "odd row width"
    );
}

// ---------------------------------------------------------------------------
// GPTQ

/// A hand-built 4-bit weight: K = 8, N = 8, one group, chosen codes, zeros
/// and scales.
fn tiny_gptq(zeros: [u8; 8], format: ZeroFormat) -> GptqWeight {
    let codes: Vec<u8> = (0..64).map(|i| (i * 7 % 16) as u8).collect();
    let qweight = pack::pack_rows(&codes, 8, 8, 4).unwrap();
    let mut qzeros = pack::pack_cols(&zeros, 1, 8, 4).unwrap();
    if format == ZeroFormat::V1 {
        qzeros[0] = qzeros[0].wrapping_sub(0x1111_1111);
    }
    let words = |w: &[u32]| w.iter().map(|&v| v as i32).collect::<Vec<_>>();
    GptqWeight::new(
        GptqTensors {
            qweight: HostTensor::from_i32(&[1, 8], &words(&qweight)).unwrap(),
            qzeros: HostTensor::from_i32(&[1, 1], &words(&qzeros)).unwrap(),
            scales: HostTensor::from_f32(
                DType::F16,
                &[1, 8],
                &[0.5, 1.0, 0.25, 2.0, 0.125, 1.5, 3.0, 0.75],
            )
            .unwrap(),
            g_idx: None,
        },
        GptqLayout {
            bits: 4,
            group_size: GroupSize::PerChannel,
            zero_format: format,
        },
    )
    .unwrap()
}

#[test]
fn gptq_dequantize_follows_the_formula() {
    let zeros = [8, 3, 0, 15, 8, 0, 1, 7];
    let w = tiny_gptq(zeros, ZeroFormat::V2);
    let scales = [0.5f32, 1.0, 0.25, 2.0, 0.125, 1.5, 3.0, 0.75];
    let deq = w.dequantize_f32();
    for n in 0..8 {
        for k in 0..8 {
            let q = (k * 8 + n) * 7 % 16;
            let want = scales[n] * (q as f32 - f32::from(zeros[n]));
            assert_eq!(deq[n * 8 + k], want, "W[{n},{k}]");
        }
    }
    assert_eq!(w.zeros(), zeros.to_vec());
}

#[test]
fn gptq_v1_zero_words_use_the_wrapping_word_rule() {
    // Asymmetric zeros including z = 0: v1 stores (word − 0x11111111) with
    // borrows across nibbles. The word-wise +0x11111111 restores them; the
    // per-nibble "+1" (AutoGPTQ, vLLM exllama) does not.
    let zeros = [0u8, 5, 0, 15, 8, 0, 1, 2];
    let v1 = tiny_gptq(zeros, ZeroFormat::V1);
    let v2 = tiny_gptq(zeros, ZeroFormat::V2);
    assert_eq!(v1.zeros(), zeros.to_vec());
    assert_eq!(v1.dequantize_f32(), v2.dequantize_f32());
    let stored = v1.qzeros().to_i32_vec().unwrap()[0] as u32;
    let per_nibble: Vec<u8> = (0..8)
        .map(|j| (((stored >> (4 * j)) & 0xF) + 1) as u8)
        .collect();
    assert_ne!(
        per_nibble,
        zeros.to_vec(),
        "per-nibble decoding is wrong for z = 0"
    );
    // Without any z = 0 the two rules agree.
    let zeros = [1u8, 5, 2, 15, 8, 3, 1, 2];
    let stored = tiny_gptq(zeros, ZeroFormat::V1)
        .qzeros()
        .to_i32_vec()
        .unwrap()[0] as u32;
    let per_nibble: Vec<u8> = (0..8)
        .map(|j| (((stored >> (4 * j)) & 0xF) + 1) as u8)
        .collect();
    assert_eq!(per_nibble, zeros.to_vec());
    // Converting between the two storages is lossless both ways.
    assert_eq!(v1.with_zero_format(ZeroFormat::V2), v2);
    assert_eq!(v2.with_zero_format(ZeroFormat::V1), v1);
}

#[test]
fn gptq_symmetric_v1_words_are_0x77_and_0x7f() {
    for (bits, word) in [(4u32, 0x7777_7777u32), (8, 0x7F7F_7F7F)] {
        let params = GptqQuantizeParams {
            bits,
            group_size: GroupSize::Columns(32),
            sym: true,
            ..Default::default()
        };
        let w = GptqWeight::quantize(&random_weight(3, 32, 64, 0.1), &params).unwrap();
        assert!(
            w.qzeros()
                .to_i32_vec()
                .unwrap()
                .iter()
                .all(|&z| z as u32 == word)
        );
        assert!(w.is_symmetric());
        let v2 = w.with_zero_format(ZeroFormat::V2);
        let mid = 1u32 << (bits - 1);
        let want = if bits == 4 {
            mid * 0x1111_1111
        } else {
            mid * 0x0101_0101
        };
        assert!(
            v2.qzeros()
                .to_i32_vec()
                .unwrap()
                .iter()
                .all(|&z| z as u32 == want)
        );
    }
}

/// `|w − deq| ≤ s/2` for every element (RNE with a scale rounded up).
fn check_gptq_bound(w: &GptqWeight, original: &HostTensor) {
    let (n, k) = (w.n(), w.k());
    let orig = f32s(original);
    let deq = w.dequantize_f32();
    let scales = f32s(w.scales());
    for nn in 0..n {
        for kk in 0..k {
            let g = w.groups_of()[kk] as usize;
            let s = f64::from(scales[g * n + nn]);
            let err = (f64::from(orig[nn * k + kk]) - f64::from(deq[nn * k + kk])).abs();
            assert!(
                err <= s / 2.0 * (1.0 + 1e-6),
                "W[{nn},{kk}]: error {err} > s/2 = {}",
                s / 2.0
            );
        }
    }
}

#[test]
fn gptq_quantize_dequantize_error_bounds() {
    let (n, k) = (32, 256);
    for bits in [4u32, 8] {
        for group in [32i64, 64, 128, -1] {
            for sym in [true, false] {
                for zero_format in [ZeroFormat::V1, ZeroFormat::V2] {
                    let original =
                        random_weight(u64::from(bits) * 1000 + group.unsigned_abs(), n, k, 0.05);
                    let params = GptqQuantizeParams {
                        bits,
                        group_size: GroupSize::from_config(group).unwrap(),
                        sym,
                        zero_format,
                        act_order: None,
                        scale_dtype: DType::F16,
                    };
                    let w = GptqWeight::quantize(&original, &params).unwrap();
                    assert_eq!((w.n(), w.k(), w.bits()), (n, k, bits));
                    assert_eq!(w.groups(), if group < 0 { 1 } else { k / group as usize });
                    assert_eq!(w.zero_format(), zero_format);
                    assert!(!w.is_act_order());
                    check_gptq_bound(&w, &original);
                    // dequantize(dtype) is the f32 product rounded once.
                    let f32w = w.dequantize_f32();
                    for dtype in DType::FLOATS {
                        let want = HostTensor::from_f32(dtype, &[n, k], &f32w).unwrap();
                        assert_eq!(w.dequantize(dtype).unwrap(), want);
                    }
                }
            }
        }
    }
}

#[test]
fn gptq_asymmetric_all_positive_rows_get_zero_point_zero() {
    // An all-positive group has min = 0 in GPTQ's range, so z = 0 — the case
    // that per-nibble v1 decoders get wrong.
    let mut values = f32s(&random_weight(5, 16, 64, 0.05));
    for v in &mut values[..64] {
        *v = v.abs() + 0.01;
    }
    let original = HostTensor::from_f32(DType::F32, &[16, 64], &values).unwrap();
    let params = GptqQuantizeParams {
        bits: 4,
        group_size: GroupSize::Columns(32),
        sym: false,
        zero_format: ZeroFormat::V1,
        ..Default::default()
    };
    let w = GptqWeight::quantize(&original, &params).unwrap();
    let zeros = w.zeros();
    assert_eq!(zeros[0], 0, "row 0, group 0");
    assert_eq!(zeros[16], 0, "row 0, group 1");
    check_gptq_bound(&w, &original);
}

#[test]
fn gptq_act_order_produces_the_matching_g_idx() {
    let (n, k, gs) = (16, 128, 32);
    let mut rng = Rng(99);
    let mut perm: Vec<usize> = (0..k).collect();
    for i in (1..k).rev() {
        perm.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let original = random_weight(8, n, k, 0.05);
    for bits in [4u32, 8] {
        let params = GptqQuantizeParams {
            bits,
            group_size: GroupSize::Columns(gs),
            sym: false,
            act_order: Some(perm.clone()),
            ..Default::default()
        };
        let w = GptqWeight::quantize(&original, &params).unwrap();
        let g_idx = w.g_idx().to_i32_vec().unwrap();
        for (i, &c) in perm.iter().enumerate() {
            assert_eq!(g_idx[c] as usize, i / gs, "g_idx[perm[{i}]]");
        }
        assert!(g_idx.windows(2).any(|p| p[1] < p[0]), "non-monotonic");
        assert!(w.is_act_order());
        check_gptq_bound(&w, &original);
        // Round trip through the checkpoint tensors keeps everything.
        let rebuilt = GptqWeight::new(
            GptqTensors {
                qweight: w.qweight().clone(),
                qzeros: w.qzeros().clone(),
                scales: w.scales().clone(),
                g_idx: Some(w.g_idx().clone()),
            },
            w.layout(),
        )
        .unwrap();
        assert_eq!(rebuilt, w);
    }
    // Not a permutation: rejected.
    let mut bad = perm.clone();
    bad[3] = bad[4];
    for act_order in [bad, perm[..k - 1].to_vec()] {
        let params = GptqQuantizeParams {
            act_order: Some(act_order),
            group_size: GroupSize::Columns(gs),
            ..Default::default()
        };
        assert!(GptqWeight::quantize(&original, &params).is_err());
    }
}

#[test]
fn gptq_scales_in_bf16_and_f32() {
    let original = random_weight(21, 32, 64, 0.05);
    for scale_dtype in [DType::BF16, DType::F32] {
        let params = GptqQuantizeParams {
            group_size: GroupSize::Columns(32),
            sym: false,
            scale_dtype,
            ..Default::default()
        };
        let w = GptqWeight::quantize(&original, &params).unwrap();
        assert_eq!(w.scales().dtype(), scale_dtype);
        check_gptq_bound(&w, &original);
    }
}

// ---------------------------------------------------------------------------
// AWQ

#[test]
fn awq_quantize_dequantize_error_bounds_and_interleave() {
    let (n, k) = (24, 256);
    for group in [32usize, 64, 128] {
        let original = random_weight(group as u64, n, k, 0.05);
        let params = AwqQuantizeParams {
            group_size: GroupSize::Columns(group),
            scale_dtype: DType::F16,
        };
        let w = AwqWeight::quantize(&original, &params).unwrap();
        assert_eq!((w.n(), w.k(), w.groups()), (n, k, k / group));
        let orig = f32s(&original);
        let deq = w.dequantize_f32();
        let scales = f32s(w.scales());
        for nn in 0..n {
            for kk in 0..k {
                let s = f64::from(scales[kk / group * n + nn]);
                let err = (f64::from(orig[nn * k + kk]) - f64::from(deq[nn * k + kk])).abs();
                assert!(err <= s / 2.0 * (1.0 + 1e-6), "W[{nn},{kk}]");
            }
        }
        // The codes are read from the words at nibble REV[j].
        let words: Vec<u32> = w
            .qweight()
            .to_i32_vec()
            .unwrap()
            .iter()
            .map(|&v| v as u32)
            .collect();
        let codes = w.codes();
        for kk in 0..k {
            for nn in 0..n {
                let word = words[kk * (n / 8) + nn / 8];
                let want = (word >> (4 * AWQ_REVERSE[nn % 8])) & 0xF;
                assert_eq!(u32::from(codes[kk * n + nn]), want);
            }
        }
        // And W = s·(q − z) with no +1.
        let zeros = w.zeros();
        for nn in 0..n {
            for kk in 0..k {
                let g = kk / group;
                let want = scales[g * n + nn]
                    * (f32::from(codes[kk * n + nn]) - f32::from(zeros[g * n + nn]));
                assert_eq!(deq[nn * k + kk], want);
            }
        }
    }
}

#[test]
fn awq_zero_point_zero_is_plain() {
    // z = 0 needs no special rule in AWQ.
    let qweight = pack::pack_awq(&[3; 8 * 8], 8, 8).unwrap();
    let qzeros = pack::pack_awq(&[0; 8], 1, 8).unwrap();
    let w = AwqWeight::new(
        AwqTensors {
            qweight: HostTensor::from_i32(
                &[8, 1],
                &qweight.iter().map(|&v| v as i32).collect::<Vec<_>>(),
            )
            .unwrap(),
            qzeros: HostTensor::from_i32(&[1, 1], &[qzeros[0] as i32]).unwrap(),
            scales: HostTensor::from_f32(DType::F16, &[1, 8], &[0.5; 8]).unwrap(),
        },
        AwqLayout {
            group_size: GroupSize::Columns(8),
        },
    )
    .unwrap();
    assert!(w.dequantize_f32().iter().all(|&v| v == 1.5));
}

// ---------------------------------------------------------------------------
// NVFP4

#[test]
fn nvfp4_quantize_dequantize_error_bounds() {
    for (k, producer) in [
        (64, Nvfp4Producer::ModelOpt),
        (64, Nvfp4Producer::CompressedTensors),
        (40, Nvfp4Producer::ModelOpt), // K padded to 48
    ] {
        let n = 8;
        let mut values = f32s(&random_weight(k as u64, n, k, 0.05));
        values[..16].iter_mut().for_each(|v| *v = 0.0); // an all-zero block
        values[k..k + 16].iter_mut().for_each(|v| *v *= 1e-3); // a tiny block
        let original = HostTensor::from_f32(DType::F32, &[n, k], &values).unwrap();
        let w = Nvfp4Weight::quantize(&original, producer).unwrap();
        assert_eq!((w.n(), w.k(), w.k_padded()), (n, k, k.div_ceil(16) * 16));
        match (producer, w.global_scale()) {
            (Nvfp4Producer::ModelOpt, GlobalScale::Multiplier(_))
            | (Nvfp4Producer::CompressedTensors, GlobalScale::Divisor(_)) => {}
            other => panic!("convention {other:?}"),
        }
        let deq = w.dequantize_f32();
        let scales = w.weight_scale().bytes();
        let blocks = w.k_padded() / 16;
        for nn in 0..n {
            for kk in 0..k {
                let m = w
                    .global_scale()
                    .block_multiplier(e4m3::decode(scales[nn * blocks + kk / 16]));
                let err = (values[nn * k + kk] - deq[nn * k + kk]).abs();
                assert!(err <= m * 1.0001, "W[{nn},{kk}] err {err} multiplier {m}");
                if values[nn * k + kk].abs() <= 2.0 * m {
                    assert!(err <= 0.25 * m * 1.0001, "fine grid below 2: W[{nn},{kk}]");
                }
            }
        }
        assert!(deq[..16].iter().all(|&v| v == 0.0), "the zero block");
        // The all-zero block's scale follows the producer.
        let zero_scale = e4m3::decode(scales[0]);
        assert_eq!(
            zero_scale,
            if producer == Nvfp4Producer::ModelOpt {
                1.0
            } else {
                0.125
            }
        );
    }
}

#[test]
fn nvfp4_codes_are_read_low_nibble_first() {
    // Row 0: element 2j low nibble. Codes 1 (0.5) then 7 (6) in byte 0x71.
    let w = Nvfp4Weight::new(Nvfp4Tensors {
        weight_packed: HostTensor::from_u8(DType::U8, &[1, 8], vec![0x71, 0, 0, 0, 0, 0, 0, 0x9A])
            .unwrap(),
        weight_scale: HostTensor::from_u8(DType::F8E4M3, &[1, 1], vec![0x38]).unwrap(), // 1.0
        global_scale: GlobalScale::Multiplier(2.0),
    })
    .unwrap();
    let deq = w.dequantize_f32();
    assert_eq!(deq[0], 1.0, "0.5 × 1 × 2");
    assert_eq!(deq[1], 12.0, "6 × 1 × 2");
    assert_eq!(deq[14], -2.0, "code 0xA = -1 × 2");
    assert_eq!(deq[15], -1.0, "code 0x9 = -0.5 × 2");
}

#[test]
fn nvfp4_both_global_scale_conventions_dequantize_identically() {
    let original = random_weight(77, 16, 64, 0.05);
    let w = Nvfp4Weight::quantize(&original, Nvfp4Producer::ModelOpt).unwrap();
    let tensors = |global_scale| Nvfp4Tensors {
        weight_packed: w.weight_packed().clone(),
        weight_scale: w.weight_scale().clone(),
        global_scale,
    };
    // A power-of-two global scale: g and 1/g are both exact, so the
    // multiplier and the divisor give the same values (equal as numbers: the
    // ModelOpt convention writes code 8 as +0, compressed-tensors as -0).
    for g in [0.25f32, 2f32.powi(-12), 8.0] {
        let a = Nvfp4Weight::new(tensors(GlobalScale::Multiplier(g))).unwrap();
        let b = Nvfp4Weight::new(tensors(GlobalScale::Divisor(1.0 / g))).unwrap();
        for dtype in DType::FLOATS {
            let (x, y) = (a.dequantize(dtype).unwrap(), b.dequantize(dtype).unwrap());
            assert_eq!(x.to_f64_vec(), y.to_f64_vec(), "g = {g}");
            for (p, q) in x
                .bytes()
                .chunks(dtype.size_in_bytes())
                .zip(y.bytes().chunks(dtype.size_in_bytes()))
            {
                let zero = |b: &[u8]| {
                    b.iter()
                        .enumerate()
                        .all(|(i, &v)| v == 0 || (i + 1 == b.len() && v == 0x80))
                };
                assert!(
                    p == q || (zero(p) && zero(q)),
                    "bits differ beyond the sign of zero"
                );
            }
        }
    }
    // Any global scale: the same to within one f32 rounding of the block
    // multiplier (scale·g vs scale/(1/g)).
    let d = 448.0 * 6.0 / 0.173;
    let a = Nvfp4Weight::new(tensors(GlobalScale::Multiplier(1.0 / d))).unwrap();
    let b = Nvfp4Weight::new(tensors(GlobalScale::Divisor(d))).unwrap();
    for (x, y) in a.dequantize_f32().iter().zip(b.dequantize_f32()) {
        assert!((x - y).abs() <= 2.0 * f32::EPSILON * x.abs(), "{x} vs {y}");
    }
}

#[test]
fn nvfp4_divisor_divides_rather_than_multiplying_by_the_reciprocal() {
    // compressed-tensors forms scale / global_scale in f32; for some values
    // that differs from scale · (1/global_scale) in the last bit.
    let d = 3.0f32;
    let scale = e4m3::decode(0x3A); // 1.25
    assert_eq!(scale, 1.25);
    assert_ne!(scale / d, scale * (1.0 / d), "a case where the two differ");
    let w = Nvfp4Weight::new(Nvfp4Tensors {
        weight_packed: HostTensor::from_u8(DType::U8, &[1, 8], vec![0x22; 8]).unwrap(),
        weight_scale: HostTensor::from_u8(DType::F8E4M3, &[1, 1], vec![0x3A]).unwrap(),
        global_scale: GlobalScale::Divisor(d),
    })
    .unwrap();
    assert_eq!(w.dequantize_f32()[0], 1.0 * (scale / d));
}

#[test]
fn nvfp4_code_8_is_minus_zero_except_in_modelopt_convention() {
    let tensors = |global_scale| Nvfp4Tensors {
        weight_packed: HostTensor::from_u8(DType::U8, &[1, 8], vec![0x08; 8]).unwrap(),
        weight_scale: HostTensor::from_u8(DType::F8E4M3, &[1, 1], vec![0x38]).unwrap(),
        global_scale,
    };
    // compressed-tensors: -0 (the spec); ModelOpt's table: +0.
    let ct = Nvfp4Weight::new(tensors(GlobalScale::Divisor(1.0))).unwrap();
    assert_eq!(ct.dequantize_f32()[0].to_bits(), (-0.0f32).to_bits());
    assert_eq!(ct.dequantize_f32()[1].to_bits(), 0.0f32.to_bits());
    let mo = Nvfp4Weight::new(tensors(GlobalScale::Multiplier(1.0))).unwrap();
    assert!(mo.dequantize_f32().iter().all(|v| v.to_bits() == 0));
}

#[test]
fn dequantized_dtypes_round_once_from_f32() {
    let original = random_weight(31, 16, 64, 3.0);
    let w = Nvfp4Weight::quantize(&original, Nvfp4Producer::CompressedTensors).unwrap();
    let f = w.dequantize_f32();
    let h = w.dequantize(DType::F16).unwrap().to_f32_vec();
    let b = w.dequantize(DType::BF16).unwrap().to_f32_vec();
    for i in 0..f.len() {
        assert_eq!(h[i], f16::from_f32(f[i]).to_f32());
        assert_eq!(b[i], bf16::from_f32(f[i]).to_f32());
    }
    assert!(w.dequantize(DType::I32).is_err());
}
