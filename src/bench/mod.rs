//! `radiant bench`: every op on every available backend, as achieved
//! FLOP/s or bytes/s and as a percentage of the device's roofline.
//!
//! * [`cases`]: the shape list (LLM-sized; tiny ones for `--quick`),
//!   written once and shared with the criterion benches in `benches/`.
//! * [`roofline`]: the ceilings each backend is judged against. This
//!   machine's CPU is measured at start (peak f32 FMA rate with run-time
//!   SIMD dispatch, large-copy bandwidth, on one thread and on all); device
//!   backends will report their own.
//! * [`timing`]: warm-up, then batches of launches until ≥ 0.3 s and ≥ 3
//!   samples, median per launch.
//! * [`report`]: the table on stdout, `--json` and an `--svg` bar chart.
//!
//! Backends come from [`crate::devices`]: a new backend (cpu, wgpu, CUDA,
//! ROCm) appears here with no change to this module. An op is classified
//! compute- or memory-bound on each device by comparing its arithmetic
//! intensity (FLOPs/byte, from the op's validated problem) with the
//! device's balance (peak FLOP/s ÷ bandwidth); the table shows GFLOP/s for
//! the former, GB/s for the latter.
//!
//! Peers (the `gemm` crate that candle uses, and faer) are deliberately not
//! measured here: they would become dependencies of the library that every
//! user pays for. The criterion benches (`cargo bench`) measure them beside
//! radiant's backends on the same shapes, as dev-dependencies.
//!
//! The `reference` oracle is scalar f64 and very slow, and so are GPU
//! adapters emulated on the CPU (llvmpipe), so cases above a FLOP budget
//! ([`cases::SLOW_BACKEND_FLOP_BUDGET`], `--slow-budget-gflop`) are skipped
//! for them, with a note. Any other launch that turns out to take seconds
//! is timed once (see [`TimingPolicy::slow_launch_seconds`]).

pub mod cases;
pub mod report;
pub mod roofline;
pub mod timing;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::Backend;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::OpKind;

pub use cases::{BenchCase, PreparedCase, SLOW_BACKEND_FLOP_BUDGET, Shape, Suite, cases};
pub use report::{BenchRow, MachineInfo, Skipped};
pub use roofline::{Bound, HostMeasurement, HostRoofline, Roofline};
pub use timing::{Timing, TimingPolicy};

/// Arguments of `radiant bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Backends to measure: device names (reference, cpu, cuda:0, wgpu:1,
    /// ...), comma-separated or repeated, or `all` for every available one.
    #[arg(
        long,
        value_name = "NAME|all",
        value_delimiter = ',',
        default_value = "all"
    )]
    pub backend: Vec<String>,

    /// Only these ops (matmul, rms_norm, fused_add_rms_norm, attention,
    /// paged_attention); comma-separated or repeated. Default: all.
    #[arg(long, value_name = "OP", value_delimiter = ',')]
    pub op: Vec<OpKind>,

    /// Only these activation dtypes (f32, f16, bf16). Default: all three.
    #[arg(long, value_name = "DTYPE", value_delimiter = ',')]
    pub dtype: Vec<DType>,

    /// Tiny shapes and short timings: checks the harness in seconds.
    #[arg(long)]
    pub quick: bool,

    /// Write the results, rooflines and machine description as JSON.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Write a bar chart of % of roofline per op/shape/backend as SVG.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,

    /// Threads for host backends and the host roofline (default: rayon's,
    /// i.e. RAYON_NUM_THREADS or one per logical CPU).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Skip cases above this many GFLOP on slow backends: the scalar
    /// `reference` oracle and GPU adapters emulated on the CPU (llvmpipe).
    #[arg(long, value_name = "GFLOP", default_value_t = SLOW_BACKEND_FLOP_BUDGET / 1e9)]
    pub slow_budget_gflop: f64,
}

/// Runs the benchmark `args` describes: progress on stderr, the table on
/// stdout, and the `--json` / `--svg` files.
pub fn run(args: &BenchArgs) -> Result<()> {
    let Selection {
        backends,
        notes: unavailable,
    } = select_backends(&args.backend)?;
    let suite = if args.quick {
        Suite::Quick
    } else {
        Suite::Full
    };
    let selected: Vec<BenchCase> = cases(suite)
        .into_iter()
        .filter(|c| args.op.is_empty() || args.op.contains(&c.op()))
        .filter(|c| args.dtype.is_empty() || args.dtype.contains(&c.dtype))
        .collect();
    if selected.is_empty() {
        return Err(Error::invalid(
            "bench",
            "op",
            format!(
                "no bench case matches --op {:?} --dtype {:?}",
                args.op, args.dtype
            ),
        ));
    }
    if args.slow_budget_gflop.is_nan() || args.slow_budget_gflop < 0.0 {
        return Err(Error::invalid(
            "bench",
            "slow_budget_gflop",
            format!("must be >= 0, got {}", args.slow_budget_gflop),
        ));
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = args.threads {
        let limit = max_bench_threads();
        if threads == 0 || threads > limit {
            return Err(Error::invalid(
                "bench",
                "threads",
                format!(
                    "must be 1..={limit} (4x this machine's hardware threads: more only \
                     measures contention, and the roofline runs one loop per thread), got {threads}"
                ),
            ));
        }
        pool = pool.num_threads(threads);
    }
    let pool = pool
        .build()
        .map_err(|e| Error::invalid("bench", "threads", e.to_string()))?;
    for note in &unavailable {
        eprintln!("note: {note}");
    }
    // Host backends run on this pool; so do the roofline measurements.
    pool.install(|| run_on_pool(args, suite, &backends, &selected))
}

/// The most `--threads` a bench accepts: 4x the hardware threads.
fn max_bench_threads() -> usize {
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn run_on_pool(
    args: &BenchArgs,
    suite: Suite,
    backends: &[Arc<dyn Backend>],
    selected: &[BenchCase],
) -> Result<()> {
    let threads = rayon::current_num_threads();
    let machine = MachineInfo::collect(threads);
    let any_host = backends
        .iter()
        .any(|b| roofline::is_host_backend(b.as_ref()));
    let host = any_host.then(|| {
        eprintln!("measuring the host roofline ({threads} threads)...");
        match suite {
            Suite::Full => roofline::measure_host(roofline::COPY_BYTES, 5),
            Suite::Quick => roofline::measure_host(64 << 20, 2),
        }
    });
    let mut stdout = std::io::stdout().lock();
    let header = report::header(&machine, host.as_ref());
    write!(stdout, "{header}").map_err(|e| Error::io("stdout", e))?;
    stdout.flush().map_err(|e| Error::io("stdout", e))?;

    let backend_rooflines: Vec<(String, Option<Roofline>)> = backends
        .iter()
        .map(|b| {
            let roof = host
                .as_ref()
                .and_then(|host| roofline::roofline_for(b.as_ref(), host));
            (b.name().to_string(), roof)
        })
        .collect();
    let policy = match suite {
        Suite::Full => TimingPolicy::FULL,
        Suite::Quick => TimingPolicy::QUICK,
    };
    let budget = args.slow_budget_gflop * 1e9;
    let total = selected.len() * backends.len();
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut index = 0;
    for case in selected {
        for (backend, (_, roof)) in backends.iter().zip(&backend_rooflines) {
            index += 1;
            let progress = format!("[{index}/{total}] {} on {}", case.id(), backend.name());
            let mut skip = |reason: String| {
                eprintln!("{progress}: skipped: {reason}");
                skipped.push(Skipped {
                    case: case.id(),
                    backend: backend.name().to_string(),
                    reason,
                });
            };
            if let Some(reason) = case.skip_reason(backend.as_ref(), budget) {
                skip(reason);
                continue;
            }
            let measured = case.prepare(backend).and_then(|prepared| {
                Ok((
                    timing::measure(&policy, |n| prepared.run_batch(n))?,
                    prepared,
                ))
            });
            let (timing, prepared) = match measured {
                Ok(done) => done,
                Err(e) => {
                    skip(format!("failed: {e}"));
                    continue;
                }
            };
            let (flops, bytes) = (prepared.flops(), prepared.bytes());
            drop(prepared); // free the case's memory before the next one
            let bound = match roof {
                Some(roof) => roof.bound(flops, bytes),
                None => unknown_device_bound(flops, bytes),
            };
            let row = BenchRow {
                op: case.op(),
                shape: case.shape.to_string(),
                dtype: case.dtype,
                backend: backend.name().to_string(),
                timing,
                flops,
                bytes,
                bound,
                roofline_fraction: roof
                    .as_ref()
                    .map(|r| r.fraction(case.dtype, flops, bytes, timing.median_s)),
            };
            eprintln!(
                "{progress}: {} ({}{})",
                report::format_seconds(timing.median_s),
                row.rate_text(),
                row.roofline_fraction.map_or(String::new(), |f| format!(
                    ", {:.2}% of roofline",
                    100.0 * f
                ))
            );
            rows.push(row);
        }
    }

    let mut text = format!("\n{}", report::table(&rows));
    if !skipped.is_empty() {
        text.push_str(&format!("\nskipped {}:\n", skipped.len()));
        for s in &skipped {
            text.push_str(&format!("  {} on {}: {}\n", s.case, s.backend, s.reason));
        }
    }
    write!(stdout, "{text}").map_err(|e| Error::io("stdout", e))?;
    stdout.flush().map_err(|e| Error::io("stdout", e))?;

    if let Some(path) = &args.json {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        let doc = report::json(
            &machine,
            host.as_ref(),
            &backend_rooflines,
            &rows,
            &skipped,
            &command,
        );
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::format(path.display().to_string(), e.to_string()))?;
        write_file(path, &(text + "\n"))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        let title = format!(
            "radiant {} on {} ({} threads), {}",
            machine.radiant_version,
            machine.cpu,
            machine.threads,
            &machine.date[..10]
        );
        write_file(path, &report::svg(&rows, &title))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Without a device roofline, call an op memory-bound below 10 FLOPs per
/// byte (a typical CPU balance; GPUs sit higher, so this errs toward
/// reporting FLOP/s).
fn unknown_device_bound(flops: f64, bytes: f64) -> Bound {
    if bytes > 0.0 && flops / bytes < 10.0 {
        Bound::Memory
    } else {
        Bound::Compute
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path.display().to_string(), e))
}

/// The backends a run measures, and notes on the families that are
/// unavailable.
struct Selection {
    backends: Vec<Arc<dyn Backend>>,
    notes: Vec<String>,
}

/// The backends `names` selects (`all` = every available one, in discovery
/// order, which puts the slow oracle last), each once. A named backend that
/// is unavailable is an error; with `all`, each unavailable family is a
/// note.
fn select_backends(names: &[String]) -> Result<Selection> {
    let mut selection = Selection {
        backends: Vec::new(),
        notes: Vec::new(),
    };
    let add = |backend: Arc<dyn Backend>, backends: &mut Vec<Arc<dyn Backend>>| {
        if !backends.iter().any(|b| b.name() == backend.name()) {
            backends.push(backend);
        }
    };
    let names: Vec<&str> = if names.is_empty() {
        vec!["all"]
    } else {
        names.iter().map(|n| n.trim()).collect()
    };
    for name in names {
        if name == "all" {
            for entry in crate::devices() {
                match entry.status {
                    Ok(backend) => add(backend, &mut selection.backends),
                    Err(reason) => selection
                        .notes
                        .push(format!("{} is unavailable: {reason}", entry.name)),
                }
            }
        } else {
            add(crate::device(name)?, &mut selection.backends);
        }
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchArgs {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .unwrap()
            .bench
    }

    #[test]
    fn arguments_parse() {
        Cli::command().debug_assert();
        let args = parse(&["--op", "matmul,rms_norm", "--dtype", "bf16", "--quick"]);
        assert_eq!(args.op, vec![OpKind::Matmul, OpKind::RmsNorm]);
        assert_eq!(args.dtype, vec![DType::BF16]);
        assert_eq!(args.backend, vec!["all".to_string()]);
        assert!(args.quick);
        assert!(Cli::try_parse_from(["bench", "--op", "conv2d"]).is_err());
    }

    #[test]
    fn absurd_thread_counts_are_refused_before_any_work() {
        for threads in ["0", "1000000"] {
            let args = parse(&["--quick", "--backend", "reference", "--threads", threads]);
            let start = std::time::Instant::now();
            let error = run(&args).unwrap_err().to_string();
            assert!(error.contains("threads"), "{error}");
            assert!(start.elapsed().as_secs() < 5, "took {:?}", start.elapsed());
        }
    }

    #[test]
    fn quick_run_on_the_reference_writes_json_and_svg() {
        let dir = std::env::temp_dir().join(format!("radiant-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json_path = dir.join("bench.json");
        let svg_path = dir.join("bench.svg");
        let args = parse(&[
            "--quick",
            "--backend",
            "reference",
            "--op",
            "matmul,rms_norm,paged_attention",
            "--dtype",
            "f32,bf16",
            "--threads",
            "2",
            "--json",
            json_path.to_str().unwrap(),
            "--svg",
            svg_path.to_str().unwrap(),
        ]);
        run(&args).unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        let results = doc["results"].as_array().unwrap();
        // 3 matmul + 1 rms_norm + 2 paged shapes, in 2 dtypes.
        assert_eq!(results.len(), 12, "{doc:#}");
        for row in results {
            assert_eq!(row["backend"], "reference");
            assert!(row["median_s"].as_f64().unwrap() > 0.0);
            let percent = row["roofline_percent"].as_f64().unwrap();
            assert!(percent > 0.0 && percent < 100.0, "{row}");
        }
        let host = &doc["host_roofline"];
        for key in ["one_thread", "all_threads"] {
            for figure in ["fma_gflop_per_s", "copy_gb_per_s", "read_gb_per_s"] {
                assert!(host[key][figure].as_f64().unwrap() > 0.0, "{host}");
            }
        }
        assert!(host["ceiling"]["peak_gflop_per_s"].as_f64().unwrap() > 0.0);
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"bar\"").count(), 12);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(run(&parse(&["--quick", "--backend", "nosuch"])).is_err());
        assert!(run(&parse(&["--quick", "--op", "gptq_matmul"])).is_err());
    }
}
