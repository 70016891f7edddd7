"""Shared helpers for the golden-vector generators (make_core_cases.py, make_quant_cases.py).

A case is one safetensors file; see DESIGN.md "The case file".  Metadata values
are strings in JSON spelling (numbers, true/false, null) or plain text for names.
"""

import json
import os

import numpy as np
import torch
from safetensors import safe_open
import struct

from safetensors.torch import save as st_save

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def meta_value(v):
    """Scalar parameter -> metadata string (JSON spelling; plain text for names)."""
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, type(None))):
        return json.dumps(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        s = json.dumps(float(v))  # shortest round-trip repr, e.g. 0.125, 1e-06
        return s
    raise TypeError(f"unsupported metadata value {v!r}")


def _f64_to_f32_round_to_odd(x):
    """f64 -> f32 with round-to-odd.  Rounding this to a format with >= 2 fewer
    significand bits (f16, bf16) gives the correctly rounded result, i.e. a
    single rounding from the f64 value (no double-rounding error)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        f = x.astype(np.float32)  # round to nearest even
    # step toward zero where RNE rounded away from zero -> truncation
    away = np.abs(f.astype(np.float64)) > np.abs(x)
    f = np.where(away, np.nextafter(f, np.float32(0)), f).astype(np.float32)
    inexact = f.astype(np.float64) != x
    bits = f.view(np.uint32).copy()
    bits[inexact] |= np.uint32(1)
    return bits.view(np.float32)


def round_once(t64, dtype):
    """Round a float64 tensor ONCE (correctly, nearest-even) to `dtype`."""
    assert t64.dtype == torch.float64
    x = t64.detach().cpu().numpy()
    if dtype == torch.float64:
        return t64.clone()
    if dtype == torch.float32:
        return torch.from_numpy(x.astype(np.float32))
    if dtype in (torch.float16, torch.bfloat16):
        f = torch.from_numpy(_f64_to_f32_round_to_odd(x))
        return f.to(dtype)  # f32 -> f16/bf16 is a single RNE rounding in torch
    raise ValueError(dtype)


def randn(gen, shape, dtype, scale=1.0):
    """Random normal generated in f32, stored (rounded) in the storage dtype."""
    return (torch.randn(*shape, generator=gen, dtype=torch.float32) * scale).to(dtype)


def dtype_name(dt):
    return {
        torch.float32: "f32",
        torch.float16: "f16",
        torch.bfloat16: "bf16",
        torch.int32: "i32",
        torch.uint8: "u8",
        torch.float8_e4m3fn: "f8e4m3",
    }.get(dt, str(dt))


def write_case(path, op, tensors, params, source, description):
    meta = {"op": op}
    for k, v in params.items():
        meta[k] = meta_value(v)
    meta["source"] = source
    meta["description"] = description
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(deterministic_bytes(st_save(tensors, metadata=meta)))
    verify_case(path, tensors, meta)


def deterministic_bytes(blob):
    """safetensors writes the header from a hash map, so key order (and the file's
    bytes) change from run to run.  Re-emit the same header with sorted keys so
    regenerating the cases gives identical files; the data section is untouched."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # keep the data section 8-byte aligned
    return struct.pack("<Q", len(h)) + h + data


def verify_case(path, tensors, meta):
    """Read the file back and check it holds exactly what was meant."""
    with safe_open(path, framework="pt") as f:
        got_meta = f.metadata()
        assert got_meta == meta, (got_meta, meta)
        assert set(f.keys()) == set(tensors), (sorted(f.keys()), sorted(tensors))
        for k in f.keys():
            t = f.get_tensor(k)
            ref = tensors[k]
            assert t.dtype == ref.dtype and t.shape == ref.shape, (k, t.dtype, t.shape)
            # bit-exact comparison of the stored bytes
            assert torch.equal(t.reshape(-1).view(torch.uint8), ref.reshape(-1).view(torch.uint8)), k


def summarize(paths):
    total = 0
    lines = []
    for p in sorted(paths):
        size = os.path.getsize(p)
        total += size
        with safe_open(p, framework="pt") as f:
            m = f.metadata()
            parts = []
            for k in f.keys():
                sl = f.get_slice(k)
                parts.append(f"{k}:{sl.get_dtype()}{list(sl.get_shape())}")
        lines.append(f"{os.path.basename(p):48s} {m['op']:20s} {size:7d} B  " + " ".join(parts))
    print("\n".join(lines))
    print(f"{len(paths)} files, {total} bytes ({total / 1024:.1f} KiB)")
    return total
