//! `radiant`: the command line of the library.
//!
//! * `radiant info`: devices, drivers, and what each backend supports.
//! * `radiant check`: every op on every backend against the reference.
//! * `radiant replay FILE...`: runs case files (see `radiant::case`).
//! * `radiant bench`: op timings and roofline percentages.
//!
//! Exit status: 0 when everything passed (unsupported cases are not
//! failures), 1 when a case failed or a case file is malformed, 2 on a usage
//! or setup error (printed as `error: ...`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use radiant::case::{self, Case, CaseReport, Verdict};
use radiant::{Backend, DType, Error, OpKind, OpQuery};

#[derive(Parser)]
#[command(
    name = "radiant",
    version,
    about = "LLM inference kernels on every accelerator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List devices, drivers and each backend's op x dtype support.
    Info,
    /// Run every op on every backend against the reference oracle.
    Check {
        /// A backend name (reference, cpu, cuda:0, ...) or `all`.
        #[arg(long, default_value = "all")]
        backend: String,
        /// Skip the LLM-sized problems.
        #[arg(long)]
        quick: bool,
    },
    /// Replay case files (safetensors) on backends and compare the outputs.
    Replay {
        /// Case files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A backend name (reference, cpu, cuda:0, ...) or `all`.
        #[arg(long, default_value = "all")]
        backend: String,
    },
    /// Time the ops on every backend and compare with the device roofline.
    Bench(radiant::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Info => info(),
        Command::Check { backend, quick } => check(backend, *quick),
        Command::Replay { files, backend } => replay(files, backend),
        Command::Bench(args) => radiant::bench::run(args).map(|()| true),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `all` = every available backend; otherwise the one named.
fn select_backends(name: &str) -> radiant::Result<Vec<Arc<dyn Backend>>> {
    if name != "all" {
        return Ok(vec![radiant::device(name)?]);
    }
    let available: Vec<_> = radiant::devices()
        .into_iter()
        .filter_map(|entry| entry.status.ok())
        .collect();
    if available.is_empty() {
        return Err(Error::Unavailable {
            backend: "all".into(),
            reason: "no backend is available".into(),
        });
    }
    Ok(available)
}

// ---------------------------------------------------------------------------
// info

fn info() -> radiant::Result<bool> {
    for entry in radiant::devices() {
        let backend = match entry.status {
            Ok(backend) => backend,
            Err(reason) => {
                println!("{}: unavailable: {reason}", entry.name);
                continue;
            }
        };
        let info = backend.info();
        println!("\n{}: {}", entry.name, info.device);
        println!("  driver:   {}", info.driver.as_deref().unwrap_or("-"));
        let memory = info.memory_bytes.map_or("-".to_string(), format_bytes);
        println!("  memory:   {memory}");
        let features = if info.features.is_empty() {
            "-".to_string()
        } else {
            info.features.join(", ")
        };
        println!("  features: {features}");
        print_support_table(backend.as_ref());
    }
    Ok(true)
}

/// The op x dtype table: ✓, or ✗ with a numbered reason below the table
/// (reasons are too long for cells).
fn print_support_table(backend: &dyn Backend) {
    let mut reasons: Vec<String> = Vec::new();
    let mut header = format!("  {:<20}", "op");
    for dtype in DType::FLOATS {
        header += &format!("{:<6}", dtype.name());
    }
    println!("{}", header.trim_end());
    for op in OpKind::ALL {
        let mut row = format!("  {:<20}", op.name());
        for dtype in DType::FLOATS {
            let cell = match backend.supports(&OpQuery::new(op, dtype)) {
                Ok(()) => "✓".to_string(),
                Err(unsupported) => {
                    let index = match reasons.iter().position(|r| *r == unsupported.reason) {
                        Some(index) => index,
                        None => {
                            reasons.push(unsupported.reason);
                            reasons.len() - 1
                        }
                    };
                    format!("✗{}", index + 1)
                }
            };
            row += &format!("{cell:<6}");
        }
        println!("{}", row.trim_end());
    }
    for (index, reason) in reasons.iter().enumerate() {
        println!("  ✗{}: {reason}", index + 1);
    }
}

fn format_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

// ---------------------------------------------------------------------------
// check and replay: one table row per (case, backend)

const HEADER: [&str; 7] = [
    "op", "shape", "dtype", "backend", "rel err", "max abs", "verdict",
];

/// Column layout: `first` is the width of a leading file column (replay).
struct Table {
    first: Option<usize>,
}

impl Table {
    fn row(&self, first: &str, cells: [&str; 7]) {
        let [op, shape, dtype, backend, rel, abs, verdict] = cells;
        let first = self
            .first
            .map(|width| format!("{first:<width$}  "))
            .unwrap_or_default();
        println!(
            "{first}{op:<19} {shape:<52} {dtype:<5} {backend:<10} {rel:>9} {abs:>9}  {verdict}"
        );
    }

    /// One report row.
    fn report(&self, first: &str, report: &CaseReport) {
        let number = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2e}"));
        let verdict = match (&report.verdict, report.failure_detail()) {
            (Verdict::Fail, Some(detail)) => format!("FAIL  {detail}"),
            (verdict, _) => verdict.to_string(),
        };
        self.row(
            first,
            [
                report.op.name(),
                &report.shapes,
                report.dtype.name(),
                &report.backend,
                &number(report.rel_err()),
                &number(report.max_abs()),
                &verdict,
            ],
        );
    }

    /// A row for a case that could not be run at all (device error, ...).
    fn error(&self, first: &str, case: &Case, backend: &str, error: &Error) {
        let verdict = format!("ERROR: {error}");
        let cells = [
            case.op().name(),
            case.summary(),
            case.dtype().name(),
            backend,
            "-",
            "-",
            &verdict,
        ];
        self.row(first, cells);
    }
}

/// Totals, printed after a table.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    unsupported: usize,
    malformed: usize,
}

impl Tally {
    fn record(&mut self, result: &radiant::Result<CaseReport>) {
        match result.as_ref().map(|r| &r.verdict) {
            Ok(Verdict::Pass) => self.passed += 1,
            Ok(Verdict::Unsupported(_)) => self.unsupported += 1,
            Ok(Verdict::Fail) | Err(_) => self.failed += 1,
        }
    }

    fn ok(&self) -> bool {
        self.failed == 0 && self.malformed == 0
    }

    fn print(&self) {
        let mut line = format!(
            "{} passed, {} failed, {} unsupported",
            self.passed, self.failed, self.unsupported
        );
        if self.malformed > 0 {
            line += &format!(", {} malformed file(s)", self.malformed);
        }
        println!("\n{line}");
    }
}

/// Runs one case on one backend and prints its row.
fn run_and_print(
    table: &Table,
    first: &str,
    case: &Case,
    backend: &dyn Backend,
    tally: &mut Tally,
    progress: &Progress,
) {
    let result = case::run(case, backend);
    progress.clear();
    match &result {
        Ok(report) => table.report(first, report),
        Err(error) => table.error(first, case, backend.name(), error),
    }
    tally.record(&result);
}

fn check(backend: &str, quick: bool) -> radiant::Result<bool> {
    let backends = select_backends(backend)?;
    let cases = radiant::check::cases(quick)?;
    let total = cases.len() * backends.len();
    let progress = Progress::new();
    let mut tally = Tally::default();
    let table = Table { first: None };
    table.row("", HEADER);
    let mut done = 0;
    // Each case on every backend in turn, so backends sit side by side.
    for case in &cases {
        for backend in &backends {
            done += 1;
            progress.show(&format!(
                "[{done}/{total}] {} {} {} on {} ...",
                case.op(),
                case.dtype(),
                case.name(),
                backend.name()
            ));
            run_and_print(&table, "", case, backend.as_ref(), &mut tally, &progress);
        }
    }
    tally.print();
    Ok(tally.ok())
}

fn replay(files: &[PathBuf], backend: &str) -> radiant::Result<bool> {
    let backends = select_backends(backend)?;
    let progress = Progress::new();
    let mut tally = Tally::default();
    // The file column shows file names (errors show the full path).
    let label = |file: &PathBuf| {
        file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into(),
        )
    };
    let width = files.iter().map(|f| label(f).chars().count()).max();
    let table = Table {
        first: Some(width.unwrap_or(0).max(4)),
    };
    table.row("file", HEADER);
    for file in files {
        let case = match Case::load(file) {
            Ok(case) => case,
            Err(error) => {
                // The error names the file; keep going with the others.
                println!("error: {error}");
                tally.malformed += 1;
                continue;
            }
        };
        for backend in &backends {
            progress.show(&format!("{} on {} ...", file.display(), backend.name()));
            let name = label(file);
            run_and_print(
                &table,
                &name,
                &case,
                backend.as_ref(),
                &mut tally,
                &progress,
            );
        }
    }
    tally.print();
    Ok(tally.ok())
}

/// A one-line progress indicator on stderr, shown only on a terminal (in a
/// log the table rows, streamed as they finish, are the progress).
struct Progress {
    enabled: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, line: &str) {
        if self.enabled {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        }
    }

    fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
        }
    }
}
