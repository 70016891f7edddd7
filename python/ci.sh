#!/usr/bin/env bash
# The Python wheel, end to end, as a user gets it: a fresh venv, maturin
# builds the abi3 wheel, pip installs it, pytest runs python/tests against the
# installed module. Called by .ci/run; exits non-zero on any failure,
# including "no tests collected" (pytest exit 5).
#
# torch is deliberately not installed: the CPU wheel is a ~200 MB+ download
# that would dominate this job for the handful of torch DLPack tests, which
# skip with a reason here (numpy covers DLPack both ways). Run them by
# installing the wheel into an environment that has torch.
#
# Env: CARGO_TARGET_DIR (default: target/python, reused between runs),
#      PYTHON (default: python3), RADIANT_PY_PROFILE (default: release),
#      RADIANT_PY_OPT_LEVEL (default: 1: the wheel built here only runs the
#      tests, and opt-level 1 roughly halves a cold build on 2 cores; set 3
#      to test exactly what `pip install ./python` ships).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
PROFILE="${RADIANT_PY_PROFILE:-release}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target/python}"
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${RADIANT_PY_OPT_LEVEL:-1}"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/radiant-py.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

start=$(date +%s)
echo "== python: venv in $TMP"
"$PYTHON" -m venv "$TMP/venv"
VPY="$TMP/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q maturin pytest numpy safetensors ml_dtypes

echo "== python: maturin build ($PROFILE, opt-level $CARGO_PROFILE_RELEASE_OPT_LEVEL, target $CARGO_TARGET_DIR)"
"$TMP/venv/bin/maturin" build --profile "$PROFILE" --locked \
    -m "$ROOT/python/Cargo.toml" -o "$TMP/wheels"

echo "== python: install the wheel"
"$VPY" -m pip install -q "$TMP"/wheels/radiant-*.whl

echo "== python: pytest"
cd "$TMP"   # import the installed wheel, never the source tree
set +e
"$VPY" -m pytest -q -rs "$ROOT/python/tests"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "python: pytest collected no tests" >&2
    exit 1
fi
echo "== python: done in $(( $(date +%s) - start ))s (pytest exit $rc)"
exit "$rc"
