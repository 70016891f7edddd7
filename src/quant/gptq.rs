//! GPTQ (AutoGPTQ, GPTQModel, optimum/transformers; vLLM reads the same
//! files), 4 and 8 bits. With b bits, pf = 32/b values per int32 word and
//! G = ceil(K / group_size):
//!
//! | tensor    | dtype          | shape        | packed along |
//! |-----------|----------------|--------------|--------------|
//! | `qweight` | i32            | `[K/pf, N]`  | K            |
//! | `qzeros`  | i32            | `[G, N/pf]`  | N            |
//! | `scales`  | f16, bf16, f32 | `[G, N]`     | —            |
//! | `g_idx`   | i32            | `[K]`        | —            |
//!
//! `q[k,n] = (qweight[k/pf, n] >> b·(k%pf)) & mask`, `z[g,n]` likewise from
//! `qzeros` along N, and `W[n,k] = scales[g_idx[k], n] · (q[k,n] − z[g_idx[k], n])`.
//! Zero storage v1 (`format: "gptq"`) stores z − 1: the whole word gets
//! `0x11111111` (4-bit) / `0x01010101` (8-bit) added back with wrapping
//! arithmetic before unpacking (GPTQModel's rule, which — unlike a per-nibble
//! +1 — is right for z = 0). v2 (`"gptq_v2"`) stores z.
//!
//! Requirements checked by [`GptqWeight::new`]: bits 4 or 8; K and N
//! multiples of pf (the words hold whole fields; real checkpoints have both
//! multiples of 32); scales `[G, N]` with G = ceil(K / group_size), finite;
//! every `g_idx` entry in `[0, G)`. `g_idx` is always honoured, so
//! act-order (desc_act) checkpoints and static groups need nothing special.

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::quant::{
    GroupSize, check_finite, check_host, check_weight_size, dims2, floats, pack, rtn, to_dtype,
    weights_to_quantize, words, words_tensor,
};
use crate::tensor::{HostTensor, Tensor};

const OP: &str = "gptq";

/// The scale dtypes GPTQ checkpoints use (AutoGPTQ may write bf16; f32 is
/// accepted for engines that keep full-precision scales).
const SCALE_DTYPES: [DType; 3] = [DType::F16, DType::BF16, DType::F32];

/// How `qzeros` stores the zero points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ZeroFormat {
    /// `format: "gptq"` (the default, what GPTQModel exports): stores z − 1,
    /// subtracted from each whole word with wrapping arithmetic.
    #[default]
    V1,
    /// `format: "gptq_v2"`: stores z.
    V2,
}

impl ZeroFormat {
    /// The config spelling (`gptq` / `gptq_v2`).
    pub fn name(self) -> &'static str {
        match self {
            ZeroFormat::V1 => "gptq",
            ZeroFormat::V2 => "gptq_v2",
        }
    }

    pub fn parse(s: &str) -> Option<ZeroFormat> {
        match s {
            "gptq" => Some(ZeroFormat::V1),
            "gptq_v2" => Some(ZeroFormat::V2),
            _ => None,
        }
    }
}

/// The layout parameters a GPTQ checkpoint's config gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GptqLayout {
    /// 4 or 8.
    pub bits: u32,
    pub group_size: GroupSize,
    pub zero_format: ZeroFormat,
}

/// The checkpoint tensors of one GPTQ layer (`P.qweight`, `P.qzeros`,
/// `P.scales`, `P.g_idx`), unvalidated.
#[derive(Debug, Clone)]
pub struct GptqTensors {
    pub qweight: HostTensor,
    pub qzeros: HostTensor,
    pub scales: HostTensor,
    /// Absent: the sequential map `k / group_size`.
    pub g_idx: Option<HostTensor>,
}

/// Parameters of [`GptqWeight::quantize`] (round to nearest, no Hessian).
#[derive(Debug, Clone, PartialEq)]
pub struct GptqQuantizeParams {
    pub bits: u32,
    pub group_size: GroupSize,
    /// Symmetric: z = 2^(b−1). Asymmetric: z = clamp(round(−min/s), 0, 2^b−1).
    pub sym: bool,
    pub zero_format: ZeroFormat,
    /// Act-order: `perm[i]` is the input column quantized i-th, so group g
    /// holds columns `perm[g·gs .. (g+1)·gs]` and `g_idx[perm[i]] = i / gs`
    /// (non-monotonic). Weights stay in the original column order, as
    /// AutoGPTQ / GPTQModel store them. `None`: sequential groups.
    pub act_order: Option<Vec<usize>>,
    /// f16 (what checkpoints hold), bf16 or f32.
    pub scale_dtype: DType,
}

impl Default for GptqQuantizeParams {
    fn default() -> Self {
        GptqQuantizeParams {
            bits: 4,
            group_size: GroupSize::Columns(128),
            sym: true,
            zero_format: ZeroFormat::V1,
            act_order: None,
            scale_dtype: DType::F16,
        }
    }
}

/// A validated GPTQ weight in host memory. Built only by [`GptqWeight::new`]
/// (or [`GptqWeight::quantize`]), so its tensors are always consistent.
#[derive(Debug, Clone, PartialEq)]
pub struct GptqWeight {
    qweight: HostTensor,
    qzeros: HostTensor,
    scales: HostTensor,
    g_idx: HostTensor,
    /// `g_idx` as checked indices into the G groups.
    groups_of: Vec<u32>,
    layout: GptqLayout,
    k: usize,
    n: usize,
    groups: usize,
}

fn check_bits(bits: u32) -> Result<usize> {
    match bits {
        4 | 8 => Ok(32 / bits as usize),
        other => Err(Error::invalid(
            OP,
            "bits",
            format!("must be 4 or 8, got {other} (2- and 3-bit GPTQ are not supported)"),
        )),
    }
}

impl GptqWeight {
    /// Validates a layer's tensors against its layout.
    pub fn new(tensors: GptqTensors, layout: GptqLayout) -> Result<GptqWeight> {
        let GptqTensors {
            qweight,
            qzeros,
            scales,
            g_idx,
        } = tensors;
        let pf = check_bits(layout.bits)?;
        layout.group_size.check(OP)?;
        let (rows, n) = dims2(OP, "qweight", &qweight)?;
        let k = rows.saturating_mul(pf);
        check_weight_size(OP, n, k)?;
        check_host(OP, "qweight", &qweight, &[DType::I32], &[rows, n])?;
        if n % pf != 0 {
            return Err(Error::invalid(
                OP,
                "qweight",
                format!(
                    "N = {n} must be a multiple of {pf} (qzeros packs {pf} zero points per word along N)"
                ),
            ));
        }
        let groups = layout.group_size.groups(k);
        if scales.shape().first() != Some(&groups) {
            return Err(Error::invalid(
                OP,
                "scales",
                format!(
                    "shape {:?} does not have G = ceil(K / group_size) = ceil({k} / {}) = {groups} rows",
                    scales.shape(),
                    layout.group_size.columns(k)
                ),
            ));
        }
        check_host(OP, "scales", &scales, &SCALE_DTYPES, &[groups, n])?;
        check_host(OP, "qzeros", &qzeros, &[DType::I32], &[groups, n / pf])?;
        check_finite(OP, "scales", &floats(&scales))?;
        let gs = layout.group_size.columns(k);
        let g_idx = match g_idx {
            Some(g_idx) => {
                check_host(OP, "g_idx", &g_idx, &[DType::I32], &[k])?;
                g_idx
            }
            None => {
                let sequential: Vec<i32> = (0..k).map(|i| (i / gs) as i32).collect();
                HostTensor::from_i32(&[k], &sequential)?
            }
        };
        let values = g_idx.to_i32_vec().unwrap_or_default();
        let mut groups_of = Vec::with_capacity(k);
        for (i, &g) in values.iter().enumerate() {
            match u32::try_from(g) {
                Ok(g) if (g as usize) < groups => groups_of.push(g),
                _ => {
                    return Err(Error::invalid(
                        OP,
                        "g_idx",
                        format!("entry {i} is {g}, outside the {groups} groups [0, {groups})"),
                    ));
                }
            }
        }
        Ok(GptqWeight {
            qweight,
            qzeros,
            scales,
            g_idx,
            groups_of,
            layout,
            k,
            n,
            groups,
        })
    }

    pub fn qweight(&self) -> &HostTensor {
        &self.qweight
    }
    /// The zero words as stored (see [`GptqWeight::zero_format`]).
    pub fn qzeros(&self) -> &HostTensor {
        &self.qzeros
    }
    pub fn scales(&self) -> &HostTensor {
        &self.scales
    }
    /// i32 `[K]`, always present (sequential when the checkpoint had none).
    pub fn g_idx(&self) -> &HostTensor {
        &self.g_idx
    }
    /// The group of each input column, every entry `< groups()`.
    pub fn groups_of(&self) -> &[u32] {
        &self.groups_of
    }
    pub fn layout(&self) -> GptqLayout {
        self.layout
    }
    pub fn bits(&self) -> u32 {
        self.layout.bits
    }
    pub fn group_size(&self) -> GroupSize {
        self.layout.group_size
    }
    pub fn zero_format(&self) -> ZeroFormat {
        self.layout.zero_format
    }
    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }
    /// G, the rows of `scales` and `qzeros`.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// True when `g_idx` is not the sequential `k / group_size` (act-order).
    pub fn is_act_order(&self) -> bool {
        let gs = self.layout.group_size.columns(self.k);
        self.groups_of
            .iter()
            .enumerate()
            .any(|(i, &g)| g as usize != i / gs)
    }

    /// True when every zero point is 2^(b−1) (a symmetric checkpoint).
    pub fn is_symmetric(&self) -> bool {
        let mid = 1u8 << (self.layout.bits - 1);
        self.zeros().iter().all(|&z| z == mid)
    }

    /// The codes `q[k, n]`, row-major `[K, N]`.
    pub fn codes(&self) -> Vec<u8> {
        pack::unpack_rows(&words(&self.qweight), self.k, self.n, self.layout.bits)
            .unwrap_or_default()
    }

    /// The zero words in v2 form (z itself), `[G, N/pf]`.
    pub fn qzeros_v2_words(&self) -> Vec<u32> {
        let mut zw = words(&self.qzeros);
        if self.layout.zero_format == ZeroFormat::V1 {
            let offset = pack::v1_offset(self.layout.bits).unwrap_or(0);
            zw.iter_mut().for_each(|w| *w = w.wrapping_add(offset));
        }
        zw
    }

    /// The zero points `z[g, n]`, row-major `[G, N]`, after the v1 fix.
    pub fn zeros(&self) -> Vec<u8> {
        pack::unpack_cols(
            &self.qzeros_v2_words(),
            self.groups,
            self.n,
            self.layout.bits,
        )
        .unwrap_or_default()
    }

    /// The same weight with its zero points stored in `format`.
    pub fn with_zero_format(&self, format: ZeroFormat) -> GptqWeight {
        let mut zw = self.qzeros_v2_words();
        if format == ZeroFormat::V1 {
            let offset = pack::v1_offset(self.layout.bits).unwrap_or(0);
            zw.iter_mut().for_each(|w| *w = w.wrapping_sub(offset));
        }
        let mut weight = self.clone();
        // Same shape as the stored words, so this cannot fail.
        if let Ok(qzeros) = words_tensor(self.qzeros.shape(), &zw) {
            weight.qzeros = qzeros;
            weight.layout.zero_format = format;
        }
        weight
    }

    /// The dequantized weight `[N, K]` in f32: `s · (q − z)` formed in f32
    /// (exact for f16 / bf16 scales).
    pub fn dequantize_f32(&self) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        let q = self.codes();
        let z = self.zeros();
        let s = floats(&self.scales);
        let mut w = vec![0.0f32; n * k];
        for (kk, &g) in self.groups_of.iter().enumerate() {
            let row = g as usize * n;
            for nn in 0..n {
                let diff = i32::from(q[kk * n + nn]) - i32::from(z[row + nn]);
                w[nn * k + kk] = s[row + nn] * diff as f32;
            }
        }
        w
    }

    /// The dequantized weight `[N, K]` in `dtype` (f32, f16 or bf16),
    /// rounded once from the f32 product — bit for bit what the packages
    /// produce.
    pub fn dequantize(&self, dtype: DType) -> Result<HostTensor> {
        to_dtype(OP, dtype, &[self.n, self.k], &self.dequantize_f32())
    }

    /// Round-to-nearest quantization of a float weight `[N, K]`.
    ///
    /// Each group's scale is rounded up to `scale_dtype`, so every element
    /// satisfies `|w − s·(q − z)| ≤ s/2` (see `rtn`). K and N must be
    /// multiples of 32/bits.
    pub fn quantize(weight: &HostTensor, params: &GptqQuantizeParams) -> Result<GptqWeight> {
        let (n, k, w) = weights_to_quantize(OP, weight)?;
        let bits = params.bits;
        let pf = check_bits(bits)?;
        params.group_size.check(OP)?;
        check_weight_size(OP, n, k)?;
        if k % pf != 0 || n % pf != 0 {
            return Err(Error::invalid(
                OP,
                "weight",
                format!("[N, K] = [{n}, {k}]: both must be multiples of {pf} for {bits}-bit words"),
            ));
        }
        if !params.scale_dtype.is_float() {
            return Err(Error::invalid(
                OP,
                "scale_dtype",
                format!("must be f16, bf16 or f32, got {}", params.scale_dtype),
            ));
        }
        let order = match &params.act_order {
            Some(perm) => check_permutation(perm, k)?,
            None => (0..k).collect(),
        };
        let gs = params.group_size.columns(k);
        let groups = params.group_size.groups(k);
        let mut codes = vec![0u8; k * n];
        let mut zeros = vec![0u8; groups * n];
        let mut scales = vec![0.0f32; groups * n];
        let mut g_idx = vec![0i32; k];
        for (g, columns) in order.chunks(gs).enumerate() {
            for &c in columns {
                g_idx[c] = g as i32;
            }
            for nn in 0..n {
                let row = &w[nn * k..(nn + 1) * k];
                let values = columns.iter().map(|&c| row[c]);
                let p = rtn::group_params(OP, values, bits, params.sym, params.scale_dtype)?;
                scales[g * n + nn] = p.scale;
                zeros[g * n + nn] = p.zero;
                for &c in columns {
                    codes[c * n + nn] = rtn::code(row[c], p, bits);
                }
            }
        }
        let qweight = pack::pack_rows(&codes, k, n, bits)?;
        let qzeros = pack::pack_cols(&zeros, groups, n, bits)?;
        let v2 = GptqWeight::new(
            GptqTensors {
                qweight: words_tensor(&[k / pf, n], &qweight)?,
                qzeros: words_tensor(&[groups, n / pf], &qzeros)?,
                scales: HostTensor::from_f32(params.scale_dtype, &[groups, n], &scales)?,
                g_idx: Some(HostTensor::from_i32(&[k], &g_idx)?),
            },
            GptqLayout {
                bits,
                group_size: params.group_size,
                zero_format: ZeroFormat::V2,
            },
        )?;
        Ok(v2.with_zero_format(params.zero_format))
    }

    /// Copies the weight to `backend`. The device `qzeros` are always in v2
    /// form (z itself), so kernels never deal with the v1 borrow rule.
    pub fn upload(&self, backend: &dyn Backend) -> Result<DeviceGptqWeight> {
        let qzeros = words_tensor(self.qzeros.shape(), &self.qzeros_v2_words())?;
        Ok(DeviceGptqWeight {
            qweight: backend.upload_tensor(&self.qweight)?,
            qzeros: backend.upload_tensor(&qzeros)?,
            scales: backend.upload_tensor(&self.scales)?,
            g_idx: backend.upload_tensor(&self.g_idx)?,
            bits: self.layout.bits,
            group_size: self.layout.group_size,
            source_zero_format: self.layout.zero_format,
            k: self.k,
            n: self.n,
            groups: self.groups,
            act_order: self.is_act_order(),
            symmetric: self.is_symmetric(),
        })
    }
}

/// `perm` must hold each of 0..k exactly once.
fn check_permutation(perm: &[usize], k: usize) -> Result<Vec<usize>> {
    if perm.len() != k {
        return Err(Error::invalid(
            OP,
            "act_order",
            format!("permutation has {} entries for K = {k}", perm.len()),
        ));
    }
    let mut seen = vec![false; k];
    for (i, &c) in perm.iter().enumerate() {
        if c >= k || std::mem::replace(&mut seen[c], true) {
            return Err(Error::invalid(
                OP,
                "act_order",
                format!(
                    "entry {i} = {c} is out of range or repeated; expected a permutation of 0..{k}"
                ),
            ));
        }
    }
    Ok(perm.to_vec())
}

/// A GPTQ weight on a device, made by [`GptqWeight::upload`] from a
/// validated host weight: its shapes and g_idx are valid by construction.
///
/// Tensors: `qweight` i32 `[K/pf, N]`, `qzeros` i32 `[G, N/pf]` in v2 form
/// (z stored as-is, whatever the checkpoint used), `scales` `[G, N]` (f16,
/// bf16 or f32), `g_idx` i32 `[K]` with entries in `[0, G)`. The tensors
/// share buffers with this weight: writing into them (e.g. passing one as an
/// op's output) voids the guarantee, so kernels still clamp group indices.
#[derive(Debug, Clone)]
pub struct DeviceGptqWeight {
    qweight: Tensor,
    qzeros: Tensor,
    scales: Tensor,
    g_idx: Tensor,
    bits: u32,
    group_size: GroupSize,
    source_zero_format: ZeroFormat,
    k: usize,
    n: usize,
    groups: usize,
    act_order: bool,
    symmetric: bool,
}

impl DeviceGptqWeight {
    pub fn qweight(&self) -> &Tensor {
        &self.qweight
    }
    /// v2 zero words (z itself).
    pub fn qzeros(&self) -> &Tensor {
        &self.qzeros
    }
    pub fn scales(&self) -> &Tensor {
        &self.scales
    }
    pub fn g_idx(&self) -> &Tensor {
        &self.g_idx
    }
    pub fn bits(&self) -> u32 {
        self.bits
    }
    pub fn group_size(&self) -> GroupSize {
        self.group_size
    }
    /// The zero format of the checkpoint this came from (the device copy is
    /// always v2).
    pub fn source_zero_format(&self) -> ZeroFormat {
        self.source_zero_format
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
    /// g_idx is not sequential (kernels may sort by it and permute x).
    pub fn is_act_order(&self) -> bool {
        self.act_order
    }
    /// Every zero point is 2^(b−1).
    pub fn is_symmetric(&self) -> bool {
        self.symmetric
    }

    /// The device tensors with their names (validation, aliasing, byte counts).
    pub fn tensors(&self) -> [(&'static str, &Tensor); 4] {
        [
            ("qweight", &self.qweight),
            ("qzeros", &self.qzeros),
            ("scales", &self.scales),
            ("g_idx", &self.g_idx),
        ]
    }

    /// Copies the weight back and re-validates it (the reference backend
    /// uses this, so a weight corrupted on the device is an error, not a
    /// wrong answer or a panic).
    pub fn download(&self, backend: &dyn Backend) -> Result<GptqWeight> {
        GptqWeight::new(
            GptqTensors {
                qweight: backend.download_tensor(&self.qweight)?,
                qzeros: backend.download_tensor(&self.qzeros)?,
                scales: backend.download_tensor(&self.scales)?,
                g_idx: Some(backend.download_tensor(&self.g_idx)?),
            },
            GptqLayout {
                bits: self.bits,
                group_size: self.group_size,
                zero_format: ZeroFormat::V2,
            },
        )
    }
}
