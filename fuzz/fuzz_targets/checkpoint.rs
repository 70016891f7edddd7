//! Hostile checkpoints and configs: safetensors bytes plus a config, split
//! at a fuzzed point, load to layers or typed errors — never a panic.
#![no_main]

use radiant::quant::{Checkpoint, QuantConfig};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    let (config, tensors) = data.split_at(split);
    let config = std::str::from_utf8(config)
        .ok()
        .and_then(|text| QuantConfig::from_json_str("fuzz", text).ok());
    let Ok(mut checkpoint) = Checkpoint::from_bytes(tensors.to_vec()) else {
        return;
    };
    if let Some(config) = config {
        checkpoint = checkpoint.with_config(config);
    }
    for prefix in ["", "model.layers.0.mlp.down_proj", "layer"] {
        let _ = checkpoint.load_linear(prefix);
    }
});
