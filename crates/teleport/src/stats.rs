//! Per-call statistics, for finding what makes a workload slow through the
//! client: with `TF_CALL_STATS=1` every request sent to the worker is
//! counted per opcode, with the time the application waited for it, and a
//! table of the most expensive ones is logged (and printed to stderr) at
//! exit. Off by default: then recording is one relaxed load.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
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

/// Time spent inside the client's exports, by the export that answered
/// (local answers included): `(count, nanos)` per source location.
static SITES: Mutex<Option<HashMap<&'static Location<'static>, (u64, u64)>>> = Mutex::new(None);

pub(crate) fn record_site(at: &'static Location<'static>, started: Option<Instant>) {
    if let Some(t) = started {
        let nanos = t.elapsed().as_nanos() as u64;
        let mut m = SITES.lock().unwrap_or_else(|e| e.into_inner());
        let e = m
            .get_or_insert_with(HashMap::new)
            .entry(at)
            .or_insert((0, 0));
        e.0 += 1;
        e.1 += nanos;
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
            tf_api::opcode_name(*op),
            n,
            *nanos as f64 / 1e6,
            *nanos as f64 / 1e3 / *n as f64
        ));
    }
    let mut sites: Vec<(u64, u64, String)> = SITES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(at, (n, nanos))| (nanos, n, format!("{}:{}", at.file(), at.line())))
        .collect();
    sites.sort_unstable_by(|a, b| b.cmp(a));
    text.push_str(&format!(
        "{:<52} {:>10} {:>12} {:>10}\n",
        "time inside the client's exports, by export", "count", "total ms", "mean µs"
    ));
    for (nanos, n, at) in sites.iter().take(15) {
        text.push_str(&format!(
            "{:<52} {:>10} {:>12.1} {:>10.2}\n",
            at.trim_start_matches("crates/teleport/src/"),
            n,
            *nanos as f64 / 1e6,
            *nanos as f64 / 1e3 / *n as f64
        ));
    }
    let (hits, misses, entries, bytes) = crate::runtime::compile_cache::stats();
    if hits + misses > 0 {
        text.push_str(&format!(
            "compilation cache (NVRTC): {hits} hits, {misses} misses, {entries} entries, {:.1} MiB\n",
            bytes as f64 / (1 << 20) as f64
        ));
    }
    eprint!("{text}");
    if crate::runtime::may_log() {
        tracing::info!("{text}");
    }
}
