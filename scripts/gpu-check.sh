#!/usr/bin/env bash
# CUDA device checks, on a GPU machine with NO Rust toolchain: runs the
# prebuilt binaries of device-bin/ (made by scripts/build-device-bin.sh and
# carried along: run(command="bash scripts/gpu-check.sh", carry=["device-bin"])).
#
# Steps (each with a time limit; the whole run stays under ~8 minutes, later
# steps are skipped when the budget is spent):
#   device       nvidia-smi, driver, glibc
#   info         radiant info (cuda:N listed, how kernels load)
#   cuda_kernels embedded PTX/cubins, NVRTC compile of every source
#   cuda_device  every kernel once vs the reference, typed errors, the
#                launch API through cubin / PTX JIT / NVRTC loading
#   conformance  the conformance suite for cuda:0 (RADIANT_REQUIRE_BACKENDS)
#   check        radiant check --backend cuda:0
#   replay       radiant replay --backend cuda:0 tests/golden/*/*.safetensors
#   memcheck     compute-sanitizer memcheck over a short run of every kernel
#   racecheck    compute-sanitizer racecheck over the same run
# Logs go to $OUT/<step>.log (at most 8 files come back from the device
# tool, so small steps share logs); a table is printed last. Exit status:
# the number of failed steps (0 = all passed).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-/tmp/radiant-gpu-check}
BIN=${BIN:-device-bin}
BUDGET=${BUDGET:-470}
mkdir -p "$OUT"
export RADIANT_REQUIRE_BACKENDS=cuda:0
export RADIANT_CUDA_CACHE=${RADIANT_CUDA_CACHE:-/tmp/radiant-cuda-cache}
export PROPTEST_CASES=${PROPTEST_CASES:-24}
export RUST_BACKTRACE=1

# libnvrtc for the NVRTC path: the toolkit's, or a pip wheel's.
for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    "$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null)"; do
    if [ -n "$dir" ] && ls "$dir"/libnvrtc.so* >/dev/null 2>&1; then
        export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        break
    fi
done
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)

START=$SECONDS
names=()
verdicts=()
times=()
# step NAME LIMIT LOG COMMAND...: runs COMMAND with a time limit, appending
# to $OUT/LOG.log.
step() {
    local name=$1 limit=$2 log=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START)))
    names+=("$name")
    if [ "$left" -le 5 ]; then
        verdicts+=("skipped (time budget spent)")
        times+=(0)
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0=$SECONDS
    {
        echo "==== $name: $*"
    } >>"$OUT/$log.log"
    timeout --kill-after=10 "$limit" "$@" >>"$OUT/$log.log" 2>&1
    local rc=$?
    times+=($((SECONDS - t0)))
    case $rc in
        0) verdicts+=("pass") ;;
        124 | 137) verdicts+=("FAIL (timeout ${limit}s)") ;;
        *) verdicts+=("FAIL (exit $rc)") ;;
    esac
    echo "==== $name: exit $rc after $((SECONDS - t0)) s" >>"$OUT/$log.log"
}

# device-bin holds gzipped binaries; unpack them next to the logs' tmp dir.
if [ -f "$BIN/radiant.gz" ]; then
    unpacked=/tmp/radiant-device-bin
    mkdir -p "$unpacked"
    for b in radiant conformance cuda_kernels cuda_device; do
        gzip -dc "$BIN/$b.gz" >"$unpacked/$b" && chmod +x "$unpacked/$b"
    done
    BIN=$unpacked
fi
for b in radiant conformance cuda_kernels cuda_device; do
    if [ ! -x "$BIN/$b" ]; then
        echo "missing $BIN/$b: run scripts/build-device-bin.sh where Rust is installed, and carry device-bin" >&2
        exit 1
    fi
done

step device 30 device bash -c 'ldd --version | head -1; echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"; nvidia-smi && nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv'
step info 40 device "$BIN/radiant" info
step cuda_kernels 90 tests "$BIN/cuda_kernels" --nocapture
step cuda_device 120 tests "$BIN/cuda_device" --nocapture --test-threads=1
step conformance 150 conformance "$BIN/conformance" cuda:: --test-threads=4
step check 90 cli "$BIN/radiant" check --backend cuda:0
step replay 40 cli bash -c "\"$BIN/radiant\" replay --backend cuda:0 tests/golden/*/*.safetensors"
if [ -n "$SANITIZER" ]; then
    # Quick mode: every kernel entry once (aligned views), no offset pass.
    step memcheck 120 sanitizer env RADIANT_CUDA_DEVICE_QUICK=1 "$SANITIZER" --tool memcheck \
        --error-exitcode 99 "$BIN/cuda_device" --test-threads=1 every_
    step racecheck 120 sanitizer env RADIANT_CUDA_DEVICE_QUICK=1 "$SANITIZER" --tool racecheck \
        --racecheck-report hazard --error-exitcode 99 "$BIN/cuda_device" --test-threads=1 every_
else
    names+=("memcheck" "racecheck")
    verdicts+=("FAIL (no compute-sanitizer)" "FAIL (no compute-sanitizer)")
    times+=(0 0)
fi

failed=0
for v in "${verdicts[@]}"; do
    [ "$v" = pass ] || failed=$((failed + 1))
done
{
    echo
    echo "radiant CUDA device checks ($(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)), $((SECONDS - START)) s, $failed failed"
    printf '%-13s %-30s %6s\n' step verdict seconds
    for i in "${!names[@]}"; do
        printf '%-13s %-30s %6s\n' "${names[$i]}" "${verdicts[$i]}" "${times[$i]}"
    done
    echo "logs: $OUT/{device,tests,conformance,cli,sanitizer}.log"
} | tee "$OUT/summary.txt"
exit "$failed"
