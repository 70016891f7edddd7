//! AWQ, AutoAWQ "gemm" version (GPTQModel writes identical bytes), 4 bits.
//! With G = K / group_size:
//!
//! | tensor    | dtype          | shape      | packed along |
//! |-----------|----------------|------------|--------------|
//! | `qweight` | i32            | `[K, N/8]` | N            |
//! | `qzeros`  | i32            | `[G, N/8]` | N            |
//! | `scales`  | f16, bf16, f32 | `[G, N]`   | —            |
//!
//! Interleaved: nibble i of a word holds column `ORDER[i]`, ORDER =
//! `[0,2,4,6,1,3,5,7]`; column j of word w (n = 8w + j) is
//! `(word >> 4·REV[j]) & 0xF`, REV = `[0,4,1,5,2,6,3,7]`. Zeros use the same
//! order. `W[n,k] = scales[k/gs, n] · (q[k,n] − z[k/gs, n])` — no +1, z = 0
//! is fine. K % group_size == 0 and N % 8 == 0 are required.
//!
//! The "gemv" layout (qweight `[N, K/8]` packed along K, with padded zeros
//! and scales) is not supported: no golden vectors pin its padding rules,
//! and every serving stack uses "gemm" checkpoints.

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::quant::{
    GroupSize, check_finite, check_host, check_weight_size, dims2, floats, pack, rtn, to_dtype,
    weights_to_quantize, words, words_tensor,
};
use crate::tensor::{HostTensor, Tensor};

const OP: &str = "awq";

const SCALE_DTYPES: [DType; 3] = [DType::F16, DType::BF16, DType::F32];

/// The layout parameters an AWQ checkpoint's config gives (bits are 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AwqLayout {
    pub group_size: GroupSize,
}

/// The checkpoint tensors of one AWQ layer, unvalidated.
#[derive(Debug, Clone)]
pub struct AwqTensors {
    pub qweight: HostTensor,
    pub qzeros: HostTensor,
    pub scales: HostTensor,
}

/// Parameters of [`AwqWeight::quantize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwqQuantizeParams {
    pub group_size: GroupSize,
    /// f16 (what checkpoints hold), bf16 or f32.
    pub scale_dtype: DType,
}

impl Default for AwqQuantizeParams {
    fn default() -> Self {
        AwqQuantizeParams {
            group_size: GroupSize::Columns(128),
            scale_dtype: DType::F16,
        }
    }
}

/// A validated AWQ (gemm) weight in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct AwqWeight {
    qweight: HostTensor,
    qzeros: HostTensor,
    scales: HostTensor,
    group_size: GroupSize,
    k: usize,
    n: usize,
    groups: usize,
}

impl AwqWeight {
    /// Validates a layer's tensors against its layout.
    pub fn new(tensors: AwqTensors, layout: AwqLayout) -> Result<AwqWeight> {
        let AwqTensors {
            qweight,
            qzeros,
            scales,
        } = tensors;
        layout.group_size.check(OP)?;
        let (k, words_per_row) = dims2(OP, "qweight", &qweight)?;
        let n = words_per_row.saturating_mul(8);
        check_weight_size(OP, n, k)?;
        check_host(OP, "qweight", &qweight, &[DType::I32], &[k, words_per_row])?;
        let gs = layout.group_size.columns(k);
        if k % gs != 0 {
            return Err(Error::invalid(
                OP,
                "group_size",
                format!("{gs} does not divide K = {k}; AWQ needs whole groups"),
            ));
        }
        let groups = k / gs;
        check_host(OP, "scales", &scales, &SCALE_DTYPES, &[groups, n])?;
        check_host(
            OP,
            "qzeros",
            &qzeros,
            &[DType::I32],
            &[groups, words_per_row],
        )?;
        check_finite(OP, "scales", &floats(&scales))?;
        Ok(AwqWeight {
            qweight,
            qzeros,
            scales,
            group_size: layout.group_size,
            k,
            n,
            groups,
        })
    }

    pub fn qweight(&self) -> &HostTensor {
        &self.qweight
    }
    pub fn qzeros(&self) -> &HostTensor {
        &self.qzeros
    }
    pub fn scales(&self) -> &HostTensor {
        &self.scales
    }
    pub fn group_size(&self) -> GroupSize {
        self.group_size
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// The codes `q[k, n]`, row-major `[K, N]`.
    pub fn codes(&self) -> Vec<u8> {
        pack::unpack_awq(&words(&self.qweight), self.k, self.n).unwrap_or_default()
    }

    /// The zero points `z[g, n]`, row-major `[G, N]`.
    pub fn zeros(&self) -> Vec<u8> {
        pack::unpack_awq(&words(&self.qzeros), self.groups, self.n).unwrap_or_default()
    }

    /// The dequantized weight `[N, K]` in f32 (exact for f16 / bf16 scales).
    pub fn dequantize_f32(&self) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        let gs = k / self.groups;
        let q = self.codes();
        let z = self.zeros();
        let s = floats(&self.scales);
        let mut w = vec![0.0f32; n * k];
        for kk in 0..k {
            let row = kk / gs * n;
            for nn in 0..n {
                let diff = i32::from(q[kk * n + nn]) - i32::from(z[row + nn]);
                w[nn * k + kk] = s[row + nn] * diff as f32;
            }
        }
        w
    }

    /// The dequantized weight `[N, K]` in `dtype`, rounded once from f32.
    pub fn dequantize(&self, dtype: DType) -> Result<HostTensor> {
        to_dtype(OP, dtype, &[self.n, self.k], &self.dequantize_f32())
    }

    /// Round-to-nearest asymmetric quantization of a float weight `[N, K]`
    /// (N % 8 == 0, K % group_size == 0). The range includes 0, and the
    /// scale is rounded up to `scale_dtype`, so `|w − s·(q − z)| ≤ s/2`.
    pub fn quantize(weight: &HostTensor, params: &AwqQuantizeParams) -> Result<AwqWeight> {
        let (n, k, w) = weights_to_quantize(OP, weight)?;
        params.group_size.check(OP)?;
        check_weight_size(OP, n, k)?;
        let gs = params.group_size.columns(k);
        if n % 8 != 0 || k % gs != 0 {
            return Err(Error::invalid(
                OP,
                "weight",
                format!(
                    "[N, K] = [{n}, {k}]: N must be a multiple of 8 and K of the group size {gs}"
                ),
            ));
        }
        if !params.scale_dtype.is_float() {
            return Err(Error::invalid(
                OP,
                "scale_dtype",
                format!("must be f16, bf16 or f32, got {}", params.scale_dtype),
            ));
        }
        let groups = k / gs;
        let mut codes = vec![0u8; k * n];
        let mut zeros = vec![0u8; groups * n];
        let mut scales = vec![0.0f32; groups * n];
        for nn in 0..n {
            let row = &w[nn * k..(nn + 1) * k];
            for (g, group) in row.chunks(gs).enumerate() {
                let p = rtn::group_params(OP, group.iter().copied(), 4, false, params.scale_dtype)?;
                scales[g * n + nn] = p.scale;
                zeros[g * n + nn] = p.zero;
                for (i, &v) in group.iter().enumerate() {
                    codes[(g * gs + i) * n + nn] = rtn::code(v, p, 4);
                }
            }
        }
        AwqWeight::new(
            AwqTensors {
                qweight: words_tensor(&[k, n / 8], &pack::pack_awq(&codes, k, n)?)?,
                qzeros: words_tensor(&[groups, n / 8], &pack::pack_awq(&zeros, groups, n)?)?,
                scales: HostTensor::from_f32(params.scale_dtype, &[groups, n], &scales)?,
            },
            AwqLayout {
                group_size: params.group_size,
            },
        )
    }

    /// Copies the weight to `backend` as is (the gemm layout).
    pub fn upload(&self, backend: &dyn Backend) -> Result<DeviceAwqWeight> {
        Ok(DeviceAwqWeight {
            qweight: backend.upload_tensor(&self.qweight)?,
            qzeros: backend.upload_tensor(&self.qzeros)?,
            scales: backend.upload_tensor(&self.scales)?,
            group_size: self.group_size,
            k: self.k,
            n: self.n,
            groups: self.groups,
        })
    }
}

/// An AWQ weight on a device, made by [`AwqWeight::upload`]: `qweight` i32
/// `[K, N/8]`, `qzeros` i32 `[G, N/8]` (interleaved), `scales` `[G, N]`,
/// valid by construction.
#[derive(Debug, Clone)]
pub struct DeviceAwqWeight {
    qweight: Tensor,
    qzeros: Tensor,
    scales: Tensor,
    group_size: GroupSize,
    k: usize,
    n: usize,
    groups: usize,
}

impl DeviceAwqWeight {
    pub fn qweight(&self) -> &Tensor {
        &self.qweight
    }
    pub fn qzeros(&self) -> &Tensor {
        &self.qzeros
    }
    pub fn scales(&self) -> &Tensor {
        &self.scales
    }
    pub fn group_size(&self) -> GroupSize {
        self.group_size
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// The device tensors with their names.
    pub fn tensors(&self) -> [(&'static str, &Tensor); 3] {
        [
            ("qweight", &self.qweight),
            ("qzeros", &self.qzeros),
            ("scales", &self.scales),
        ]
    }

    /// Copies the weight back and re-validates it.
    pub fn download(&self, backend: &dyn Backend) -> Result<AwqWeight> {
        AwqWeight::new(
            AwqTensors {
                qweight: backend.download_tensor(&self.qweight)?,
                qzeros: backend.download_tensor(&self.qzeros)?,
                scales: backend.download_tensor(&self.scales)?,
            },
            AwqLayout {
                group_size: self.group_size,
            },
        )
    }
}
