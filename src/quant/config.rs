//! Quantization configs, as checkpoints ship them.
//!
//! [`QuantConfig::from_dir`] looks, in this order, for `config.json`'s
//! `quantization_config` (what transformers and vLLM read), then
//! `quantize_config.json` (AutoGPTQ / GPTQModel), then `hf_quant_config.json`
//! (ModelOpt). Recognized:
//! * GPTQ: `quant_method: "gptq"` (or an AutoGPTQ file without
//!   `quant_method` that has `bits`), `bits` 4 or 8, `group_size`,
//!   `desc_act`, `sym`, `format` / legacy `checkpoint_format` (`gptq` or
//!   `gptq_v2`; repacked formats like `marlin` are refused), `static_groups`.
//! * AWQ: `quant_method: "awq"`, `bits` / `w_bit` = 4, `group_size` /
//!   `q_group_size`, `zero_point: true`, `version: "gemm"`.
//! * NVFP4: compressed-tensors (`quant_method: "compressed-tensors"`, format
//!   `nvfp4-pack-quantized` at the top or in every config group, 4-bit float
//!   weights in groups of 16) and ModelOpt (`quant_algo: "NVFP4"`, at the top
//!   of a `quant_method: "modelopt"` config or under `quantization` in
//!   `hf_quant_config.json`).
//!
//! Anything else (another method, bits, version or format) is a typed
//! `Error::Format` naming the file and the value, never a guess.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::quant::GroupSize;
use crate::quant::awq::AwqLayout;
use crate::quant::gptq::{GptqLayout, ZeroFormat};
use crate::quant::nvfp4::Nvfp4Producer;

/// A GPTQ checkpoint's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptqConfig {
    pub bits: u32,
    pub group_size: GroupSize,
    /// Act-order: informational (g_idx in the checkpoint is always honoured).
    pub desc_act: bool,
    /// Informational (the zero points in the checkpoint are always used).
    pub sym: bool,
    pub zero_format: ZeroFormat,
    pub static_groups: bool,
}

impl GptqConfig {
    pub fn layout(&self) -> GptqLayout {
        GptqLayout {
            bits: self.bits,
            group_size: self.group_size,
            zero_format: self.zero_format,
        }
    }
}

/// An AWQ checkpoint's config (bits 4, zero point, gemm layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwqConfig {
    pub group_size: GroupSize,
}

impl AwqConfig {
    pub fn layout(&self) -> AwqLayout {
        AwqLayout {
            group_size: self.group_size,
        }
    }
}

/// An NVFP4 checkpoint's config. The global-scale convention is decided
/// by the tensor names (`weight_scale_2` or `weight_global_scale`), which
/// state it unambiguously; the producer is informational.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nvfp4Config {
    pub producer: Nvfp4Producer,
}

/// The quantization of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantConfig {
    Gptq(GptqConfig),
    Awq(AwqConfig),
    Nvfp4(Nvfp4Config),
}

impl QuantConfig {
    /// The files consulted by [`QuantConfig::from_dir`], in order.
    pub const FILES: [&'static str; 3] = [
        "config.json",
        "quantize_config.json",
        "hf_quant_config.json",
    ];

    /// `gptq`, `awq` or `nvfp4`.
    pub fn method(&self) -> &'static str {
        match self {
            QuantConfig::Gptq(_) => "gptq",
            QuantConfig::Awq(_) => "awq",
            QuantConfig::Nvfp4(_) => "nvfp4",
        }
    }

    /// The config of the checkpoint in `dir`, or `None` when none of
    /// [`QuantConfig::FILES`] holds one.
    pub fn from_dir(dir: &Path) -> Result<Option<QuantConfig>> {
        for name in Self::FILES {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let source = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&source, e))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| Error::format(&source, format!("not valid JSON: {e}")))?;
            let config = if name == "config.json" {
                match value.get("quantization_config") {
                    Some(q) => q,
                    None => continue,
                }
            } else {
                &value
            };
            return Self::from_value(&source, config).map(Some);
        }
        Ok(None)
    }

    /// Parses a config from JSON text (a `quantization_config` object, a
    /// `quantize_config.json` or an `hf_quant_config.json`). `source` names
    /// it in errors.
    pub fn from_json_str(source: &str, text: &str) -> Result<QuantConfig> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::format(source, format!("not valid JSON: {e}")))?;
        Self::from_value(source, &value)
    }

    /// Parses a config from a JSON value (see [`QuantConfig::from_json_str`]).
    pub fn from_value(source: &str, value: &Value) -> Result<QuantConfig> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::format(source, "the quantization config is not a JSON object"))?;
        let cx = Cx { source, obj };
        let method = cx.string("quant_method")?.map(|m| m.to_ascii_lowercase());
        match method.as_deref() {
            Some("gptq") => cx.gptq(),
            Some("awq") => cx.awq(),
            Some("compressed-tensors") => cx.compressed_tensors(),
            Some("modelopt") => cx.modelopt(),
            Some(other) => Err(cx.err(format!(
                "quant_method `{other}` is not supported (gptq, awq, compressed-tensors nvfp4, modelopt nvfp4)"
            ))),
            None if obj.contains_key("quantization") || obj.contains_key("quant_algo") => {
                cx.modelopt()
            }
            None if obj.contains_key("bits") => cx.gptq(),
            None => Err(cx.err("no quant_method (and not an AutoGPTQ or ModelOpt config)")),
        }
    }
}

/// Field access with errors that name the file and the key.
struct Cx<'a> {
    source: &'a str,
    obj: &'a Map<String, Value>,
}

impl<'a> Cx<'a> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::format(self.source, reason)
    }

    fn with(&self, obj: &'a Map<String, Value>) -> Cx<'a> {
        Cx {
            source: self.source,
            obj,
        }
    }

    /// The first present key of `keys`.
    fn get(&self, keys: &[&'static str]) -> Option<(&'static str, &'a Value)> {
        keys.iter()
            .find_map(|&k| self.obj.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
    }

    fn string(&self, key: &'static str) -> Result<Option<&'a str>> {
        match self.get(&[key]) {
            None => Ok(None),
            Some((_, Value::String(s))) => Ok(Some(s)),
            Some((_, v)) => Err(self.err(format!("`{key}` must be a string, got {v}"))),
        }
    }

    fn int(&self, keys: &[&'static str]) -> Result<Option<i64>> {
        match self.get(keys) {
            None => Ok(None),
            Some((k, v)) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{k}` must be an integer, got {v}"))),
        }
    }

    fn boolean(&self, key: &'static str, default: bool) -> Result<bool> {
        match self.get(&[key]) {
            None => Ok(default),
            Some((_, Value::Bool(b))) => Ok(*b),
            Some((_, v)) => Err(self.err(format!("`{key}` must be true or false, got {v}"))),
        }
    }

    fn group_size(&self, keys: &[&'static str], default: i64) -> Result<GroupSize> {
        let value = self.int(keys)?.unwrap_or(default);
        GroupSize::from_config(value)
            .ok_or_else(|| self.err(format!("group_size {value} must be -1 or > 0")))
    }

    fn gptq(&self) -> Result<QuantConfig> {
        let bits = self
            .int(&["bits"])?
            .ok_or_else(|| self.err("GPTQ config without `bits`"))?;
        if bits != 4 && bits != 8 {
            return Err(self.err(format!("GPTQ bits {bits} are not supported (4 or 8)")));
        }
        let format = match self.string("format")? {
            Some(f) => Some(f),
            None => self.string("checkpoint_format")?,
        }
        .unwrap_or("gptq");
        let zero_format = ZeroFormat::parse(format).ok_or_else(|| {
            self.err(format!(
                "GPTQ checkpoint format `{format}` is not supported (gptq or gptq_v2)"
            ))
        })?;
        Ok(QuantConfig::Gptq(GptqConfig {
            bits: bits as u32,
            group_size: self.group_size(&["group_size"], 128)?,
            desc_act: self.boolean("desc_act", false)?,
            sym: self.boolean("sym", true)?,
            zero_format,
            static_groups: self.boolean("static_groups", false)?,
        }))
    }

    fn awq(&self) -> Result<QuantConfig> {
        let bits = self.int(&["bits", "w_bit"])?.unwrap_or(4);
        if bits != 4 {
            return Err(self.err(format!("AWQ bits {bits} are not supported (4)")));
        }
        if !self.boolean("zero_point", true)? {
            return Err(self.err("AWQ without zero points (zero_point: false) is not supported"));
        }
        let version = self.string("version")?.unwrap_or("gemm");
        if !version.eq_ignore_ascii_case("gemm") {
            return Err(self.err(format!("AWQ version `{version}` is not supported (gemm)")));
        }
        Ok(QuantConfig::Awq(AwqConfig {
            group_size: self.group_size(&["group_size", "q_group_size"], 128)?,
        }))
    }

    fn modelopt(&self) -> Result<QuantConfig> {
        let inner = match self.obj.get("quantization") {
            Some(Value::Object(q)) => self.with(q),
            Some(v) => return Err(self.err(format!("`quantization` must be an object, got {v}"))),
            None => self.with(self.obj),
        };
        let algo = inner
            .string("quant_algo")?
            .ok_or_else(|| self.err("ModelOpt config without `quant_algo`"))?;
        if algo != "NVFP4" {
            return Err(self.err(format!(
                "ModelOpt quant_algo `{algo}` is not supported (NVFP4; NVFP4_AWQ's pre_quant_scale is not)"
            )));
        }
        if let Some(gs) = inner.int(&["group_size"])?
            && gs != 16
        {
            return Err(self.err(format!("NVFP4 group_size {gs} is not 16")));
        }
        Ok(QuantConfig::Nvfp4(Nvfp4Config {
            producer: Nvfp4Producer::ModelOpt,
        }))
    }

    fn compressed_tensors(&self) -> Result<QuantConfig> {
        const NVFP4: &str = "nvfp4-pack-quantized";
        let top = self.string("format")?;
        let groups = match self.obj.get("config_groups") {
            Some(Value::Object(g)) if !g.is_empty() => g,
            _ => return Err(self.err("compressed-tensors config without config_groups")),
        };
        for (name, group) in groups {
            let group = group
                .as_object()
                .ok_or_else(|| self.err(format!("config group `{name}` is not an object")))?;
            let g = self.with(group);
            let format = g.string("format")?.or(top).unwrap_or("(none)");
            if format != NVFP4 {
                return Err(self.err(format!(
                    "compressed-tensors format `{format}` (group `{name}`) is not supported ({NVFP4})"
                )));
            }
            let weights = match group.get("weights") {
                Some(Value::Object(w)) => self.with(w),
                _ => return Err(self.err(format!("config group `{name}` has no weights"))),
            };
            let bits = weights.int(&["num_bits"])?;
            let kind = weights.string("type")?;
            let gs = weights.int(&["group_size"])?;
            if bits != Some(4) || kind != Some("float") || gs.is_some_and(|g| g != 16) {
                return Err(self.err(format!(
                    "config group `{name}`: weights must be 4-bit float in groups of 16, got num_bits {bits:?}, type {kind:?}, group_size {gs:?}"
                )));
            }
        }
        Ok(QuantConfig::Nvfp4(Nvfp4Config {
            producer: Nvfp4Producer::CompressedTensors,
        }))
    }
}
