#!/usr/bin/env python3
"""Writes the CPU results table of issue #4 (Markdown, on stdout) from what
scripts/cpu-bench-table.sh collected in its work directory:

  criterion-<N>t/<group>/<id>/new/{benchmark,estimates}.json
      criterion's results of the run with RAYON_NUM_THREADS=N
  radiant-bench-<N>t.json
      `radiant bench --threads N --json`: this CPU's FMA peak and copy / read
      bandwidth measured on N threads (host_roofline), plus paged decode
  radiant-info.txt, lscpu.txt
      the machine (model, cores, the SIMD level radiant dispatches to)

Python 3 standard library only. Times are criterion's median point
estimates (per launch); rates divide the bench's declared throughput (FLOPs
as "elements", bytes) by that time.

Benchmark ids are `<group>/<backend or peer>/<dtype>/<shape>` (see
benches/common/mod.rs), e.g. `matmul/faer/f32/1x4096x4096 nk`. The
quantized GEMV bench (benches/quant_matmul.rs) is read when its results are
present; otherwise its table says "not measured".
"""

import argparse
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone


# ---------------------------------------------------------------------------
# Loading


def load_criterion(root):
    """{(group, function, dtype, shape): result} for every benchmark under
    `root` (a CRITERION_HOME)."""
    results = {}
    if not os.path.isdir(root):
        return results
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        try:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                bench = json.load(f)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
        except (OSError, ValueError) as e:
            print(f"warning: skipping {dirpath}: {e}", file=sys.stderr)
            continue
        value = bench.get("value_str") or ""
        dtype, _, shape = value.partition("/")
        throughput = bench.get("throughput") or {}
        flops = bytes_ = None
        if "ElementsAndBytes" in throughput:
            flops = throughput["ElementsAndBytes"]["elements"]
            bytes_ = throughput["ElementsAndBytes"]["bytes"]
        elif "Bytes" in throughput:
            bytes_ = throughput["Bytes"]
        elif "BytesDecimal" in throughput:
            bytes_ = throughput["BytesDecimal"]
        elif "Elements" in throughput:
            flops = throughput["Elements"]
        key = (bench["group_id"], bench.get("function_id") or "", dtype, shape)
        results[key] = {
            "id": bench.get("full_id", "/".join(key)),
            "seconds": est["median"]["point_estimate"] * 1e-9,
            "flops": flops,
            "bytes": bytes_,
        }
    return results


def load_roofline(path):
    """(FMA GFLOP/s, copy GB/s, read GB/s) on the run's thread count, from
    a `radiant bench --json` file, or None."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    host = doc.get("host_roofline") or {}
    m = host.get("all_threads")
    if not m:
        return None
    return {
        "threads": m["threads"],
        "fma": m["fma_gflop_per_s"],
        "copy": m["copy_gb_per_s"],
        "read": m["read_gb_per_s"],
        "kernel": host.get("fma_kernel", "?"),
        "buffer_mib": host.get("buffer_bytes", 0) >> 20,
        "commit": doc.get("git_commit"),
        "dirty": doc.get("git_dirty"),
        "date": doc.get("date"),
        "cpu": (doc.get("machine") or {}).get("cpu"),
    }


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def machine_lines(work, roof):
    lscpu = read_text(os.path.join(work, "lscpu.txt"))
    info = read_text(os.path.join(work, "radiant-info.txt"))

    def field(name):
        m = re.search(rf"^{re.escape(name)}:\s*(.+)$", lscpu, re.M)
        return m.group(1).strip() if m else "?"

    simd = "?"
    block = re.search(r"^cpu:.*?(?=^\S|\Z)", info, re.M | re.S)
    if block:
        m = re.search(r"simd:\s*([^,\n]+)", block.group(0))
        if m:
            simd = m.group(1).strip()
    model = field("Model name")
    if model == "?" and roof:
        model = roof.get("cpu") or "?"
    lines = [
        f"- CPU: {model} ({field('Vendor ID')}, family {field('CPU family')} model "
        f"{field('Model')}); {field('CPU(s)')} logical CPUs, "
        f"{field('Thread(s) per core')} thread(s) per core; "
        f"L2 {field('L2 cache')}, L3 {field('L3 cache')}; hypervisor: "
        f"{field('Hypervisor vendor')}",
        f"- radiant `cpu` SIMD level (`radiant info`): {simd}",
    ]
    try:
        rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rustc = "?"
    lines.append(f"- Toolchain: {rustc or '?'}")
    return lines


# ---------------------------------------------------------------------------
# Formatting helpers

TH = None  # thread counts, set in main


def fmt(x, digits=1):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def fmt_time(s):
    if s is None:
        return "—"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def verdict(ratio, target):
    if ratio is None:
        return "not measured"
    if ratio >= target:
        return "MET"
    return f"MISSED by {shortfall(ratio, target)}"


def shortfall(ratio, target):
    """How far `ratio` is below `target`, relative to the target."""
    short = 100 * (1 - ratio / target)
    return f"{short:.1f}%" if short < 1 else f"{short:.0f}%"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def gflops(r):
    if r is None or not r["flops"] or r["seconds"] <= 0:
        return None
    return r["flops"] / r["seconds"] / 1e9


def gbps(r):
    if r is None or not r["bytes"] or r["seconds"] <= 0:
        return None
    return r["bytes"] / r["seconds"] / 1e9


def shape_key(shape):
    """Numbers of a shape label, for a natural sort (kn before nk)."""
    nums = [int(n) for n in re.findall(r"\d+", shape)]
    return (" nk" in shape, nums)


class Misses:
    """Targets missed, collected for the summary."""

    def __init__(self):
        self.items = []

    def check(self, what, ratio, target, threads):
        if ratio is not None and ratio < target:
            self.items.append(
                f"{what}, {threads} thread(s): {ratio:.2f}× vs ≥ {target:g}× "
                f"(short by {shortfall(ratio, target)})"
            )


# ---------------------------------------------------------------------------
# Tables


def matmul_vs_peers(res, misses):
    shapes = sorted(
        {k[3] for t in TH for k in res[t] if k[0] == "matmul" and k[1] == "cpu" and k[2] == "f32"},
        key=shape_key,
    )
    rows = []
    for shape in shapes:
        row = [f"`{shape}`"]
        verdicts = []
        for t in TH:
            ours = gflops(res[t].get(("matmul", "cpu", "f32", shape)))
            peers = {
                p: gflops(res[t].get(("matmul", p, "f32", shape))) for p in ("gemm", "faer")
            }
            best = max(((v, p) for p, v in peers.items() if v is not None), default=(None, None))
            ratio = ours / best[0] if ours and best[0] else None
            row += [
                fmt(ours),
                fmt(peers["gemm"]),
                fmt(peers["faer"]),
                f"{ratio:.2f}×" if ratio else "—",
            ]
            verdicts.append(verdict(ratio, 1.0))
            misses.check(f"f32 matmul `{shape}` vs the faster peer ({best[1]})", ratio, 1.0, t)
        rows.append(row + verdicts)
    header = ["shape (M×N×K, B layout)"]
    for t in TH:
        header += [f"radiant {t}T", f"gemm {t}T", f"faer {t}T", f"ratio {t}T"]
    header += [f"{t}T ≥ 1.0×" for t in TH]
    return (
        "### f32 matmul against the `gemm` crate and faer (GFLOP/s)\n\n"
        "Target: radiant `cpu` ≥ 1.0× the faster of the two peers, same shape, same run. "
        "`kn`: B is `[K,N]`; `nk`: B is weights `[N,K]` (y = x·Wᵀ, the LLM linear layer). "
        "The peers run on the same rayon pool (`Parallelism::Rayon(0)`, `Par::rayon(0)`).\n\n"
        + table(header, rows)
    )


def matmul_half(res, misses):
    shapes = sorted(
        {k[3] for t in TH for k in res[t] if k[0] == "matmul" and k[1] == "cpu"}, key=shape_key
    )
    rows = []
    for shape in shapes:
        for dtype in ("f16", "bf16"):
            row = [f"`{shape}`", dtype]
            verdicts = []
            for t in TH:
                half = gflops(res[t].get(("matmul", "cpu", dtype, shape)))
                f32 = gflops(res[t].get(("matmul", "cpu", "f32", shape)))
                ratio = half / f32 if half and f32 else None
                row += [fmt(half), fmt(f32), f"{ratio:.2f}×" if ratio else "—"]
                verdicts.append(verdict(ratio, 0.8))
                misses.check(f"{dtype} matmul `{shape}` vs radiant f32", ratio, 0.8, t)
            rows.append(row + verdicts)
    header = ["shape", "dtype"]
    for t in TH:
        header += [f"16-bit {t}T", f"f32 {t}T", f"ratio {t}T"]
    header += [f"{t}T ≥ 0.8×" for t in TH]
    return (
        "### f16 / bf16 matmul against radiant's own f32 (GFLOP/s)\n\n"
        "Target: ≥ 0.8× radiant `cpu` f32 on the same shape (16-bit storage, f32 accumulation).\n\n"
        + table(header, rows)
    )


def rms_norm(res, misses):
    shapes = sorted(
        {k[3] for t in TH for k in res[t] if k[0] == "rms_norm" and k[1] == "cpu" and k[2] == "f32"},
        key=shape_key,
    )
    rows = []
    for shape in shapes:
        row = [f"`{shape}`"]
        verdicts = []
        for t in TH:
            ours = res[t].get(("rms_norm", "cpu", "f32", shape))
            copy = res[t].get(("rms_norm", "copy", "f32", shape))
            a, b = gbps(ours), gbps(copy)
            ratio = a / b if a and b else None
            row += [fmt(a), fmt(b), f"{ratio:.2f}×" if ratio else "—"]
            verdicts.append(verdict(ratio, 0.9))
            misses.check(f"rms_norm f32 `{shape}` vs a plain copy", ratio, 0.9, t)
        rows.append(row + verdicts)
    header = ["shape (rows×hidden)"]
    for t in TH:
        header += [f"rms_norm {t}T", f"copy {t}T", f"ratio {t}T"]
    header += [f"{t}T ≥ 0.9×" for t in TH]
    return (
        "### rms_norm f32 against a plain copy of the same bytes (GB/s)\n\n"
        "Target: ≥ 0.9× the bandwidth of `parallel_copy` of x's bytes into another buffer, "
        "measured in the same criterion group (bytes read + written for both; the norm also "
        "reads its weight row).\n\n" + table(header, rows)
    )


QUANT_ORDER = ("gptq", "awq", "nvfp4")


def quant_format(function, value):
    """(format label, shape label) of a quant_gemv benchmark: the function
    id names the format and, after a slash, the activation dtype
    (`gptq_int4_g128/x_bf16`, `awq_int4_g128/x_f32`, `nvfp4/x_bf16`; the
    baseline is `bf16_matmul_nk`), the value the shape (`n4096_k4096`)."""
    name = function.lower()
    for known in QUANT_ORDER + ("bf16",):
        if name.startswith(known):
            name = known
            break
    act = re.search(r"x_(f32|f16|bf16)", f"{function}/{value}")
    if act and name != "bf16":
        name = f"{name}, x {act.group(1)}"
    m = re.search(r"n(\d+)_k(\d+)", value)
    shape = f"N×K = {m.group(1)}×{m.group(2)}" if m else value
    return name, shape


def quant_rank(label):
    base = label.split(",")[0]
    return (QUANT_ORDER.index(base) if base in QUANT_ORDER else len(QUANT_ORDER), label)


def quant(res, rooflines, misses):
    entries = {}
    for t in TH:
        for (group, function, dtype, shape), r in res[t].items():
            if not group.startswith("quant"):
                continue
            value = f"{dtype}/{shape}" if shape else dtype
            fmt_name, label = quant_format(function, value)
            entries.setdefault((label, fmt_name), {})[t] = (r, function, dtype, shape)
    title = (
        "### Quantized GEMV (M = 1): GPTQ / AWQ int4 and NVFP4 against bf16 weights\n\n"
        "Target: ≥ 3× faster than radiant's bf16-weight GEMV (`matmul`, weights `[N,K]`) of the "
        "same shape. GB/s: the weight's stored bytes (packed codes, scales, zeros, g_idx; N·K·2 "
        "for bf16) per second, as benches/quant_matmul.rs declares them; % copy: against this "
        "CPU's copy bandwidth on the same thread count (a weight that fits in the last-level "
        "cache, re-read launch after launch, can exceed it). `x f32` / `x bf16`: the "
        "activation dtype; the baseline's activations are bf16.\n\n"
    )
    if not entries:
        return title + "not measured (benches/quant_matmul.rs had no results in this run)."
    shapes = sorted({s for s, _ in entries}, key=shape_key)
    formats = sorted({f for _, f in entries} - {"bf16"}, key=quant_rank) + ["bf16"]
    rows = []
    for shape in shapes:
        base = entries.get((shape, "bf16"), {})
        for f in formats:
            e = entries.get((shape, f))
            if not e:
                continue
            row = [f"`{shape}`", f]
            verdicts = []
            for t in TH:
                r = e.get(t, (None,))[0]
                b = base.get(t, (None,))[0]
                speedup = b["seconds"] / r["seconds"] if r and b else None
                bw = gbps(r)
                copy = rooflines.get(t, {}) and rooflines[t]["copy"]
                row += [
                    fmt_time(r["seconds"]) if r else "—",
                    fmt_time(b["seconds"]) if b else "—",
                    f"{speedup:.2f}×" if speedup else "—",
                    fmt(bw),
                    f"{100 * bw / copy:.0f}%" if bw and copy else "—",
                ]
                if f == "bf16":
                    verdicts.append("(baseline)")
                else:
                    verdicts.append(verdict(speedup, 3.0))
                    misses.check(f"{f} GEMV `{shape}` vs bf16 weights", speedup, 3.0, t)
            rows.append(row + verdicts)
    header = ["shape", "format"]
    for t in TH:
        header += [f"time {t}T", f"bf16 {t}T", f"speedup {t}T", f"GB/s {t}T", f"% copy {t}T"]
    header += [f"{t}T ≥ 3×" for t in TH]
    ids = sorted({v[0]["id"] for e in entries.values() for v in e.values()})
    return (
        title
        + table(header, rows)
        + "\n\nBenchmarks read: "
        + ", ".join(f"`{i}`" for i in ids[:12])
        + (" …" if len(ids) > 12 else "")
    )


def attention(res, rooflines, misses):
    keys = sorted(
        {k[2:] for t in TH for k in res[t] if k[0] == "attention" and k[1] == "cpu"},
        key=lambda k: (shape_key(k[1]), ["f32", "f16", "bf16"].index(k[0]) if k[0] in ("f32", "f16", "bf16") else 9),
    )
    seqlens = [int(m.group(1)) for _, s in keys for m in [re.search(r"s(\d+)", s)] if m]
    longest = max(seqlens, default=None)
    rows = []
    for dtype, shape in keys:
        m = re.search(r"s(\d+)", shape)
        targeted = m is not None and int(m.group(1)) == longest
        row = [f"`{shape}`", dtype]
        verdicts = []
        for t in TH:
            r = res[t].get(("attention", "cpu", dtype, shape))
            g = gflops(r)
            peak = rooflines.get(t, {}).get("fma") if rooflines.get(t) else None
            frac = g / peak if g and peak else None
            row += [fmt_time(r["seconds"]) if r else "—", fmt(g), f"{100 * frac:.0f}%" if frac else "—"]
            if targeted:
                if frac is None:
                    verdicts.append("not measured")
                elif frac >= 0.5:
                    verdicts.append("MET")
                else:
                    verdicts.append(f"MISSED: {100 * frac:.0f}% < 50%")
                    misses.items.append(
                        f"attention prefill {dtype} `{shape}`, {t} thread(s): {100 * frac:.0f}% "
                        f"of the FMA peak vs ≥ 50% (short by {shortfall(frac, 0.5)} of the target)"
                    )
            else:
                verdicts.append("(no target)")
        rows.append(row + verdicts)
    header = ["shape", "dtype"]
    for t in TH:
        header += [f"time {t}T", f"GFLOP/s {t}T", f"% peak {t}T"]
    header += [f"{t}T ≥ 50%" for t in TH]
    return (
        "### Attention prefill (causal): GFLOP/s and % of the measured FMA peak\n\n"
        f"Target: ≥ 50% of the FMA peak measured on the same thread count, at the longest "
        f"sequence (s{longest}). FLOPs count the visible (causal) pairs only: 4·Hq·D per pair.\n\n"
        + table(header, rows)
    )


def paged(res, rooflines):
    keys = sorted(
        {k[2:] for t in TH for k in res[t] if k[0] == "paged_attention" and k[1] == "cpu"},
        key=lambda k: (shape_key(k[1]), ["f32", "f16", "bf16"].index(k[0]) if k[0] in ("f32", "f16", "bf16") else 9),
    )
    rows = []
    for dtype, shape in keys:
        row = [f"`{shape}`", dtype]
        for t in TH:
            r = res[t].get(("paged_attention", "cpu", dtype, shape))
            roof = rooflines.get(t)
            g, b = gflops(r), gbps(r)
            bound_s = r["bytes"] / (roof["copy"] * 1e9) if r and roof and r["bytes"] else None
            row += [
                fmt_time(r["seconds"]) if r else "—",
                fmt(g),
                f"{100 * g / roof['fma']:.0f}%" if g and roof else "—",
                fmt(b),
                f"{100 * b / roof['copy']:.0f}%" if b and roof else "—",
                fmt_time(bound_s),
            ]
        rows.append(row)
    header = ["shape", "dtype"]
    for t in TH:
        header += [f"time {t}T", f"GFLOP/s {t}T", f"% FMA {t}T", f"GB/s {t}T", f"% copy BW {t}T", f"copy-BW bound {t}T"]
    return (
        "### Paged decode attention: GFLOP/s, % of FMA peak, GB/s, % of copy bandwidth\n\n"
        "One decode step (one query token per sequence) against a paged KV cache whose blocks "
        "are scattered. Decode is memory-bound: its floor is the K/V bytes read per call ÷ the "
        "copy bandwidth (\"copy-BW bound\"); % copy BW = achieved bytes/s ÷ copy bandwidth. "
        "(A read-only stream can beat a copy, which also writes: see the read column of the "
        "roofline above.) No pass/fail target.\n\n" + table(header, rows)
    )


# ---------------------------------------------------------------------------


def main():
    global TH
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", default="1 2")
    ap.add_argument("--command", default="scripts/cpu-bench-table.sh")
    ap.add_argument("--elapsed", type=int, default=None, help="seconds the run took")
    ap.add_argument("--notes", default=None, help="Markdown appended to the table")
    args = ap.parse_args()
    TH = [int(t) for t in args.threads.split()]

    res = {t: load_criterion(os.path.join(args.work, f"criterion-{t}t")) for t in TH}
    rooflines = {t: load_roofline(os.path.join(args.work, f"radiant-bench-{t}t.json")) for t in TH}
    any_roof = next((r for r in rooflines.values() if r), None)
    quick = any("64x64x64" in k[3] for t in TH for k in res[t])

    commit = (any_roof or {}).get("commit")
    if not commit:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
        except OSError:
            commit = "?"
    dirty = (any_roof or {}).get("dirty")
    date = (any_roof or {}).get("date") or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    out = [f"# radiant `cpu` results table ({date[:10]})", ""]
    if quick:
        out += [
            "> **QUICK smoke run**: tiny shapes and short timings, to check the harness. "
            "These numbers say nothing about the machine; do not commit them.",
            "",
        ]
    out += ["## Machine and run", ""]
    out += machine_lines(args.work, any_roof)
    out += [
        f"- Commit: `{commit}`" + (" (with uncommitted changes)" if dirty else ""),
        f"- Date (UTC): {date}",
        f"- Command: `{args.command}`",
        f"- Thread counts: {', '.join(f'RAYON_NUM_THREADS={t}' for t in TH)} (benches and "
        "peers share rayon's global pool)",
    ]
    if args.elapsed is not None:
        out.append(f"- Wall time of the whole run: {args.elapsed // 60} min {args.elapsed % 60} s")
    out += [
        "- Times: criterion's median per launch (`--warm-up-time`/`--measurement-time` in the "
        "command; 10 samples). Rates: FLOPs or bytes the bench declares ÷ that time.",
        "",
        "### Host roofline (measured by `radiant bench` in the same run)",
        "",
    ]
    roof_rows = []
    for t in TH:
        r = rooflines.get(t)
        if r:
            roof_rows.append([t, fmt(r["fma"]), fmt(r["copy"]), fmt(r["read"])])
        else:
            roof_rows.append([t, "—", "—", "—"])
    out.append(table(["threads", "FMA peak GFLOP/s (f32)", "copy GB/s (read+write)", "read GB/s"], roof_rows))
    if any_roof:
        out += [
            "",
            f"FMA peak: {12} independent FMA chains per thread ({any_roof['kernel']}); "
            f"bandwidth: {any_roof['buffer_mib']} MiB buffers, best of several passes.",
        ]
    out.append("")

    misses = Misses()
    out += ["## Results", ""]
    out += [matmul_vs_peers(res, misses), ""]
    out += [matmul_half(res, misses), ""]
    out += [rms_norm(res, misses), ""]
    out += [quant(res, rooflines, misses), ""]
    out += [attention(res, rooflines, misses), ""]
    out += [paged(res, rooflines), ""]

    out += ["## Targets missed", ""]
    if misses.items:
        out += [f"- {m}" for m in misses.items]
    else:
        out.append("None.")
    out.append("")
    if args.notes:
        out += ["## Notes", "", read_text(args.notes).strip(), ""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
