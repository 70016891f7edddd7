//! The case file on disk: safetensors bytes <-> (params, tensors, metadata).
//!
//! Parameters are metadata strings in JSON spelling. Each one is parsed with
//! serde_json and checked for its kind here; value ranges (eps >= 0,
//! window >= -1, ...) are the op's validation, run when the case is built.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::case::{AwqCaseParams, Case, CaseParams, GptqCaseParams};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::{AttentionParams, BLayout, MatmulParams, OpKind, RmsNormParams};
use crate::quant::{GroupSize, ZeroFormat};
use crate::tensor::HostTensor;

const MATMUL_KEYS: &[&str] = &["b_layout"];
const NORM_KEYS: &[&str] = &["eps", "weight_offset"];
const ATTENTION_KEYS: &[&str] = &[
    "causal",
    "softmax_scale",
    "window_left",
    "window_right",
    "softcap",
];
/// `checkpoint_format` is the legacy spelling of `format`; it is read, and
/// written back as `format`.
const GPTQ_KEYS: &[&str] = &["bits", "group_size", "sym", "format", "checkpoint_format"];
/// `bits` is read (it must be 4) but not written.
const AWQ_KEYS: &[&str] = &["group_size", "bits"];

/// What a file holds, before the op's validation.
pub(super) struct Parsed {
    pub params: CaseParams,
    pub inputs: BTreeMap<String, HostTensor>,
    pub expected: BTreeMap<String, HostTensor>,
    pub extra_metadata: BTreeMap<String, String>,
}

/// `expected` or `expected_*`.
pub(super) fn is_expected_name(name: &str) -> bool {
    name == "expected" || name.starts_with("expected_")
}

/// The metadata keys an op's params own.
fn param_keys(op: OpKind) -> &'static [&'static str] {
    match op {
        OpKind::Matmul => MATMUL_KEYS,
        OpKind::RmsNorm | OpKind::FusedAddRmsNorm => NORM_KEYS,
        OpKind::Attention | OpKind::PagedAttention => ATTENTION_KEYS,
        OpKind::GptqMatmul => GPTQ_KEYS,
        OpKind::AwqMatmul => AWQ_KEYS,
        OpKind::Nvfp4Matmul => &[],
    }
}

/// True for `op` and the keys `params` owns.
pub(super) fn is_reserved_key(params: &CaseParams, key: &str) -> bool {
    key == "op" || param_keys(params.op()).contains(&key)
}

/// Parses safetensors bytes into params, inputs, expected outputs and extra
/// metadata. Never panics; every failure is `Error::Format` naming `path`.
pub(super) fn parse(bytes: &[u8], path: &str) -> Result<Parsed> {
    let bad = |reason: String| Error::format(path, reason);
    // `SafeTensors` does not expose `__metadata__`; `read_metadata` does.
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let mut metadata: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();

    let op_name = metadata
        .remove("op")
        .ok_or_else(|| bad("no `op` in the metadata".into()))?;
    // Accept `"matmul"` (JSON string) as well as the plain name.
    let op: OpKind = text_value(&op_name).parse().map_err(bad)?;
    let params = parse_params(op, &mut metadata).map_err(bad)?;

    let mut inputs = BTreeMap::new();
    let mut expected = BTreeMap::new();
    for (name, view) in file.iter() {
        let Some(dtype) = DType::from_safetensors(view.dtype()) else {
            if is_expected_name(name) && !is_known_expected(name) {
                continue; // a tolerated extra radiant cannot represent
            }
            return Err(bad(format!(
                "tensor `{name}` has dtype {}, which radiant does not use",
                view.dtype()
            )));
        };
        let tensor = HostTensor::from_bytes(dtype, view.shape(), view.data().to_vec())
            .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        if is_expected_name(name) {
            expected.insert(name.to_string(), tensor);
        } else {
            inputs.insert(name.to_string(), tensor);
        }
    }
    Ok(Parsed {
        params,
        inputs,
        expected,
        extra_metadata: metadata,
    })
}

/// The expected outputs radiant checks; any other `expected_*` is an extra.
pub(super) fn is_known_expected(name: &str) -> bool {
    matches!(name, "expected" | "expected_residual" | "expected_lse")
}

/// Takes `op`'s parameter keys out of `metadata` and parses them.
fn parse_params(
    op: OpKind,
    metadata: &mut BTreeMap<String, String>,
) -> std::result::Result<CaseParams, String> {
    let mut take = |key: &str| metadata.remove(key).map(|value| (key.to_string(), value));
    Ok(match op {
        OpKind::Matmul => {
            let mut params = MatmulParams::default();
            if let Some((key, value)) = take("b_layout") {
                params.b_layout = BLayout::parse(text_value(&value))
                    .ok_or_else(|| bad_value(&key, &value, "kn or nk"))?;
            }
            CaseParams::Matmul(params)
        }
        OpKind::RmsNorm | OpKind::FusedAddRmsNorm => {
            let mut params = RmsNormParams::default();
            if let Some((key, value)) = take("eps") {
                params.eps = number(&key, &value)?;
            }
            if let Some((key, value)) = take("weight_offset") {
                params.weight_offset = number(&key, &value)?;
            }
            if op == OpKind::RmsNorm {
                CaseParams::RmsNorm(params)
            } else {
                CaseParams::FusedAddRmsNorm(params)
            }
        }
        OpKind::Attention | OpKind::PagedAttention => {
            let mut params = AttentionParams::default();
            if let Some((key, value)) = take("causal") {
                params.causal = match json(&key, &value)? {
                    Value::Bool(b) => b,
                    _ => return Err(bad_value(&key, &value, "true or false")),
                };
            }
            if let Some((key, value)) = take("softmax_scale") {
                params.softmax_scale = match json(&key, &value)? {
                    Value::Null => None,
                    _ => Some(number(&key, &value)?),
                };
            }
            for (key, slot) in [
                ("window_left", &mut params.window_left),
                ("window_right", &mut params.window_right),
            ] {
                if let Some((key, value)) = take(key) {
                    let wanted = "an integer (-1 or null = unbounded)";
                    *slot = match json(&key, &value)? {
                        Value::Null => -1,
                        Value::Number(n) => {
                            n.as_i64().ok_or_else(|| bad_value(&key, &value, wanted))?
                        }
                        _ => return Err(bad_value(&key, &value, wanted)),
                    };
                }
            }
            if let Some((key, value)) = take("softcap") {
                params.softcap = match json(&key, &value)? {
                    Value::Null => 0.0,
                    _ => number(&key, &value)?,
                };
            }
            if op == OpKind::Attention {
                CaseParams::Attention(params)
            } else {
                CaseParams::PagedAttention(params)
            }
        }
        OpKind::GptqMatmul => {
            let bits = match take("bits") {
                Some((key, value)) => {
                    let bits = integer(&key, &value, "4 or 8")?;
                    u32::try_from(bits).map_err(|_| bad_value(&key, &value, "4 or 8"))?
                }
                None => return Err(required("bits", "4 or 8")),
            };
            let group_size = match take("group_size") {
                Some((key, value)) => group_size(&key, &value)?,
                None => return Err(required("group_size", "-1 or a positive integer")),
            };
            let sym = match take("sym") {
                Some((key, value)) => match json(&key, &value)? {
                    Value::Bool(b) => Some(b),
                    Value::Null => None,
                    _ => return Err(bad_value(&key, &value, "true, false or null")),
                },
                None => None,
            };
            let wanted = "gptq (v1 zeros) or gptq_v2";
            let mut zero_format = None;
            for key in ["format", "checkpoint_format"] {
                if let Some((key, value)) = take(key) {
                    let format = ZeroFormat::parse(text_value(&value))
                        .ok_or_else(|| bad_value(&key, &value, wanted))?;
                    if zero_format.is_some_and(|f| f != format) {
                        return Err(format!(
                            "metadata `format` and `checkpoint_format` disagree ({} vs {value})",
                            zero_format.map_or("", ZeroFormat::name)
                        ));
                    }
                    zero_format = Some(format);
                }
            }
            CaseParams::GptqMatmul(GptqCaseParams {
                bits,
                group_size,
                sym,
                zero_format: zero_format.unwrap_or_default(),
            })
        }
        OpKind::AwqMatmul => {
            if let Some((key, value)) = take("bits")
                && integer(&key, &value, "4")? != 4
            {
                return Err(bad_value(&key, &value, "4 (AWQ is 4-bit)"));
            }
            let group_size = match take("group_size") {
                Some((key, value)) => group_size(&key, &value)?,
                None => return Err(required("group_size", "-1 or a positive integer")),
            };
            CaseParams::AwqMatmul(AwqCaseParams { group_size })
        }
        OpKind::Nvfp4Matmul => CaseParams::Nvfp4Matmul,
    })
}

fn required(key: &str, wanted: &str) -> String {
    format!("metadata `{key}` is required ({wanted})")
}

fn integer(key: &str, value: &str, wanted: &str) -> std::result::Result<i64, String> {
    match json(key, text_value(value))? {
        Value::Number(n) => n.as_i64().ok_or_else(|| bad_value(key, value, wanted)),
        _ => Err(bad_value(key, value, wanted)),
    }
}

fn group_size(key: &str, value: &str) -> std::result::Result<GroupSize, String> {
    let wanted = "-1 or a positive integer";
    GroupSize::from_config(integer(key, value, wanted)?)
        .ok_or_else(|| bad_value(key, value, wanted))
}

/// A plain-text value, unquoting a JSON string if it is one.
fn text_value(value: &str) -> &str {
    let trimmed = value.trim();
    trimmed
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(trimmed)
}

fn json(key: &str, value: &str) -> std::result::Result<Value, String> {
    serde_json::from_str(value).map_err(|_| bad_value(key, value, "a JSON value"))
}

fn number(key: &str, value: &str) -> std::result::Result<f64, String> {
    match json(key, value)? {
        Value::Number(n) => n.as_f64().ok_or_else(|| bad_value(key, value, "a number")),
        _ => Err(bad_value(key, value, "a number")),
    }
}

fn bad_value(key: &str, value: &str, wanted: &str) -> String {
    format!("metadata `{key}` = `{value}`: expected {wanted}")
}

/// The metadata entries that spell out `params`.
fn params_metadata(params: &CaseParams) -> Vec<(String, String)> {
    // serde_json spells f64 the shortest way that reads back exactly.
    let num = |v: f64| serde_json::to_string(&v).unwrap_or_else(|_| "null".into());
    let entries: Vec<(&str, String)> = match params {
        CaseParams::Matmul(p) => vec![("b_layout", p.b_layout.name().to_string())],
        CaseParams::RmsNorm(p) | CaseParams::FusedAddRmsNorm(p) => {
            vec![("eps", num(p.eps)), ("weight_offset", num(p.weight_offset))]
        }
        CaseParams::Attention(p) | CaseParams::PagedAttention(p) => vec![
            ("causal", p.causal.to_string()),
            ("softmax_scale", p.softmax_scale.map_or("null".into(), num)),
            ("window_left", p.window_left.to_string()),
            ("window_right", p.window_right.to_string()),
            ("softcap", num(p.softcap)),
        ],
        CaseParams::GptqMatmul(p) => vec![
            ("bits", p.bits.to_string()),
            ("group_size", p.group_size.to_config().to_string()),
            ("sym", p.sym.map_or("null".into(), |b| b.to_string())),
            ("format", p.zero_format.name().to_string()),
        ],
        CaseParams::AwqMatmul(p) => vec![("group_size", p.group_size.to_config().to_string())],
        CaseParams::Nvfp4Matmul => vec![],
    };
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Serializes a case: op, every parameter, the extra metadata, all tensors.
///
/// The header is written here rather than by `safetensors::serialize`,
/// whose metadata is a `HashMap`: its random order would make every save of
/// the same case a different file. Tensors follow safetensors' own order
/// (dtype descending, then name) so each stays aligned.
pub(super) fn write(case: &Case) -> Result<Vec<u8>> {
    let mut metadata: BTreeMap<String, String> = case.extra_metadata().clone();
    metadata.extend(params_metadata(case.params()));
    metadata.insert("op".into(), case.op().name().into());

    let mut tensors: Vec<(&String, &HostTensor)> = case
        .inputs()
        .iter()
        .chain(case.expected_outputs())
        .collect();
    tensors.sort_by(|(l_name, l), (r_name, r)| {
        let (l_dtype, r_dtype) = (l.dtype().to_safetensors(), r.dtype().to_safetensors());
        r_dtype.cmp(&l_dtype).then(l_name.cmp(r_name))
    });

    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut offset = 0usize;
    for (name, tensor) in &tensors {
        let end = offset + tensor.bytes().len();
        let info = serde_json::json!({
            "dtype": tensor.dtype().to_safetensors().to_string(),
            "shape": tensor.shape(),
            "data_offsets": [offset, end],
        });
        header.insert(name.to_string(), info);
        offset = end;
    }
    let mut header = serde_json::to_vec(&header)
        .map_err(|e| Error::format(case.name(), format!("cannot serialize: {e}")))?;
    header.resize(header.len().next_multiple_of(8), b' ');

    let mut bytes = Vec::with_capacity(8 + header.len() + offset);
    bytes.extend((header.len() as u64).to_le_bytes());
    bytes.extend(header);
    for (_, tensor) in &tensors {
        bytes.extend(tensor.bytes());
    }
    Ok(bytes)
}
