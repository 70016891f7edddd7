//! Concurrency: backends are `Send + Sync` and give correct results when
//! called from several threads at once. Four threads share one
//! `Arc<dyn Backend>`, start together, and each runs every op on its own
//! random cases (drawn from the same generators as the per-op tests),
//! checking every result against the oracle.

use std::sync::{Arc, Barrier};
use std::thread;

use radiant::Backend;

use crate::harness::{Check, sample, seeded_runner};
use crate::{
    attention, awq_matmul, fused_add_rms_norm, gptq_matmul, matmul, nvfp4_matmul, paged_attention,
    rms_norm,
};

const THREADS: usize = 4;
const ROUNDS: usize = 3;

fn run_thread(backend: &dyn Backend, thread: usize) -> Check {
    let mut runner = seeded_runner(thread as u8 + 1);
    for _ in 0..ROUNDS {
        matmul::check(backend, &sample(&matmul::cases(), &mut runner))?;
        rms_norm::check(backend, &sample(&rms_norm::cases(), &mut runner))?;
        fused_add_rms_norm::check(backend, &sample(&rms_norm::cases(), &mut runner))?;
        attention::check(backend, &sample(&attention::cases(), &mut runner))?;
        paged_attention::check(backend, &sample(&paged_attention::cases(), &mut runner))?;
        gptq_matmul::check(backend, &sample(&gptq_matmul::cases(), &mut runner))?;
        awq_matmul::check(backend, &sample(&awq_matmul::cases(), &mut runner))?;
        nvfp4_matmul::check(backend, &sample(&nvfp4_matmul::cases(), &mut runner))?;
    }
    Ok(())
}

pub fn concurrent(backend: Arc<dyn Backend>) {
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let backend = Arc::clone(&backend);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                run_thread(backend.as_ref(), t)
            })
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .enumerate()
        .filter_map(|(t, handle)| match handle.join() {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(format!("thread {t}: {error}")),
            Err(payload) => Some(format!(
                "thread {t} panicked: {}",
                crate::harness::panic_message(&*payload)
            )),
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
