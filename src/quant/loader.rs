//! Reading quantized layers from safetensors checkpoints, by the
//! checkpoint's own tensor names.
//!
//! A [`Checkpoint`] is one safetensors file, a directory (a sharded
//! checkpoint through `model.safetensors.index.json`, else
//! `model.safetensors`, else every `*.safetensors` in it), or in-memory
//! bytes (tests, fuzzing). Opening reads only the headers; a tensor's bytes
//! are read when it is asked for, so loading one layer of a large model reads
//! that layer only. No memory mapping: no `unsafe`.
//!
//! For a layer prefix `P` (e.g. `model.layers.0.mlp.down_proj`; empty for
//! case files whose tensors have no prefix):
//! * GPTQ: `P.qweight`, `P.qzeros`, `P.scales`, optional `P.g_idx`, `P.bias`.
//! * AWQ: `P.qweight`, `P.qzeros`, `P.scales`, optional `P.bias`.
//! * NVFP4: `P.weight_packed` (compressed-tensors) or `P.weight` (ModelOpt),
//!   `P.weight_scale`, and exactly one of `P.weight_scale_2` (multiplier) or
//!   `P.weight_global_scale` (divisor); optional `P.bias`. `P.input_scale`
//!   (W4A4 activations) is ignored. `P.pre_quant_scale` (ModelOpt
//!   NVFP4_AWQ) is REJECTED: it multiplies x, not W, so it cannot be folded
//!   into an NVFP4 weight; engines should fold it into the preceding norm.
//!
//! Every problem is a typed error: `Error::Format` naming the file (or
//! `<memory>`) and the layer for malformed files, missing or wrong-dtype
//! tensors and inconsistent shapes; `Error::Io` for read failures.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use safetensors::tensor::Metadata;
use serde_json::Value;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::quant::awq::{AwqTensors, AwqWeight};
use crate::quant::config::{AwqConfig, GptqConfig, QuantConfig};
use crate::quant::floats;
use crate::quant::gptq::{GptqTensors, GptqWeight};
use crate::quant::nvfp4::{GlobalScale, Nvfp4Tensors, Nvfp4Weight};
use crate::tensor::HostTensor;

/// Largest header accepted (the safetensors crate's own limit).
const MAX_HEADER: usize = 100_000_000;

/// The index file of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// A quantized linear layer read from a checkpoint.
#[derive(Debug, Clone)]
pub struct LoadedLinear<W> {
    pub weight: W,
    /// `P.bias` in the checkpoint's dtype (convert it to x's dtype for the op).
    pub bias: Option<HostTensor>,
}

/// A layer of whichever format the checkpoint's config names.
#[derive(Debug, Clone)]
pub enum QuantLinear {
    Gptq(LoadedLinear<GptqWeight>),
    Awq(LoadedLinear<AwqWeight>),
    Nvfp4(LoadedLinear<Nvfp4Weight>),
}

enum Storage {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// One safetensors file: its parsed header and where its data starts.
struct StFile {
    source: String,
    storage: Storage,
    header: Metadata,
    data_start: usize,
}

/// A safetensors checkpoint (see the module docs).
pub struct Checkpoint {
    source: String,
    files: Vec<StFile>,
    /// Tensor name → index into `files`.
    names: HashMap<String, usize>,
    config: Option<QuantConfig>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("source", &self.source)
            .field("files", &self.files.len())
            .field("tensors", &self.names.len())
            .field("config", &self.config)
            .finish()
    }
}

/// Parses the 8-byte length and the JSON header; `total` is the file size.
fn parse_header(source: &str, bytes: &[u8], total: usize) -> Result<(Metadata, usize)> {
    let n = header_len(source, bytes, total)?;
    let header = bytes
        .get(8..8 + n)
        .ok_or_else(|| Error::format(source, "truncated header"))?;
    let metadata: Metadata = serde_json::from_slice(header)
        .map_err(|e| Error::format(source, format!("invalid safetensors header: {e}")))?;
    let data_start = 8 + n;
    if data_start.checked_add(metadata.data_len()) != Some(total) {
        return Err(Error::format(
            source,
            format!(
                "the header describes {} data bytes but the file has {} after its {data_start}-byte header (truncated or corrupt)",
                metadata.data_len(),
                total - data_start
            ),
        ));
    }
    Ok((metadata, data_start))
}

/// The header length from the first 8 bytes, checked against `total`.
fn header_len(source: &str, bytes: &[u8], total: usize) -> Result<usize> {
    let first: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            Error::format(source, "shorter than the 8-byte safetensors header length")
        })?;
    let n = u64::from_le_bytes(first);
    match usize::try_from(n) {
        Ok(n) if n <= MAX_HEADER && n <= total.saturating_sub(8) => Ok(n),
        _ => Err(Error::format(
            source,
            format!(
                "header length {n} does not fit in the {total}-byte file (or exceeds {MAX_HEADER})"
            ),
        )),
    }
}

impl StFile {
    fn from_bytes(source: String, bytes: Vec<u8>) -> Result<StFile> {
        let (header, data_start) = parse_header(&source, &bytes, bytes.len())?;
        Ok(StFile {
            source,
            storage: Storage::Bytes(bytes),
            header,
            data_start,
        })
    }

    fn open(path: &Path) -> Result<StFile> {
        let source = path.display().to_string();
        let mut file = File::open(path).map_err(|e| Error::io(&source, e))?;
        let total = file.metadata().map_err(|e| Error::io(&source, e))?.len();
        let total = usize::try_from(total)
            .map_err(|_| Error::format(&source, "file too large for this platform"))?;
        let mut first = [0u8; 8];
        let got = read_up_to(&mut file, &mut first).map_err(|e| Error::io(&source, e))?;
        let n = header_len(&source, &first[..got], total)?;
        let mut bytes = vec![0u8; 8 + n];
        bytes[..8].copy_from_slice(&first);
        file.read_exact(&mut bytes[8..])
            .map_err(|e| Error::io(&source, e))?;
        let (header, data_start) = parse_header(&source, &bytes, total)?;
        Ok(StFile {
            source,
            storage: Storage::Path(path.to_path_buf()),
            header,
            data_start,
        })
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        let info = self
            .header
            .info(name)
            .ok_or_else(|| Error::format(&self.source, format!("tensor `{name}` not found")))?;
        let dtype = DType::from_safetensors(info.dtype).ok_or_else(|| {
            Error::format(
                &self.source,
                format!(
                    "tensor `{name}` has dtype {:?}, which radiant does not read",
                    info.dtype
                ),
            )
        })?;
        let (start, end) = info.data_offsets;
        let bytes = match &self.storage {
            Storage::Bytes(b) => b
                .get(self.data_start + start..self.data_start + end)
                .ok_or_else(|| {
                    Error::format(&self.source, format!("tensor `{name}` is truncated"))
                })?
                .to_vec(),
            Storage::Path(path) => {
                let mut file = File::open(path).map_err(|e| Error::io(&self.source, e))?;
                file.seek(SeekFrom::Start((self.data_start + start) as u64))
                    .map_err(|e| Error::io(&self.source, e))?;
                let mut bytes = vec![0u8; end - start];
                file.read_exact(&mut bytes)
                    .map_err(|e| Error::io(&self.source, e))?;
                bytes
            }
        };
        HostTensor::from_bytes(dtype, &info.shape, bytes)
            .map_err(|e| Error::format(&self.source, format!("tensor `{name}`: {e}")))
    }
}

/// Reads as many bytes as are there, up to `buf.len()`.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

/// `P.suffix`, or `suffix` for an empty prefix.
fn tensor_name(prefix: &str, suffix: &str) -> String {
    let prefix = prefix.trim_end_matches('.');
    if prefix.is_empty() {
        suffix.to_string()
    } else {
        format!("{prefix}.{suffix}")
    }
}

impl Checkpoint {
    /// Opens a safetensors file or a checkpoint directory and reads the
    /// quantization config beside it, if there is one.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let (dir, files) = if path.is_file() {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, vec![StFile::open(path)?])
        } else if path.is_dir() {
            (path.to_path_buf(), Self::open_dir(path)?)
        } else {
            return Err(Error::format(source, "no such file or directory"));
        };
        let mut checkpoint = Self::from_files(source, files)?;
        if path.is_dir() {
            checkpoint.check_index(path)?;
        }
        checkpoint.config = QuantConfig::from_dir(&dir)?;
        Ok(checkpoint)
    }

    /// A checkpoint of one in-memory safetensors file (no config: add one
    /// with [`Checkpoint::with_config`]).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Checkpoint> {
        let file = StFile::from_bytes("<memory>".into(), bytes)?;
        Self::from_files("<memory>".into(), vec![file])
    }

    /// Sets (or replaces) the quantization config.
    pub fn with_config(mut self, config: QuantConfig) -> Checkpoint {
        self.config = Some(config);
        self
    }

    pub fn config(&self) -> Option<&QuantConfig> {
        self.config.as_ref()
    }

    /// The file, directory or `<memory>` this was read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `__metadata__` of the first file (case files keep their
    /// parameters there).
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.files
            .first()
            .and_then(|f| f.header.metadata().as_ref())
    }

    /// Every tensor name, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.names.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Reads one tensor by its full name.
    pub fn tensor(&self, name: &str) -> Result<HostTensor> {
        let &file = self
            .names
            .get(name)
            .ok_or_else(|| Error::format(&self.source, format!("tensor `{name}` not found")))?;
        self.files[file].read(name)
    }

    fn optional(&self, name: &str) -> Result<Option<HostTensor>> {
        if self.contains(name) {
            self.tensor(name).map(Some)
        } else {
            Ok(None)
        }
    }

    fn from_files(source: String, files: Vec<StFile>) -> Result<Checkpoint> {
        let mut names = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for name in file.header.tensors().into_keys() {
                if let Some(j) = names.insert(name.clone(), i) {
                    return Err(Error::format(
                        &source,
                        format!(
                            "tensor `{name}` is in both {} and {}",
                            files[j].source, file.source
                        ),
                    ));
                }
            }
        }
        Ok(Checkpoint {
            source,
            files,
            names,
            config: None,
        })
    }

    /// The files of a checkpoint directory.
    fn open_dir(dir: &Path) -> Result<Vec<StFile>> {
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            let shards: BTreeSet<String> = read_index(&index)?.into_values().collect();
            return shards.iter().map(|s| StFile::open(&dir.join(s))).collect();
        }
        let single = dir.join("model.safetensors");
        if single.is_file() {
            return Ok(vec![StFile::open(&single)?]);
        }
        let source = dir.display().to_string();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(&source, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(Error::format(
                source,
                "no safetensors files in the directory",
            ));
        }
        paths.iter().map(|p| StFile::open(p)).collect()
    }

    /// Every tensor of the index must be in the shard it names.
    fn check_index(&self, dir: &Path) -> Result<()> {
        let index = dir.join(INDEX_FILE);
        if !index.is_file() {
            return Ok(());
        }
        for (name, shard) in read_index(&index)? {
            let expected = dir.join(&shard).display().to_string();
            let found = self
                .names
                .get(&name)
                .map(|&i| self.files[i].source.as_str());
            if found != Some(expected.as_str()) {
                return Err(Error::format(
                    index.display().to_string(),
                    format!("the index puts `{name}` in {shard}, which does not hold it"),
                ));
            }
        }
        Ok(())
    }

    // -------------------------------------------------------------------
    // Layers.

    /// Loads layer `prefix` in the format the checkpoint's config names.
    pub fn load_linear(&self, prefix: &str) -> Result<QuantLinear> {
        match self.config {
            Some(QuantConfig::Gptq(c)) => self.load_gptq(prefix, &c).map(QuantLinear::Gptq),
            Some(QuantConfig::Awq(c)) => self.load_awq(prefix, &c).map(QuantLinear::Awq),
            Some(QuantConfig::Nvfp4(_)) => self.load_nvfp4(prefix).map(QuantLinear::Nvfp4),
            None => Err(Error::format(
                &self.source,
                format!(
                    "no quantization config (looked for {})",
                    QuantConfig::FILES.join(", ")
                ),
            )),
        }
    }

    /// Loads a GPTQ layer.
    pub fn load_gptq(&self, prefix: &str, config: &GptqConfig) -> Result<LoadedLinear<GptqWeight>> {
        let at = |s| tensor_name(prefix, s);
        let tensors = GptqTensors {
            qweight: self.tensor(&at("qweight"))?,
            qzeros: self.tensor(&at("qzeros"))?,
            scales: self.tensor(&at("scales"))?,
            g_idx: self.optional(&at("g_idx"))?,
        };
        let weight =
            GptqWeight::new(tensors, config.layout()).map_err(|e| self.layer_error(prefix, e))?;
        Ok(LoadedLinear {
            weight,
            bias: self.bias(prefix)?,
        })
    }

    /// Loads an AWQ (gemm) layer.
    pub fn load_awq(&self, prefix: &str, config: &AwqConfig) -> Result<LoadedLinear<AwqWeight>> {
        let at = |s| tensor_name(prefix, s);
        let tensors = AwqTensors {
            qweight: self.tensor(&at("qweight"))?,
            qzeros: self.tensor(&at("qzeros"))?,
            scales: self.tensor(&at("scales"))?,
        };
        let weight =
            AwqWeight::new(tensors, config.layout()).map_err(|e| self.layer_error(prefix, e))?;
        Ok(LoadedLinear {
            weight,
            bias: self.bias(prefix)?,
        })
    }

    /// Loads an NVFP4 layer (ModelOpt or compressed-tensors names; the
    /// global-scale tensor's name says which convention it uses).
    pub fn load_nvfp4(&self, prefix: &str) -> Result<LoadedLinear<Nvfp4Weight>> {
        let at = |s| tensor_name(prefix, s);
        if self.contains(&at("pre_quant_scale")) {
            return Err(self.layer_error_msg(
                prefix,
                "pre_quant_scale (ModelOpt NVFP4_AWQ) is not supported: it scales x, not W; fold it into the preceding layer",
            ));
        }
        let packed_name = if self.contains(&at("weight_packed")) {
            at("weight_packed")
        } else {
            at("weight")
        };
        let weight_packed = self.tensor(&packed_name)?;
        if weight_packed.dtype() != DType::U8 {
            return Err(self.layer_error_msg(
                prefix,
                &format!(
                    "`{packed_name}` is {}, not u8: the layer is not NVFP4-packed",
                    weight_packed.dtype()
                ),
            ));
        }
        let multiplier = self.optional(&at("weight_scale_2"))?;
        let divisor = self.optional(&at("weight_global_scale"))?;
        let global_scale = match (multiplier, divisor) {
            (Some(g), None) => {
                GlobalScale::Multiplier(self.scalar(prefix, "weight_scale_2", &g)?)
            }
            (None, Some(d)) => {
                GlobalScale::Divisor(self.scalar(prefix, "weight_global_scale", &d)?)
            }
            (Some(_), Some(_)) => {
                return Err(self.layer_error_msg(
                    prefix,
                    "has both weight_scale_2 and weight_global_scale; which convention applies is ambiguous",
                ));
            }
            (None, None) => {
                return Err(self.layer_error_msg(
                    prefix,
                    "has neither weight_scale_2 (ModelOpt) nor weight_global_scale (compressed-tensors)",
                ));
            }
        };
        let tensors = Nvfp4Tensors {
            weight_packed,
            weight_scale: self.tensor(&at("weight_scale"))?,
            global_scale,
        };
        let weight = Nvfp4Weight::new(tensors).map_err(|e| self.layer_error(prefix, e))?;
        Ok(LoadedLinear {
            weight,
            bias: self.bias(prefix)?,
        })
    }

    /// A one-element float tensor (`[]` or `[1]`) as f32.
    fn scalar(&self, prefix: &str, what: &str, t: &HostTensor) -> Result<f32> {
        if !t.dtype().is_float() || t.numel() != 1 || t.shape().len() > 1 {
            return Err(self.layer_error_msg(
                prefix,
                &format!(
                    "`{what}` must be one float ([] or [1]), got {} {:?}",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
        Ok(floats(t)[0])
    }

    fn bias(&self, prefix: &str) -> Result<Option<HostTensor>> {
        let bias = self.optional(&tensor_name(prefix, "bias"))?;
        if let Some(b) = &bias
            && (!b.dtype().is_float() || b.shape().len() != 1)
        {
            return Err(self.layer_error_msg(
                prefix,
                &format!(
                    "`bias` must be a float vector, got {} {:?}",
                    b.dtype(),
                    b.shape()
                ),
            ));
        }
        Ok(bias)
    }

    fn layer_error(&self, prefix: &str, e: Error) -> Error {
        self.layer_error_msg(prefix, &e.to_string())
    }

    fn layer_error_msg(&self, prefix: &str, reason: &str) -> Error {
        Error::format(
            format!("{} (layer `{prefix}`)", self.source),
            reason.to_string(),
        )
    }
}

/// The `weight_map` of an index file, with shard names checked to be plain
/// file names (no directories, no `..`).
fn read_index(path: &Path) -> Result<HashMap<String, String>> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(&source, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&source, format!("not valid JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::format(&source, "no `weight_map` object"))?;
    let mut out = HashMap::with_capacity(map.len());
    for (name, shard) in map {
        let shard = shard.as_str().ok_or_else(|| {
            Error::format(
                &source,
                format!("`{name}` maps to {shard}, not a file name"),
            )
        })?;
        let mut parts = Path::new(shard).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(Error::format(
                &source,
                format!("shard `{shard}` is not a plain file name in the checkpoint directory"),
            ));
        }
        out.insert(name.clone(), shard.to_string());
    }
    Ok(out)
}
