#!/usr/bin/env bash
# The CPU results table of issue #4: radiant's `cpu` backend against its
# peers and baselines, measured in one run on this machine, on one thread
# and on two (RAYON_NUM_THREADS=1, then =2), written as Markdown to
# benches/results/cpu-<UTC date>.md.
#
#   scripts/cpu-bench-table.sh            # the full table (~10-12 min on 2 vCPUs)
#   QUICK=1 scripts/cpu-bench-table.sh    # tiny shapes, short timings (~1-2 min):
#                                         # checks the harness, not the machine
#
# Environment:
#   QUICK=1        tiny shapes (RADIANT_BENCH_QUICK=1), short criterion times
#   THREADS="1 2"  the thread counts to measure (default "1 2")
#   OUT=path.md    the table (default benches/results/cpu-<date>.md; with
#                  QUICK=1, target/bench-table/cpu-quick-<date>.md, so a smoke
#                  test never lands in benches/results/)
#   WORK=dir       raw results: criterion JSON per thread count, radiant
#                  bench JSON (default target/bench-table)
#   NOTES=file.md  hand-written notes (why a target is missed) appended to
#                  the table
#   WARM_UP=s MEASURE=s   criterion warm-up / measurement seconds per bench
#
# Steps: build the radiant CLI and the benches once; per thread count, run
# `radiant bench` (it measures the FMA peak and the copy/read bandwidth of
# this CPU on that many threads, plus rms_norm and paged decode), then the
# criterion filters of each bench with CRITERION_HOME=$WORK/criterion-<N>t
# (so the thread counts never overwrite each other's JSON); finally
# scripts/bench_table.py reads all of it and writes the table.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
THREADS=${THREADS:-"1 2"}
DATE=$(date -u +%Y-%m-%d)
WORK=${WORK:-target/bench-table}
if [[ "$QUICK" != 0 ]]; then
    export RADIANT_BENCH_QUICK=1
    OUT=${OUT:-$WORK/cpu-quick-$DATE.md}
    WARM_UP=${WARM_UP:-0.1}
    MEASURE=${MEASURE:-0.3}
    QUICK_FLAG=(--quick)
else
    unset RADIANT_BENCH_QUICK
    OUT=${OUT:-benches/results/cpu-$DATE.md}
    WARM_UP=${WARM_UP:-1}
    MEASURE=${MEASURE:-3}
    QUICK_FLAG=()
fi
COMMAND="QUICK=$QUICK THREADS=\"$THREADS\" WARM_UP=$WARM_UP MEASURE=$MEASURE scripts/cpu-bench-table.sh"
START=$(date +%s)

log() { echo "[$(($(date +%s) - START))s] $*" >&2; }

# Criterion filters (regexes on `group/backend-or-peer/dtype/shape`): only
# the `cpu` backend and the peers/baselines a target compares it with. The
# `reference` oracle and GPU adapters (also llvmpipe) are left out.
declare -A FILTER=(
    [matmul]='^matmul/(cpu/|gemm/f32/|faer/f32/)'
    [rms_norm]='^rms_norm/(cpu|copy)/f32/'
    [attention]='^attention/cpu/'
    [paged_attention]='^paged_attention/cpu/'
    # benches/quant_matmul.rs: the quantized GEMVs and their bf16 baseline
    # (group quant_gemv; its shapes are always the full ones).
    [quant_matmul]='^quant_gemv/'
)
BENCHES=(matmul rms_norm attention paged_attention)
if [[ -f benches/quant_matmul.rs ]] && grep -q 'name = "quant_matmul"' Cargo.toml; then
    BENCHES+=(quant_matmul)
else
    log "note: benches/quant_matmul.rs is not registered in Cargo.toml; the quantized GEMV table will say 'not measured'"
fi

log "building the radiant CLI and the benches (${BENCHES[*]})"
cargo build --release --bin radiant
BENCH_ARGS=()
for b in "${BENCHES[@]}"; do BENCH_ARGS+=(--bench "$b"); done
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd) # absolute: CRITERION_HOME must not depend on the cwd
# The bench executables are run directly, not through `cargo bench`: a
# source file edited during the run cannot trigger a rebuild between the
# thread counts, so every figure comes from the same build.
cargo bench --no-run "${BENCH_ARGS[@]}" --message-format=json-render-diagnostics >"$WORK/build.jsonl"
declare -A EXE=()
while read -r name exe; do EXE[$name]=$exe; done < <(python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])
' <"$WORK/build.jsonl")
for b in "${BENCHES[@]}"; do
    [[ -n "${EXE[$b]:-}" ]] || { echo "error: no executable for bench $b in $WORK/build.jsonl" >&2; exit 1; }
done

# Only what this script writes there: never a whole directory a user named.
rm -rf "$WORK"/criterion-*t "$WORK"/radiant-bench-*t.* "$WORK"/*-*t.log
mkdir -p "$WORK" "$(dirname "$OUT")"
./target/release/radiant info >"$WORK/radiant-info.txt" 2>/dev/null || true
lscpu >"$WORK/lscpu.txt" 2>/dev/null || true

for t in $THREADS; do
    log "threads=$t: radiant bench (host roofline: FMA peak, copy and read bandwidth)"
    RAYON_NUM_THREADS=$t ./target/release/radiant bench "${QUICK_FLAG[@]}" --backend cpu \
        --op paged_attention --threads "$t" \
        --json "$WORK/radiant-bench-${t}t.json" >"$WORK/radiant-bench-${t}t.txt" 2>"$WORK/radiant-bench-${t}t.log"
    for b in "${BENCHES[@]}"; do
        log "threads=$t: bench $b '${FILTER[$b]}'"
        CRITERION_HOME="$WORK/criterion-${t}t" RAYON_NUM_THREADS=$t \
            "${EXE[$b]}" --bench "${FILTER[$b]}" \
            --warm-up-time "$WARM_UP" --measurement-time "$MEASURE" --noplot \
            >"$WORK/$b-${t}t.log" 2>&1 ||
            { log "bench $b failed (threads=$t); see $WORK/$b-${t}t.log"; exit 1; }
    done
done

log "writing $OUT"
python3 scripts/bench_table.py --work "$WORK" --threads "$THREADS" --command "$COMMAND" \
    --elapsed "$(($(date +%s) - START))" ${NOTES:+--notes "$NOTES"} >"$OUT"
log "done: $OUT"
