//! The results: a table for people, one JSON object for tools.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::limits::{self, Row};
use crate::phase::PhaseStats;
use crate::soak::Curve;

/// Everything a run measured, and what went wrong.
#[derive(Debug, Clone)]
pub struct Report {
    /// The server's base URL.
    pub url: String,
    /// `started (data dir …)` or `external`.
    pub server: String,
    /// Concurrent client tasks.
    pub clients: u64,
    /// The bench runtime's worker threads.
    pub client_threads: u64,
    /// The phases run, in order; the first is the `/healthz` baseline when it ran.
    pub phases: Vec<PhaseStats>,
    /// Phases not run, and why.
    pub notes: Vec<String>,
    /// Why the run failed (empty when it did not).
    pub failures: Vec<String>,
    /// The rows of issue 13 (empty until the run is over).
    pub limits: Vec<Row>,
    /// The RSS curve of `--soak`.
    pub soak: Option<Curve>,
    /// The rows of issue 12 (`--feed`).
    pub feed: Vec<Row>,
}

impl Report {
    /// Throughput of the `/healthz` baseline, if it ran and answered anything.
    fn baseline(&self) -> Option<f64> {
        self.phases
            .iter()
            .find(|p| p.name == "healthz")
            .map(PhaseStats::throughput)
            .filter(|t| *t > 0.0)
    }

    /// A phase's throughput relative to the baseline.
    fn ratio(&self, phase: &PhaseStats) -> Option<f64> {
        self.baseline().map(|base| phase.throughput() / base)
    }

    /// Whether every phase ran all its requests without error and nothing else failed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "adledger-bench: {} ({}), {} clients, {} client thread(s)",
            self.url, self.server, self.clients, self.client_threads
        );
        let _ = writeln!(
            out,
            "{:<9} {:>9} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9}  {:>10}",
            "phase", "requests", "errors", "elapsed", "req/s", "p50", "p99", "max", "vs healthz"
        );
        for phase in &self.phases {
            let _ = writeln!(
                out,
                "{:<9} {:>9} {:>7} {:>8.2}s {:>10.1} {:>9} {:>9} {:>9}  {:>10}",
                phase.name,
                phase.requests,
                phase.errors,
                phase.elapsed.as_secs_f64(),
                phase.throughput(),
                millis(phase.percentile(50.0)),
                millis(phase.percentile(99.0)),
                millis(phase.max()),
                self.ratio(phase)
                    .map_or_else(|| "-".to_string(), |r| format!("{r:.3}x")),
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        if let Some(soak) = &self.soak {
            out.push_str(&soak.table());
        }
        if !self.limits.is_empty() {
            out.push_str(&limits::table(&self.limits));
        }
        if !self.feed.is_empty() {
            out.push_str(&limits::titled_table(
                "issue 12: the ledger feed (baselines from this run)",
                &self.feed,
            ));
        }
        if self.ok() {
            let _ = writeln!(out, "result: OK");
        } else {
            for failure in &self.failures {
                let _ = writeln!(out, "FAILED: {failure}");
            }
        }
        out
    }

    /// The same as one JSON object (durations in milliseconds, camelCase keys).
    pub fn json(&self) -> Value {
        let phases: Vec<Value> = self
            .phases
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "planned": p.planned,
                    "requests": p.requests,
                    "errors": p.errors,
                    "errorKinds": p.error_kinds,
                    "errorSamples": p.error_samples,
                    "cutShort": p.cut_short,
                    "elapsedSecs": p.elapsed.as_secs_f64(),
                    "throughput": p.throughput(),
                    "p50Ms": p.percentile(50.0).map(ms_f64),
                    "p99Ms": p.percentile(99.0).map(ms_f64),
                    "maxMs": p.max().map(ms_f64),
                    "vsHealthz": self.ratio(p),
                })
            })
            .collect();
        json!({
            "url": self.url,
            "server": self.server,
            "clients": self.clients,
            "clientThreads": self.client_threads,
            "phases": phases,
            "notes": self.notes,
            "limits": limits::json(&self.limits),
            "feed": limits::json(&self.feed),
            "soak": self.soak.as_ref().map(|c| c.samples.iter().map(|s| json!({
                "atSecs": s.at,
                "rssBytes": s.rss,
                "throughput": s.throughput,
                "errors": s.errors,
            })).collect::<Vec<_>>()),
            "ok": self.ok(),
            "failures": self.failures,
        })
    }
}

fn ms_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// `12.345ms`, or `-` when nothing was measured.
fn millis(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_string(), |d| format!("{:.2}ms", ms_f64(d)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn phase(name: &'static str, requests: u64, secs: u64) -> PhaseStats {
        PhaseStats {
            name,
            planned: requests,
            requests,
            errors: 0,
            error_kinds: BTreeMap::new(),
            error_samples: Vec::new(),
            elapsed: Duration::from_secs(secs),
            latencies: vec![Duration::from_millis(1), Duration::from_millis(3)],
            cut_short: false,
        }
    }

    #[test]
    fn ratios_are_relative_to_healthz() {
        let report = Report {
            url: "http://127.0.0.1:1".into(),
            server: "external".into(),
            clients: 4,
            client_threads: 1,
            phases: vec![phase("healthz", 1000, 1), phase("creates", 500, 2)],
            notes: vec![],
            failures: vec![],
            limits: vec![],
            soak: None,
            feed: vec![],
        };
        let json = report.json();
        assert_eq!(json["phases"][0]["vsHealthz"], json!(1.0));
        assert_eq!(json["phases"][1]["vsHealthz"], json!(0.25));
        assert_eq!(json["phases"][1]["throughput"], json!(250.0));
        assert_eq!(json["phases"][1]["maxMs"], json!(3.0));
        assert_eq!(json["ok"], json!(true));
        let table = report.table();
        assert!(table.contains("0.250x"), "{table}");
        assert!(table.contains("result: OK"), "{table}");
    }

    #[test]
    fn failures_are_loud() {
        let report = Report {
            url: "http://127.0.0.1:1".into(),
            server: "external".into(),
            clients: 4,
            client_threads: 1,
            phases: vec![phase("creates", 10, 1)],
            notes: vec![],
            failures: vec!["creates: 3 errors".into()],
            limits: vec![],
            soak: None,
            feed: vec![],
        };
        assert!(!report.ok());
        assert!(report.table().contains("FAILED: creates: 3 errors"));
        assert!(report.table().contains(" -\n") || report.table().contains("         -"));
    }
}
