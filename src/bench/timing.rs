//! The adaptive timer of `radiant bench`.
//!
//! One warm-up launch (first-touch page faults, lazy kernel compilation,
//! caches), then samples until both `min_samples` samples and
//! `target_seconds` of measuring are done, and the median per-launch time.
//! A sample is a batch of launches followed by one synchronize, sized so it
//! lasts at least `min_sample_seconds`: a microsecond-scale GPU kernel is
//! then timed by its throughput, not by the launch-and-wait round trip. A
//! launch slower than `slow_launch_seconds` is timed once, by its warm-up
//! run (what warm-up saves is small beside seconds), so that no backend can
//! stretch a run by minutes.

use std::time::Instant;

use crate::error::Result;

/// How long and how often to measure one case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimingPolicy {
    /// Keep sampling until this much time was spent measuring...
    pub target_seconds: f64,
    /// ...and at least this many samples were taken.
    pub min_samples: usize,
    /// Never take more samples than this.
    pub max_samples: usize,
    /// A sample batches launches until it lasts at least this long.
    pub min_sample_seconds: f64,
    /// A warm-up launch at least this long is the only sample.
    pub slow_launch_seconds: f64,
}

impl TimingPolicy {
    /// The default of `radiant bench`: ~0.3 s per case, median of ≥ 3.
    pub const FULL: TimingPolicy = TimingPolicy {
        target_seconds: 0.3,
        min_samples: 3,
        max_samples: 1000,
        min_sample_seconds: 1e-3,
        slow_launch_seconds: 2.0,
    };

    /// `--quick`: a smoke test of the harness, not a measurement.
    pub const QUICK: TimingPolicy = TimingPolicy {
        target_seconds: 0.02,
        min_samples: 3,
        max_samples: 100,
        min_sample_seconds: 1e-4,
        slow_launch_seconds: 0.5,
    };
}

/// Per-launch times of one case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Median over samples of the per-launch time, in seconds.
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub samples: usize,
    /// Launches per sample.
    pub batch: usize,
}

/// Times `run_batch(n)`, which must launch the op `n` times and then wait
/// for the device to finish.
pub fn measure(
    policy: &TimingPolicy,
    mut run_batch: impl FnMut(usize) -> Result<()>,
) -> Result<Timing> {
    let start = Instant::now();
    run_batch(1)?;
    let warmup = start.elapsed().as_secs_f64();
    if warmup >= policy.slow_launch_seconds {
        return Ok(Timing {
            median_s: warmup,
            min_s: warmup,
            max_s: warmup,
            samples: 1,
            batch: 1,
        });
    }
    let batch = if warmup >= policy.min_sample_seconds {
        1
    } else {
        ((policy.min_sample_seconds / warmup.max(1e-9)).ceil() as usize).clamp(1, 100_000)
    };

    let mut samples = Vec::new();
    let measuring = Instant::now();
    while samples.len() < policy.max_samples.max(1) {
        let start = Instant::now();
        run_batch(batch)?;
        samples.push(start.elapsed().as_secs_f64() / batch as f64);
        if samples.len() >= policy.min_samples
            && measuring.elapsed().as_secs_f64() >= policy.target_seconds
        {
            break;
        }
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    let median_s = if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        0.5 * (samples[mid - 1] + samples[mid])
    };
    Ok(Timing {
        median_s,
        min_s: samples[0],
        max_s: samples[samples.len() - 1],
        samples: samples.len(),
        batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fast_launches_and_takes_the_median() {
        let mut launches = 0usize;
        let policy = TimingPolicy {
            target_seconds: 0.0,
            min_samples: 5,
            max_samples: 5,
            min_sample_seconds: 1e-3,
            slow_launch_seconds: 1.0,
        };
        let timing = measure(&policy, |n| {
            launches += n;
            Ok(())
        })
        .unwrap();
        assert_eq!(timing.samples, 5);
        assert!(timing.batch > 1, "an empty launch must be batched");
        assert_eq!(launches, 1 + 5 * timing.batch);
        assert!(timing.min_s <= timing.median_s && timing.median_s <= timing.max_s);
    }

    #[test]
    fn a_slow_launch_is_timed_once() {
        let policy = TimingPolicy {
            slow_launch_seconds: 0.0,
            ..TimingPolicy::FULL
        };
        let mut launches = 0;
        let timing = measure(&policy, |n| {
            launches += n;
            Ok(())
        })
        .unwrap();
        assert_eq!((launches, timing.samples), (1, 1));
    }

    #[test]
    fn errors_stop_the_measurement() {
        let policy = TimingPolicy::QUICK;
        let err = measure(&policy, |_| {
            Err(crate::Error::invalid("bench", "case", "boom"))
        });
        assert!(err.is_err());
    }
}
