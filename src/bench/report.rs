//! What a bench run produces: the rows, the text table, the JSON file and
//! the SVG chart, plus the machine description that goes with them.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::bench::roofline::{Bound, HostMeasurement, HostRoofline, Roofline};
use crate::bench::timing::Timing;
use crate::dtype::DType;
use crate::ops::OpKind;

/// One measured (case, backend).
#[derive(Debug, Clone)]
pub struct BenchRow {
    pub op: OpKind,
    pub shape: String,
    pub dtype: DType,
    pub backend: String,
    pub timing: Timing,
    /// FLOPs and bytes of one launch, from the validated problem.
    pub flops: f64,
    pub bytes: f64,
    /// The ceiling the op runs into on this backend's device.
    pub bound: Bound,
    /// Achieved / attainable, when the device's roofline is known.
    pub roofline_fraction: Option<f64>,
}

impl BenchRow {
    pub fn flops_per_s(&self) -> f64 {
        self.flops / self.timing.median_s
    }

    pub fn bytes_per_s(&self) -> f64 {
        self.bytes / self.timing.median_s
    }

    /// The rate of the binding resource: GFLOP/s or GB/s.
    pub fn rate_text(&self) -> String {
        match self.bound {
            Bound::Compute => format!("{:.2} GFLOP/s", self.flops_per_s() / 1e9),
            Bound::Memory => format!("{:.2} GB/s", self.bytes_per_s() / 1e9),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "op": self.op.name(),
            "shape": self.shape,
            "dtype": self.dtype.name(),
            "backend": self.backend,
            "median_s": self.timing.median_s,
            "min_s": self.timing.min_s,
            "max_s": self.timing.max_s,
            "samples": self.timing.samples,
            "launches_per_sample": self.timing.batch,
            "flops": self.flops,
            "bytes": self.bytes,
            "gflop_per_s": self.flops_per_s() / 1e9,
            "gb_per_s": self.bytes_per_s() / 1e9,
            "bound": self.bound.name(),
            "roofline_percent": self.roofline_fraction.map(|f| 100.0 * f),
        })
    }
}

/// A (case, backend) that was not measured, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// `op/dtype/shape`.
    pub case: String,
    pub backend: String,
    pub reason: String,
}

/// Where and when a run happened.
#[derive(Debug, Clone)]
pub struct MachineInfo {
    pub cpu: String,
    /// Threads of the pool the host backends ran on.
    pub threads: usize,
    pub os: String,
    pub radiant_version: String,
    /// The commit of the source tree radiant was built from, when it is a
    /// git checkout, and whether it had uncommitted changes.
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    /// UTC, ISO 8601.
    pub date: String,
}

impl MachineInfo {
    pub fn collect(threads: usize) -> Self {
        let source_dir = env!("CARGO_MANIFEST_DIR");
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(source_dir)
                .output()
                .ok()
        };
        let git_commit = git(&["rev-parse", "HEAD"])
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
        let git_dirty = git_commit.as_ref().and_then(|_| {
            git(&["status", "--porcelain", "--untracked-files=no"])
                .filter(|out| out.status.success())
                .map(|out| !out.stdout.is_empty())
        });
        MachineInfo {
            cpu: cpu_model(),
            threads,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            radiant_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit,
            git_dirty,
            date: utc_now(),
        }
    }
}

/// The CPU model from /proc/cpuinfo, or the architecture.
fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    for key in ["model name", "Hardware", "Processor", "cpu model"] {
        for line in cpuinfo.lines() {
            if let Some((name, value)) = line.split_once(':')
                && name.trim() == key
                && !value.trim().is_empty()
            {
                return value.trim().to_string();
            }
        }
    }
    format!("unknown {} CPU", std::env::consts::ARCH)
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `1.23 ms`-style durations.
pub fn format_seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} µs", s * 1e6)
    }
}

fn roofline_text(label: &str, r: &Roofline) -> String {
    format!(
        "{label}: peak {:.1} GFLOP/s f32, bandwidth {:.1} GB/s, balance {:.1} FLOP/B ({})",
        r.peak_flops / 1e9,
        r.bandwidth_bytes_per_s / 1e9,
        r.balance(),
        r.source
    )
}

fn measurement_text(m: &HostMeasurement) -> String {
    format!(
        "host, {} thread{}: FMA {:.1} GFLOP/s f32, copy {:.1} GB/s, read {:.1} GB/s",
        m.threads,
        if m.threads == 1 { "" } else { "s" },
        m.fma_flops / 1e9,
        m.copy_bytes_per_s / 1e9,
        m.read_bytes_per_s / 1e9
    )
}

/// The run's header: machine and rooflines.
pub fn header(machine: &MachineInfo, host: Option<&HostRoofline>) -> String {
    let mut out = String::new();
    let commit = machine.git_commit.as_deref().unwrap_or("unknown commit");
    let dirty = if machine.git_dirty == Some(true) {
        " (modified)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "radiant {} at {commit}{dirty}, {}, {}",
        machine.radiant_version, machine.date, machine.os
    );
    let _ = writeln!(out, "CPU: {}, {} threads", machine.cpu, machine.threads);
    if let Some(host) = host {
        let _ = writeln!(out, "{}", measurement_text(&host.one_thread));
        let _ = writeln!(out, "{}", measurement_text(&host.all_threads));
        let _ = writeln!(out, "{}", roofline_text("host roofline", &host.ceiling()));
    }
    out
}

/// The result table, columns aligned.
pub fn table(rows: &[BenchRow]) -> String {
    let head = [
        "op",
        "shape",
        "dtype",
        "backend",
        "time",
        "rate",
        "bound",
        "% roofline",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.op.name().to_string(),
                r.shape.clone(),
                r.dtype.name().to_string(),
                r.backend.clone(),
                format_seconds(r.timing.median_s),
                r.rate_text(),
                r.bound.name().to_string(),
                r.roofline_fraction
                    .map_or("-".to_string(), |f| format!("{:.2}%", 100.0 * f)),
            ]
        })
        .collect();
    let mut widths = head.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Text columns align left, numbers right.
    let right = [false, false, false, false, true, true, false, true];
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                text.push_str("  ");
            }
            if right[i] {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if i + 1 < cells.len() {
                    text.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&head.map(String::from));
    line(&widths.map(|w| "-".repeat(w)));
    for row in &cells {
        line(row);
    }
    out
}

/// The JSON document `--json` writes.
pub fn json(
    machine: &MachineInfo,
    host: Option<&HostRoofline>,
    backend_rooflines: &[(String, Option<Roofline>)],
    rows: &[BenchRow],
    skipped: &[Skipped],
    command: &str,
) -> Value {
    let roofline = |r: &Roofline| {
        json!({
            "peak_gflop_per_s": r.peak_flops / 1e9,
            "bandwidth_gb_per_s": r.bandwidth_bytes_per_s / 1e9,
            "balance_flop_per_byte": r.balance(),
            "source": r.source,
        })
    };
    let measurement = |m: &HostMeasurement| {
        json!({
            "threads": m.threads,
            "fma_gflop_per_s": m.fma_flops / 1e9,
            "copy_gb_per_s": m.copy_bytes_per_s / 1e9,
            "read_gb_per_s": m.read_bytes_per_s / 1e9,
        })
    };
    let backends: serde_json::Map<String, Value> = backend_rooflines
        .iter()
        .map(|(name, r)| (name.clone(), r.as_ref().map_or(Value::Null, roofline)))
        .collect();
    json!({
        "radiant_version": machine.radiant_version,
        "git_commit": machine.git_commit,
        "git_dirty": machine.git_dirty,
        "date": machine.date,
        "command": command,
        "machine": {
            "cpu": machine.cpu,
            "threads": machine.threads,
            "os": machine.os,
        },
        "host_roofline": host.map(|h| json!({
            "fma_kernel": h.kernel,
            "buffer_bytes": h.buffer_bytes,
            "one_thread": measurement(&h.one_thread),
            "all_threads": measurement(&h.all_threads),
            "ceiling": roofline(&h.ceiling()),
        })),
        "backend_rooflines": backends,
        "results": rows.iter().map(BenchRow::to_json).collect::<Vec<_>>(),
        "skipped": skipped.iter().map(|s| json!({
            "case": s.case,
            "backend": s.backend,
            "reason": s.reason,
        })).collect::<Vec<_>>(),
    })
}

/// A horizontal bar chart of % of roofline, one bar per row, on a log axis
/// from 0.01% to 100% (a scalar oracle and a tuned kernel differ by
/// orders of magnitude). Rows without a known roofline are listed, barless.
pub fn svg(rows: &[BenchRow], title: &str) -> String {
    const BAR_W: f64 = 520.0;
    const ROW_H: f64 = 18.0;
    const TOP: f64 = 56.0;
    const LOG_MIN: f64 = -4.0; // 0.01%
    const PALETTE: [&str; 6] = [
        "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
    ];
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {} {} {}", r.op, r.shape, r.dtype, r.backend))
        .collect();
    // Monospace 11 px: about 6.7 px per character.
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let label_w = (16.0 + 6.7 * longest as f64).max(160.0).round();
    let mut backends: Vec<&str> = Vec::new();
    for r in rows {
        if !backends.contains(&r.backend.as_str()) {
            backends.push(&r.backend);
        }
    }
    let color = |backend: &str| {
        let i = backends.iter().position(|b| *b == backend).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let x_of = |fraction: f64| {
        let t = (fraction.max(1e-12).log10() - LOG_MIN) / -LOG_MIN;
        label_w + BAR_W * t.clamp(0.0, 1.0)
    };
    let width = label_w + BAR_W + 90.0;
    let height = TOP + ROW_H * rows.len() as f64 + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="8" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    // Legend.
    let mut lx = 8.0;
    for b in &backends {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="28" width="10" height="10" fill="{}"/><text x="{}" y="37">{}</text>"#,
            color(b),
            lx + 14.0,
            escape(b)
        );
        lx += 24.0 + 7.0 * b.len() as f64;
    }
    // Grid: decades of the log axis.
    let bottom = TOP + ROW_H * rows.len() as f64;
    for (decade, label) in [
        (1e-4, "0.01%"),
        (1e-3, "0.1%"),
        (1e-2, "1%"),
        (1e-1, "10%"),
        (1.0, "100%"),
    ] {
        let x = x_of(decade);
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom}" stroke="#ccc"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"##,
            bottom + 14.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">% of roofline (log scale)</text>"#,
        label_w + BAR_W / 2.0,
        bottom + 30.0
    );
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let label = &labels[i];
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_w - 6.0,
            y + ROW_H * 0.7,
            escape(label)
        );
        match r.roofline_fraction {
            Some(f) => {
                let x = x_of(f);
                let _ = writeln!(
                    s,
                    r#"<rect class="bar" x="{label_w}" y="{}" width="{:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{}">{:.2}%</text>"#,
                    y + 3.0,
                    (x - label_w).max(0.5),
                    ROW_H - 6.0,
                    color(&r.backend),
                    x + 4.0,
                    y + ROW_H * 0.7,
                    100.0 * f
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{}" fill="#888">roofline unknown</text>"##,
                    label_w + 4.0,
                    y + ROW_H * 0.7
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_574), (2026, 5, 1));
    }

    #[test]
    fn durations() {
        assert_eq!(format_seconds(2.5), "2.500 s");
        assert_eq!(format_seconds(0.0125), "12.500 ms");
        assert_eq!(format_seconds(3.5e-6), "3.50 µs");
    }
}
