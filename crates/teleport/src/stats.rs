//! Per-call statistics, for finding what makes a workload slow through the
//! client: with `TF_CALL_STATS=1` every request sent to the worker is
//! counted per opcode, with the time the application waited for it, and a
//! table of the most expensive ones is logged (and printed to stderr) at
//! exit. Off by default: then recording is one relaxed load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Opcodes are below this (CUDA 1000–2999, NVML 3000–3999).
const SLOTS: usize = 4096;

static ON: OnceLock<bool> = OnceLock::new();
static COUNT: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static NANOS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static PRINTED: AtomicBool = AtomicBool::new(false);

pub(crate) fn enabled() -> bool {
    *ON.get_or_init(|| std::env::var("TF_CALL_STATS").is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// A timer for one request, or `None` when statistics are off.
pub(crate) fn start() -> Option<Instant> {
    enabled().then(Instant::now)
}

pub(crate) fn record(opcode: u32, started: Option<Instant>) {
    if let Some(t) = started {
        let i = opcode as usize % SLOTS;
        COUNT[i].fetch_add(1, Ordering::Relaxed);
        NANOS[i].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

fn name(opcode: u32) -> String {
    match tf_api::remoted_by_opcode(opcode) {
        Some((i, tf_api::Api::Cuda, ..)) => tf_api::CUDA_NAMES[*i].to_string(),
        Some((i, tf_api::Api::Nvml, ..)) => tf_api::NVML_NAMES[*i].to_string(),
        None => format!("control {opcode}"),
    }
}

/// The table, most waited-for first (once per process).
pub(crate) fn report() {
    if !enabled() || PRINTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let mut rows: Vec<(u64, u64, u32)> = (0..SLOTS)
        .filter_map(|i| {
            let n = COUNT[i].load(Ordering::Relaxed);
            (n > 0).then(|| (NANOS[i].load(Ordering::Relaxed), n, i as u32))
        })
        .collect();
    rows.sort_unstable_by(|a, b| b.cmp(a));
    let mut text = String::from("tensor-fusion call statistics (TF_CALL_STATS):\n");
    text.push_str(&format!(
        "{:<44} {:>10} {:>12} {:>10}\n",
        "request", "count", "waited ms", "mean µs"
    ));
    for (nanos, n, op) in rows.iter().take(25) {
        text.push_str(&format!(
            "{:<44} {:>10} {:>12.1} {:>10.1}\n",
            name(*op),
            n,
            *nanos as f64 / 1e6,
            *nanos as f64 / 1e3 / *n as f64
        ));
    }
    eprint!("{text}");
    if crate::runtime::may_log() {
        tracing::info!("{text}");
    }
}
