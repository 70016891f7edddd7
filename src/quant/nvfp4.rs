//! NVFP4 weights (W4A16): E2M1 elements, one E4M3 scale per 16 consecutive
//! K elements, one f32 global scale.
//!
//! | tensor          | dtype   | shape         |
//! |-----------------|---------|---------------|
//! | `weight_packed` | u8      | `[N, Kp/2]`   |
//! | `weight_scale`  | f8e4m3  | `[N, Kp/16]`  |
//!
//! Kp is K rounded up to 16 (ModelOpt pads with zeros; compressed-tensors
//! requires K % 16 == 0). Byte j of a row holds element 2j in the LOW nibble
//! and 2j+1 in the high nibble. The global scale comes in two conventions
//! for the same thing ([`GlobalScale`]): ModelOpt's `weight_scale_2`
//! (= amax / (6·448), a multiplier) and compressed-tensors'
//! `weight_global_scale` (= 448·6 / amax, a divisor).
//!
//! `W[n,k] = e2m1(code) × m[n, k/16]` in f32, then cast, where the block
//! multiplier m is formed first, in f32: `f32(scale) × weight_scale_2`
//! (ModelOpt) or `f32(scale) / weight_global_scale` (compressed-tensors
//! divides — `scale × (1/gs)` differs from it in the last bit for some
//! scales, and bit-exactness needs the package's own operation).
//!
//! The sign of zero: E2M1 code 8 is −0, and compressed-tensors dequantizes it
//! to −0; ModelOpt's lookup table holds +0 there, so its dequantized weights
//! never contain −0. To match each package bit for bit, a weight in the
//! ModelOpt convention ([`GlobalScale::Multiplier`]) decodes code 8 as +0.
//! The two differ only in the sign of zero, which no product or sum sees.

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::quant::{
    check_host, check_weight_size, dims2, e2m1, e4m3, pack, to_dtype, weights_to_quantize,
};
use crate::tensor::{HostTensor, Tensor};

const OP: &str = "nvfp4";

/// Elements per block scale.
pub const BLOCK: usize = 16;

/// The tensor-wide scale, in the convention the checkpoint used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GlobalScale {
    /// ModelOpt `weight_scale_2`: `m = f32(scale) × g`.
    Multiplier(f32),
    /// compressed-tensors `weight_global_scale`: `m = f32(scale) / d`.
    Divisor(f32),
}

impl GlobalScale {
    /// The block multiplier for a decoded E4M3 block scale, in f32.
    pub fn block_multiplier(self, scale: f32) -> f32 {
        match self {
            GlobalScale::Multiplier(g) => scale * g,
            GlobalScale::Divisor(d) => scale / d,
        }
    }

    /// The E2M1 element of `code` as this convention's producer decodes it:
    /// ModelOpt (multiplier) has +0 for code 8, compressed-tensors −0.
    pub fn element(self, code: u8) -> f32 {
        match self {
            GlobalScale::Multiplier(_) if code & 0xF == 8 => 0.0,
            _ => e2m1::decode(code),
        }
    }

    /// The raw value (multiplier or divisor).
    pub fn value(self) -> f32 {
        match self {
            GlobalScale::Multiplier(v) | GlobalScale::Divisor(v) => v,
        }
    }

    /// Must be finite and > 0, and the largest possible element
    /// (6 × 448 × g, or 6 × 448 / d) must be finite in f32.
    fn check(self) -> Result<()> {
        let v = self.value();
        let largest = e2m1::MAX * self.block_multiplier(e4m3::MAX);
        if !(v.is_finite() && v > 0.0 && largest.is_finite()) {
            let name = match self {
                GlobalScale::Multiplier(_) => "weight_scale_2",
                GlobalScale::Divisor(_) => "weight_global_scale",
            };
            return Err(Error::invalid(
                OP,
                "global_scale",
                format!(
                    "{name} = {v}: must be finite and > 0 with 6·448 scaled by it finite in f32"
                ),
            ));
        }
        Ok(())
    }
}

/// Which producer's convention [`Nvfp4Weight::quantize`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nvfp4Producer {
    /// nvidia-modelopt (`hf_quant_config.json` `quant_algo: "NVFP4"`):
    /// `weight_scale_2` multiplier.
    ModelOpt,
    /// compressed-tensors (`format: "nvfp4-pack-quantized"`):
    /// `weight_global_scale` divisor.
    CompressedTensors,
}

/// The checkpoint tensors of one NVFP4 layer, unvalidated.
#[derive(Debug, Clone)]
pub struct Nvfp4Tensors {
    /// u8 `[N, Kp/2]` (`P.weight_packed`, or ModelOpt's `P.weight`).
    pub weight_packed: HostTensor,
    /// f8e4m3 (or the same bytes as u8) `[N, Kp/16]`.
    pub weight_scale: HostTensor,
    pub global_scale: GlobalScale,
}

/// A validated NVFP4 weight in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Nvfp4Weight {
    weight_packed: HostTensor,
    weight_scale: HostTensor,
    global_scale: GlobalScale,
    k: usize,
    k_padded: usize,
    n: usize,
}

impl Nvfp4Weight {
    /// Validates a layer whose K is the packed width (K = Kp).
    pub fn new(tensors: Nvfp4Tensors) -> Result<Nvfp4Weight> {
        let k = tensors
            .weight_packed
            .shape()
            .get(1)
            .map_or(0, |&c| c.saturating_mul(2));
        Self::with_in_features(tensors, k)
    }

    /// Validates a layer of `k` input features stored padded to
    /// Kp = ceil(k/16)·16 (elements past k are ignored).
    pub fn with_in_features(tensors: Nvfp4Tensors, k: usize) -> Result<Nvfp4Weight> {
        let Nvfp4Tensors {
            weight_packed,
            weight_scale,
            global_scale,
        } = tensors;
        let (n, bytes_per_row) = dims2(OP, "weight_packed", &weight_packed)?;
        check_weight_size(OP, n, k)?;
        let k_padded = k.div_ceil(BLOCK) * BLOCK;
        // Kernels index the padded codes too.
        check_weight_size(OP, n, k_padded)?;
        if bytes_per_row.checked_mul(2) != Some(k_padded) {
            return Err(Error::invalid(
                OP,
                "weight_packed",
                format!(
                    "{bytes_per_row} bytes per row hold {} elements; K = {k} needs Kp = {k_padded} (K rounded up to 16)",
                    bytes_per_row.saturating_mul(2)
                ),
            ));
        }
        check_host(
            OP,
            "weight_packed",
            &weight_packed,
            &[DType::U8],
            &[n, bytes_per_row],
        )?;
        check_host(
            OP,
            "weight_scale",
            &weight_scale,
            &[DType::F8E4M3, DType::U8],
            &[n, k_padded / BLOCK],
        )?;
        if let Some(i) = weight_scale.bytes().iter().position(|&b| e4m3::is_nan(b)) {
            return Err(Error::invalid(
                OP,
                "weight_scale",
                format!(
                    "block scale {i} is the E4M3 NaN byte 0x{:02X}",
                    weight_scale.bytes()[i]
                ),
            ));
        }
        global_scale.check()?;
        // u8 bytes are accepted for checkpoints that store the scales as raw
        // bytes; from here on they are E4M3.
        let scale_shape = weight_scale.shape().to_vec();
        let weight_scale =
            HostTensor::from_u8(DType::F8E4M3, &scale_shape, weight_scale.into_bytes())?;
        Ok(Nvfp4Weight {
            weight_packed,
            weight_scale,
            global_scale,
            k,
            k_padded,
            n,
        })
    }

    pub fn weight_packed(&self) -> &HostTensor {
        &self.weight_packed
    }
    pub fn weight_scale(&self) -> &HostTensor {
        &self.weight_scale
    }
    pub fn global_scale(&self) -> GlobalScale {
        self.global_scale
    }
    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }
    /// K rounded up to 16: the stored row width in elements.
    pub fn k_padded(&self) -> usize {
        self.k_padded
    }
    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The E2M1 codes `[N, Kp]` (padding included).
    pub fn codes(&self) -> Vec<u8> {
        pack::unpack_nibbles(self.weight_packed.bytes(), self.n, self.k_padded).unwrap_or_default()
    }

    /// The dequantized weight `[N, K]` in f32: `e2m1 × (f32(scale) ⊙ g)`
    /// (the block multiplier formed first; code 8 per the convention, see
    /// [`GlobalScale::element`]).
    pub fn dequantize_f32(&self) -> Vec<f32> {
        let codes = self.codes();
        let scales = self.weight_scale.bytes();
        let blocks = self.k_padded / BLOCK;
        let mut w = Vec::with_capacity(self.n * self.k);
        for nn in 0..self.n {
            for kk in 0..self.k {
                let scale = e4m3::decode(scales[nn * blocks + kk / BLOCK]);
                let multiplier = self.global_scale.block_multiplier(scale);
                let element = self.global_scale.element(codes[nn * self.k_padded + kk]);
                w.push(element * multiplier);
            }
        }
        w
    }

    /// The dequantized weight `[N, K]` in `dtype`, rounded once from f32 —
    /// bit for bit what ModelOpt and compressed-tensors produce.
    pub fn dequantize(&self, dtype: DType) -> Result<HostTensor> {
        to_dtype(OP, dtype, &[self.n, self.k], &self.dequantize_f32())
    }

    /// Quantizes a float weight `[N, K]` (any K; padded to 16 with zeros)
    /// the way `producer` does: global scale from the tensor's amax, block
    /// scale `amax_block / 6` in global units encoded as E4M3 (clamp, then
    /// round to nearest even), elements `w / m` encoded as E2M1 (ties to
    /// even, saturating). An all-zero block gets scale 1.0 (ModelOpt) or
    /// 0.125 (compressed-tensors clamps every block scale to ≥ 0.125); a
    /// ModelOpt scale that underflows E4M3 is raised to its smallest
    /// subnormal so that the block multiplier is never 0.
    pub fn quantize(weight: &HostTensor, producer: Nvfp4Producer) -> Result<Nvfp4Weight> {
        let (n, k, w) = weights_to_quantize(OP, weight)?;
        check_weight_size(OP, n, k)?;
        let k_padded = k.div_ceil(BLOCK) * BLOCK;
        let blocks = k_padded / BLOCK;
        let amax = w.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let global_scale = match (producer, amax > 0.0) {
            (_, false) => match producer {
                Nvfp4Producer::ModelOpt => GlobalScale::Multiplier(1.0),
                Nvfp4Producer::CompressedTensors => GlobalScale::Divisor(1.0),
            },
            (Nvfp4Producer::ModelOpt, true) => {
                GlobalScale::Multiplier((amax / (e2m1::MAX * e4m3::MAX)).max(f32::from_bits(1)))
            }
            (Nvfp4Producer::CompressedTensors, true) => {
                GlobalScale::Divisor((e4m3::MAX * e2m1::MAX / amax).min(f32::MAX))
            }
        };
        global_scale.check()?;
        let mut scales = vec![0u8; n * blocks];
        let mut codes = vec![0u8; n * k_padded];
        for nn in 0..n {
            let row = &w[nn * k..(nn + 1) * k];
            for (b, block) in row.chunks(BLOCK).enumerate() {
                let block_amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let byte = match global_scale {
                    GlobalScale::Multiplier(g) => {
                        let s = block_amax / (e2m1::MAX * g);
                        match e4m3::encode(if s == 0.0 { 1.0 } else { s }) {
                            0 => 0x01,
                            byte => byte,
                        }
                    }
                    GlobalScale::Divisor(d) => {
                        e4m3::encode((d * (block_amax / e2m1::MAX)).max(0.125))
                    }
                };
                scales[nn * blocks + b] = byte;
                let m = global_scale.block_multiplier(e4m3::decode(byte));
                for (i, &v) in block.iter().enumerate() {
                    codes[nn * k_padded + b * BLOCK + i] = e2m1::encode(v / m);
                }
            }
        }
        Nvfp4Weight::with_in_features(
            Nvfp4Tensors {
                weight_packed: HostTensor::from_u8(
                    DType::U8,
                    &[n, k_padded / 2],
                    pack::pack_nibbles(&codes, n, k_padded)?,
                )?,
                weight_scale: HostTensor::from_u8(DType::F8E4M3, &[n, blocks], scales)?,
                global_scale,
            },
            k,
        )
    }

    /// Copies the weight to `backend`; the global scale travels as a value.
    pub fn upload(&self, backend: &dyn Backend) -> Result<DeviceNvfp4Weight> {
        Ok(DeviceNvfp4Weight {
            weight_packed: backend.upload_tensor(&self.weight_packed)?,
            weight_scale: backend.upload_tensor(&self.weight_scale)?,
            global_scale: self.global_scale,
            k: self.k,
            k_padded: self.k_padded,
            n: self.n,
        })
    }
}

/// An NVFP4 weight on a device, made by [`Nvfp4Weight::upload`]:
/// `weight_packed` u8 `[N, Kp/2]`, `weight_scale` f8e4m3 `[N, Kp/16]` in the
/// linear (row-major) layout, and the global scale as a kernel argument.
#[derive(Debug, Clone)]
pub struct DeviceNvfp4Weight {
    weight_packed: Tensor,
    weight_scale: Tensor,
    global_scale: GlobalScale,
    k: usize,
    k_padded: usize,
    n: usize,
}

impl DeviceNvfp4Weight {
    pub fn weight_packed(&self) -> &Tensor {
        &self.weight_packed
    }
    pub fn weight_scale(&self) -> &Tensor {
        &self.weight_scale
    }
    pub fn global_scale(&self) -> GlobalScale {
        self.global_scale
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn k_padded(&self) -> usize {
        self.k_padded
    }
    pub fn n(&self) -> usize {
        self.n
    }

    /// The device tensors with their names.
    pub fn tensors(&self) -> [(&'static str, &Tensor); 2] {
        [
            ("weight_packed", &self.weight_packed),
            ("weight_scale", &self.weight_scale),
        ]
    }

    /// Copies the weight back and re-validates it.
    pub fn download(&self, backend: &dyn Backend) -> Result<Nvfp4Weight> {
        Nvfp4Weight::with_in_features(
            Nvfp4Tensors {
                weight_packed: backend.download_tensor(&self.weight_packed)?,
                weight_scale: backend.download_tensor(&self.weight_scale)?,
                global_scale: self.global_scale,
            },
            self.k,
        )
    }
}
