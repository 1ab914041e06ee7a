//! Per-session request statistics on the worker, the counterpart of the
//! client's `TF_CALL_STATS`: with `TF_CALL_STATS=1` in the worker's
//! environment, each session counts its requests per opcode with the time the
//! worker spent handling them (backend call included) and logs the most
//! expensive ones when it ends. Comparing both tables tells whether a slow
//! request is slow in the driver or on the way there. Off by default: then
//! recording costs one branch.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("TF_CALL_STATS").is_ok_and(|v| !v.is_empty() && v != "0"))
}

#[derive(Default)]
pub(crate) struct CallStats {
    /// opcode → (count, nanoseconds handling it).
    rows: HashMap<u32, (u64, u64)>,
}

impl CallStats {
    /// A timer for one request, or `None` when statistics are off.
    pub(crate) fn start(&self) -> Option<Instant> {
        enabled().then(Instant::now)
    }

    pub(crate) fn record(&mut self, opcode: u32, started: Option<Instant>) {
        if let Some(t) = started {
            let e = self.rows.entry(opcode).or_insert((0, 0));
            e.0 += 1;
            e.1 += t.elapsed().as_nanos() as u64;
        }
    }

    /// The table, most expensive first, or `None` when nothing was recorded.
    pub(crate) fn table(&self) -> Option<String> {
        if self.rows.is_empty() {
            return None;
        }
        let mut rows: Vec<(u64, u64, u32)> = self
            .rows
            .iter()
            .map(|(op, (n, ns))| (*ns, *n, *op))
            .collect();
        rows.sort_unstable_by(|a, b| b.cmp(a));
        let mut text = format!(
            "worker time per request (TF_CALL_STATS):\n{:<44} {:>10} {:>12} {:>10}\n",
            "request", "count", "total ms", "mean µs"
        );
        for (ns, n, op) in rows.iter().take(20) {
            text.push_str(&format!(
                "{:<44} {:>10} {:>12.1} {:>10.1}\n",
                tf_api::opcode_name(*op),
                n,
                *ns as f64 / 1e6,
                *ns as f64 / 1e3 / *n as f64
            ));
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_orders_by_total_time_and_names_opcodes() {
        let mut s = CallStats::default();
        assert!(s.table().is_none());
        let op_a = tf_api::REMOTED[0].3;
        let op_b = tf_api::REMOTED[1].3;
        s.rows.insert(op_a, (2, 1_000));
        s.rows.insert(op_b, (1, 5_000_000));
        let t = s.table().unwrap();
        let a = t.find(&tf_api::opcode_name(op_a)).unwrap();
        let b = t.find(&tf_api::opcode_name(op_b)).unwrap();
        assert!(b < a, "the most expensive request comes first:\n{t}");
        assert!(t.contains("5.0"), "total ms of the expensive one:\n{t}");
    }
}
