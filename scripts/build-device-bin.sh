#!/usr/bin/env bash
# Builds, on a machine with a Rust toolchain (no GPU needed), everything
# scripts/gpu-check.sh runs on a GPU machine that has none, into the
# git-ignored device-bin/ with stable names:
#   device-bin/radiant        the CLI (release)
#   device-bin/conformance    tests/conformance (cargo test --release --no-run)
#   device-bin/cuda_kernels   tests/cuda_kernels.rs
#   device-bin/cuda_device    tests/cuda_device.rs
# Binaries are stripped of debug info and gzipped (device-bin/<name>.gz) to
# fit the device call's 64 MiB; gpu-check.sh unpacks them.
# With nvcc on PATH (pip install "nvidia-cuda-nvcc==13.0.*" ...; keep 13.0:
# the GPU machines run driver 580 / CUDA 13.0) the kernels are embedded as
# cubins + PTX; without it, as sources for NVRTC. Then, with the device tool:
#   run(command="bash scripts/gpu-check.sh", carry=["device-bin"])
set -euo pipefail
cd "$(dirname "$0")/.."

# nvcc from the PyPI wheels, when installed but not on PATH.
if ! command -v nvcc >/dev/null 2>&1 && [ -z "${CUDA_HOME:-}" ]; then
    wheel_bin=$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "bin"))' 2>/dev/null || true)
    if [ -n "$wheel_bin" ] && [ -x "$wheel_bin/nvcc" ]; then
        export PATH="$wheel_bin:$PATH"
    fi
fi
command -v nvcc >/dev/null 2>&1 && nvcc --version | tail -2 || echo "no nvcc: kernels embedded as sources (NVRTC at run time)"

mkdir -p device-bin
# The CLI and the test executables, located through cargo's JSON messages
# (so CARGO_TARGET_DIR is honoured).
{
    cargo build --release --bin radiant --message-format=json
    cargo test --release --no-run --test conformance --test cuda_kernels --test cuda_device \
        --message-format=json
} >device-bin/.build.json
python3 - <<'PY'
import json, shutil
wanted = {("bin", "radiant"), ("test", "conformance"), ("test", "cuda_kernels"), ("test", "cuda_device")}
found = set()
for line in open("device-bin/.build.json"):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    key = (msg["target"]["kind"][0], msg["target"]["name"])
    if key in wanted:
        shutil.copy(msg["executable"], f"device-bin/{key[1]}")
        found.add(key)
        print(f"device-bin/{key[1]} <- {msg['executable']}")
missing = wanted - found
if missing:
    raise SystemExit(f"not built: {sorted(missing)}")
PY
rm -f device-bin/.build.json
# Stripped and gzipped: each binary embeds ~8 MB of cubins/PTX, and the
# device call carries at most 64 MiB (working tree included).
for b in radiant conformance cuda_kernels cuda_device; do
    strip --strip-debug "device-bin/$b" 2>/dev/null || true
    gzip -9 -f "device-bin/$b"
done
ls -la device-bin
du -sh device-bin
