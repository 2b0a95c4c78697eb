//! The table of issue 13, "performance at the limits": every row with its measurement,
//! the baseline it is compared with (measured in the same run), the ratio, the target and
//! whether the target is met.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::bulk::Bulk;
use crate::phase::PhaseStats;
use crate::postgres::Appends;
use crate::rss::Rss;
use crate::sha_alone::Hashed;
use crate::soak::Curve;
use crate::tantivy_alone::Indexed;

/// A measurement, or why there is none.
pub type Measured<T> = Result<T, String>;

/// Everything the rows are made from.
#[derive(Debug)]
pub struct Measurements<'a> {
    /// The HTTP phases.
    pub phases: &'a [PhaseStats],
    /// pgbench's durable appends.
    pub postgres: Measured<Appends>,
    /// The bulk commands.
    pub bulk: Measured<Bulk>,
    /// Reading and hashing the export.
    pub sha: Measured<Hashed>,
    /// tantivy alone indexing the same ads.
    pub tantivy: Measured<Indexed>,
    /// The server's memory at the end of the HTTP phases.
    pub server_rss: Measured<Rss>,
    /// The soak's curve, if one ran.
    pub soak: Option<&'a Curve>,
    /// Ads in the index when the searches ran.
    pub ads: u64,
}

const MB: f64 = 1e6;

/// The rows of issue 13 from what the run measured.
pub fn rows(m: &Measurements<'_>) -> Vec<Row> {
    let phase = |name: &str| {
        m.phases
            .iter()
            .find(|p| p.name == name && p.requests > p.errors)
    };
    let rate = |name: &str| phase(name).map(|p| q(p.throughput(), "req/s"));
    let ms = |name: &str, percent: f64| {
        phase(name)
            .and_then(|p| p.percentile(percent))
            .map(|d| q(d.as_secs_f64() * 1e3, "ms"))
    };
    let missing = |name: &str| format!("phase `{name}` did not run (see its flag)");
    let mut rows = Vec::new();

    rows.push(Row {
        what: "durable creates over HTTP, 64 clients".into(),
        value: rate("creates"),
        baseline: Some((
            "PostgreSQL appends (pgbench)".into(),
            m.postgres.as_ref().ok().map(|a| q(a.tps, "req/s")),
        )),
        target: ">= 1.5x PostgreSQL".into(),
        check: Check::RatioAtLeast(1.5),
        note: Some(match &m.postgres {
            Ok(a) => format!(
                "PostgreSQL: {} appends, avg latency {} ms; {}",
                a.transactions,
                a.latency_ms.map_or("-".into(), |l| format!("{l:.2}")),
                a.server
            ),
            Err(e) => format!("PostgreSQL not measured: {e}"),
        }),
    });

    for (label, many, one) in [
        ("GET /search?q=WORD", "search", "search-1"),
        ("GET /?q=WORD", "root-q", "root-q-1"),
    ] {
        let p50 = |name: &str| ms(name, 50.0).map_or("-".into(), |q| format!("{:.2} ms", q.value));
        rows.push(Row {
            what: format!("{label}, 64 clients"),
            value: rate(many),
            baseline: Some(("/healthz, 64 clients".into(), rate("healthz"))),
            target: ">= 0.40x /healthz".into(),
            check: Check::RatioAtLeast(0.40),
            note: Some(match phase(many) {
                Some(_) => format!("{} ads in the index; p50 {}", m.ads, p50(many)),
                None => missing(many),
            }),
        });
        rows.push(Row {
            what: format!("{label}, 64 clients, p99"),
            value: ms(many, 99.0),
            baseline: Some(("/healthz p99, 64 clients".into(), ms("healthz", 99.0))),
            target: "<= 50 ms".into(),
            check: Check::AtMost(50.0),
            note: None,
        });
        rows.push(Row {
            what: format!("{label}, 1 client, p99"),
            value: ms(one, 99.0),
            baseline: Some(("/healthz p99, 1 client".into(), ms("healthz-1", 99.0))),
            target: "<= 5 ms".into(),
            check: Check::AtMost(5.0),
            note: Some(match phase(one) {
                Some(_) => format!("p50 {}, /healthz p50 {}", p50(one), p50("healthz-1")),
                None => missing(one),
            }),
        });
    }

    let bulk = m.bulk.as_ref().ok();
    let bulk_note = m
        .bulk
        .as_ref()
        .err()
        .map(|e| format!("bulk commands not measured: {e}"));
    let per_s = |amount: f64, wall: std::time::Duration| amount / wall.as_secs_f64().max(1e-9);
    rows.push(Row {
        what: "import (adledger import)".into(),
        value: bulk.map(|b| q(per_s(b.export_bytes as f64 / MB, b.import.wall), "MB/s")),
        baseline: Some((
            "adledger export".into(),
            bulk.map(|b| q(per_s(b.export_bytes as f64 / MB, b.export.wall), "MB/s")),
        )),
        target: ">= 65 MB/s".into(),
        check: Check::AtLeast(65.0),
        note: bulk_note.clone().or_else(|| {
            bulk.map(|b| {
                format!(
                    "{:.1} MB export, {} blocks; export took {:.2} s, import {:.2} s",
                    b.export_bytes as f64 / MB,
                    b.blocks,
                    b.export.wall.as_secs_f64(),
                    b.import.wall.as_secs_f64()
                )
            })
        }),
    });
    rows.push(Row {
        what: "import, max RSS".into(),
        value: bulk.map(|b| q(b.import.max_rss as f64 / MB, "MB")),
        baseline: Some((
            "export max RSS".into(),
            bulk.map(|b| q(b.export.max_rss as f64 / MB, "MB")),
        )),
        target: "<= 512 MB".into(),
        check: Check::AtMost(512.0),
        note: None,
    });
    rows.push(Row {
        what: "rebuild (adledger rebuild)".into(),
        value: bulk.map(|b| q(per_s(b.rebuilt_revisions as f64, b.rebuild.wall), "rev/s")),
        baseline: Some((
            "tantivy alone, same ads".into(),
            m.tantivy.as_ref().ok().map(|t| q(t.rate(), "docs/s")),
        )),
        target: ">= 0.80x tantivy".into(),
        check: Check::RatioAtLeast(0.80),
        note: match (&m.tantivy, bulk) {
            (Err(e), _) => Some(format!("tantivy baseline not measured: {e}")),
            (Ok(t), Some(b)) => Some(format!(
                "{} revisions in {:.2} s; tantivy: {} docs in {:.2} s",
                b.rebuilt_revisions,
                b.rebuild.wall.as_secs_f64(),
                t.documents,
                t.elapsed.as_secs_f64()
            )),
            (Ok(_), None) => bulk_note.clone(),
        },
    });
    rows.push(Row {
        what: "rebuild, max RSS".into(),
        value: bulk.map(|b| q(b.rebuild.max_rss as f64 / MB, "MB")),
        baseline: None,
        target: "<= 512 MB".into(),
        check: Check::AtMost(512.0),
        note: None,
    });
    rows.push(Row {
        what: "verify (adledger verify)".into(),
        value: bulk.map(|b| q(per_s(b.block_bytes as f64 / MB, b.verify.wall), "MB/s")),
        baseline: Some((
            "read + SHA-256, same bytes".into(),
            m.sha.as_ref().ok().map(|h| q(h.mb_per_s(), "MB/s")),
        )),
        target: ">= 0.50x read+SHA-256".into(),
        check: Check::RatioAtLeast(0.50),
        note: match (&m.sha, bulk) {
            (Err(e), _) => Some(format!("SHA-256 baseline not measured: {e}")),
            (Ok(_), Some(b)) => Some(format!(
                "{} revisions, {:.1} MB of blocks in {:.2} s, max RSS {:.0} MB",
                b.revisions,
                b.block_bytes as f64 / MB,
                b.verify.wall.as_secs_f64(),
                b.verify.max_rss as f64 / MB
            )),
            (Ok(_), None) => bulk_note.clone(),
        },
    });
    rows.push(Row {
        what: "local journal on disk".into(),
        value: bulk.map(|b| q(b.journal_disk as f64 / MB, "MB")),
        baseline: Some((
            "block bytes".into(),
            bulk.map(|b| q(b.block_bytes as f64 / MB, "MB")),
        )),
        target: "<= 1.5x block bytes".into(),
        check: Check::RatioAtMost(1.5),
        note: bulk.map(|_| "the server's data dir after the run (allocated blocks)".to_string()),
    });
    rows.push(Row {
        what: "local journal on disk, after adledger compact".into(),
        value: bulk.map(|b| q(b.compacted_disk as f64 / MB, "MB")),
        baseline: Some((
            "block bytes".into(),
            bulk.map(|b| q(b.block_bytes as f64 / MB, "MB")),
        )),
        target: "<= 1.5x block bytes".into(),
        check: Check::RatioAtMost(1.5),
        note: bulk.map(|b| {
            format!(
                "the imported copy, compressed (zstd) in {:.1} s, max RSS {:.0} MB",
                b.compact.wall.as_secs_f64(),
                b.compact.max_rss as f64 / MB
            )
        }),
    });
    rows.push(Row {
        what: "server peak RSS (VmHWM)".into(),
        value: m
            .server_rss
            .as_ref()
            .ok()
            .map(|r| q(r.peak as f64 / MB, "MB")),
        baseline: None,
        target: "flat over a soak".into(),
        check: Check::Given(m.soak.and_then(Curve::flat)),
        note: Some(match (&m.server_rss, m.soak) {
            (Err(e), _) => format!("not measured: {e}"),
            (Ok(r), None) => format!(
                "RSS now {:.0} MB; run with --soak SECS for the curve",
                r.now as f64 / MB
            ),
            (Ok(r), Some(curve)) => format!(
                "RSS now {:.0} MB; soak of {:.0} s: first sample {:.0} MB, last {:.0} MB",
                r.now as f64 / MB,
                curve.samples.last().map_or(0.0, |s| s.at),
                curve.samples.first().map_or(0.0, |s| s.rss as f64 / MB),
                curve.samples.last().map_or(0.0, |s| s.rss as f64 / MB)
            ),
        }),
    });
    rows
}

/// One row.
#[derive(Debug, Clone)]
pub struct Row {
    /// What is measured.
    pub what: String,
    /// The measurement, with its unit (`None`: not measured, see `note`).
    pub value: Option<Quantity>,
    /// What it is compared with, and that measurement.
    pub baseline: Option<(String, Option<Quantity>)>,
    /// The target, in words.
    pub target: String,
    /// How the target is checked.
    pub check: Check,
    /// Why a value is missing, or anything else to know.
    pub note: Option<String>,
}

/// A number and its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    /// The number.
    pub value: f64,
    /// Its unit (`req/s`, `ms`, `MB/s`, `MB`, …).
    pub unit: &'static str,
}

/// Shorthand for a [`Quantity`].
pub fn q(value: f64, unit: &'static str) -> Quantity {
    Quantity { value, unit }
}

/// How a row's target is decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// value / baseline ≥ this.
    RatioAtLeast(f64),
    /// value / baseline ≤ this.
    RatioAtMost(f64),
    /// value ≥ this (and the ratio is shown for information).
    AtLeast(f64),
    /// value ≤ this.
    AtMost(f64),
    /// Decided elsewhere (the soak), or only informative.
    Given(Option<bool>),
}

impl Row {
    /// value / baseline, when both were measured.
    pub fn ratio(&self) -> Option<f64> {
        let value = self.value?.value;
        let baseline = self.baseline.as_ref()?.1?.value;
        (baseline > 0.0).then(|| value / baseline)
    }

    /// Whether the target is met (`None`: not measured).
    pub fn met(&self) -> Option<bool> {
        match self.check {
            Check::RatioAtLeast(t) => self.ratio().map(|r| r >= t),
            Check::RatioAtMost(t) => self.ratio().map(|r| r <= t),
            Check::AtLeast(t) => self.value.map(|v| v.value >= t),
            Check::AtMost(t) => self.value.map(|v| v.value <= t),
            Check::Given(met) => met,
        }
    }
}

/// The rows as a table.
pub fn table(rows: &[Row]) -> String {
    titled_table(
        "issue 13: performance at the limits (ratios within this run)",
        rows,
    )
}

/// The rows as a table under `title` (the feed phase's rows use it too).
pub fn titled_table(title: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "{:<44} {:>16} {:<46} {:>8}  {:<24} met",
        "row", "measured", "baseline (same run)", "ratio", "target"
    );
    for row in rows {
        let baseline = match &row.baseline {
            Some((name, Some(b))) => format!("{} {name}", fmt(b)),
            Some((name, None)) => format!("- {name}"),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<44} {:>16} {:<46} {:>8}  {:<24} {}",
            row.what,
            row.value.as_ref().map_or_else(|| "-".into(), fmt),
            baseline,
            row.ratio()
                .map_or_else(|| "-".into(), |r| format!("{r:.3}x")),
            row.target,
            match row.met() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "?",
            }
        );
        if let Some(note) = &row.note {
            let _ = writeln!(out, "    ({note})");
        }
    }
    out
}

/// The rows as JSON values.
pub fn json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|row| {
                json!({
                    "row": row.what,
                    "value": row.value.map(|v| v.value),
                    "unit": row.value.map(|v| v.unit),
                    "baseline": row.baseline.as_ref().map(|(name, b)| json!({
                        "what": name,
                        "value": b.map(|b| b.value),
                        "unit": b.map(|b| b.unit),
                    })),
                    "ratio": row.ratio(),
                    "target": row.target,
                    "met": row.met(),
                    "note": row.note,
                })
            })
            .collect(),
    )
}

fn fmt(q: &Quantity) -> String {
    let digits = if q.value.abs() >= 100.0 {
        0
    } else if q.value.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{:.*} {}", digits, q.value, q.unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(value: Option<f64>, baseline: Option<f64>, check: Check) -> Row {
        Row {
            what: "x".into(),
            value: value.map(|v| q(v, "req/s")),
            baseline: Some(("base".into(), baseline.map(|b| q(b, "req/s")))),
            target: "t".into(),
            check,
            note: None,
        }
    }

    #[test]
    fn targets_are_decided_from_value_and_baseline() {
        assert_eq!(
            row(Some(150.0), Some(100.0), Check::RatioAtLeast(1.5)).met(),
            Some(true)
        );
        assert_eq!(
            row(Some(149.0), Some(100.0), Check::RatioAtLeast(1.5)).met(),
            Some(false)
        );
        assert_eq!(row(Some(149.0), None, Check::RatioAtLeast(1.5)).met(), None);
        assert_eq!(
            row(Some(3.0), Some(2.0), Check::RatioAtMost(1.5)).met(),
            Some(true)
        );
        assert_eq!(
            row(Some(4.0), Some(2.0), Check::RatioAtMost(1.5)).met(),
            Some(false)
        );
        assert_eq!(
            row(Some(60.0), Some(1.0), Check::AtLeast(65.0)).met(),
            Some(false)
        );
        assert_eq!(row(Some(4.9), None, Check::AtMost(5.0)).met(), Some(true));
        assert_eq!(row(None, None, Check::AtMost(5.0)).met(), None);
        let rows = [row(Some(2.0), Some(4.0), Check::RatioAtLeast(0.4))];
        assert!(table(&rows).contains("0.500x"));
        assert_eq!(json(&rows)[0]["ratio"], json!(0.5));
        assert_eq!(json(&rows)[0]["met"], json!(true));
    }
}
