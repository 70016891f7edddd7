//! Quantized weight formats: GPTQ, AWQ and NVFP4 (layouts, pack / quantize,
//! dequantize, checkpoint loading). See shared/QUANT_FORMATS.md.

pub mod e4m3;
