#!/usr/bin/env bash
# Runs radiant's cargo-fuzz targets (fuzz/) for a bounded time each, starting
# from the committed seeds in fuzz/seeds/<target>; a failure leaves its input
# in fuzz/artifacts/<target>/ and exits non-zero.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   default: 60 s, every target
#
# Targets: differential (backends disagreeing on a valid problem: reference
# vs cpu, plus $RADIANT_FUZZ_BACKENDS), case_file (hostile case files),
# checkpoint (hostile safetensors checkpoints and configs). Needs the nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz`). For a long run:
#   scripts/fuzz.sh 3600 differential
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(differential case_file checkpoint)
fi


for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    echo "== fuzz $target for ${seconds}s ($(ls "$corpus" | wc -l) inputs in the corpus)"
    cargo +nightly fuzz run -O "$target" "$corpus" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>&1 |
        grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse)' | tail -25
done
