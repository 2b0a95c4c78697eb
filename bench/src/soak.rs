//! `--soak SECS`: the default mix (creates, gets and searches in the proportions of the
//! default phases, 10 : 10 : 1) run for SECS seconds against the started server, its
//! RSS sampled after every slice, so a leak shows as a rising curve.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder};

use crate::operations::{Create, CreatedAd, Get, Search};
use crate::phase::{self, Operation, Plan};
use crate::rss;

/// Requests per slice (a sample is taken after each).
const SLICE_REQUESTS: u64 = 21 * 200;

/// One sample of the curve.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the soak started.
    pub at: f64,
    /// The server's RSS then, bytes.
    pub rss: u64,
    /// Requests per second over the slice that ended here.
    pub throughput: f64,
    /// Failed requests in that slice.
    pub errors: u64,
}

/// The soak's result.
#[derive(Debug, Clone, Default)]
pub struct Curve {
    /// The samples, in order.
    pub samples: Vec<Sample>,
}

impl Curve {
    /// Whether RSS stayed flat: the highest sample of the second half is at most 10 %
    /// above the highest of the first half (warm-up fills caches up to their bounds).
    pub fn flat(&self) -> Option<bool> {
        if self.samples.len() < 4 {
            return None;
        }
        let half = self.samples.len() / 2;
        let peak = |s: &[Sample]| s.iter().map(|s| s.rss).max().unwrap_or(0);
        let first = peak(&self.samples[..half]);
        Some(peak(&self.samples[half..]) as f64 <= first as f64 * 1.10)
    }

    /// The curve, one line per sample.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "soak: server RSS over the default mix\n     secs    RSS MB     req/s  errors\n",
        );
        for s in &self.samples {
            out.push_str(&format!(
                "{:>9.0} {:>9.1} {:>9.1} {:>7}\n",
                s.at,
                s.rss as f64 / 1e6,
                s.throughput,
                s.errors
            ));
        }
        out
    }
}

/// The mix: request `i` is a search when `i % 21 == 20`, a create when even, else a get.
struct Mixed {
    create: Create,
    get: Get,
    search: Search,
}

impl Operation for Mixed {
    type Output = ();

    fn request(&self, client: &Client, index: u64) -> RequestBuilder {
        match index % 21 {
            20 => self.search.request(client, index),
            i if i % 2 == 0 => self.create.request(client, index),
            _ => self.get.request(client, index),
        }
    }

    fn accept(&self, index: u64, body: &[u8]) -> Result<(), String> {
        match index % 21 {
            20 => self.search.accept(index, body),
            i if i % 2 == 0 => self.create.accept(index, body).map(drop),
            _ => self.get.accept(index, body),
        }
    }
}

/// Runs the mix for `duration` against the server at `url` (process `pid`), getting
/// the ads in `ads`; new ads come from a request stream of their own.
pub async fn run(
    url: &str,
    pid: u32,
    seed: u64,
    ads: &[CreatedAd],
    duration: Duration,
    plan: &Plan,
) -> Result<Curve, String> {
    let get = Get::new(url, ads).ok_or("soak: no ads were created to get")?;
    let mixed = Arc::new(Mixed {
        create: Create::soak(url, seed),
        get,
        search: Search::new(url, seed)?,
    });
    let started = Instant::now();
    let mut curve = Curve::default();
    let mut slice = 0u64;
    while started.elapsed() < duration {
        let plan = Plan {
            requests: SLICE_REQUESTS,
            ..plan.clone()
        };
        // Each slice continues the request numbering, so creates never repeat an ad.
        let offset = Arc::new(Offset {
            inner: mixed.clone(),
            offset: slice * SLICE_REQUESTS,
        });
        let (stats, _) = phase::run("soak", offset, &plan).await;
        slice += 1;
        let rss = rss::of(pid).ok_or("soak: the server's /proc status is gone")?;
        curve.samples.push(Sample {
            at: started.elapsed().as_secs_f64(),
            rss: rss.now,
            throughput: stats.throughput(),
            errors: stats.errors,
        });
        crate::progress(&format!(
            "soak: {:.0}s, server RSS {:.1} MB, {:.0} req/s, {} errors",
            started.elapsed().as_secs_f64(),
            rss.now as f64 / 1e6,
            stats.throughput(),
            stats.errors
        ));
    }
    Ok(curve)
}

/// An operation whose request numbers start at `offset`.
struct Offset<O> {
    inner: Arc<O>,
    offset: u64,
}

impl<O: Operation> Operation for Offset<O> {
    type Output = O::Output;

    fn request(&self, client: &Client, index: u64) -> RequestBuilder {
        self.inner.request(client, index + self.offset)
    }

    fn accept(&self, index: u64, body: &[u8]) -> Result<O::Output, String> {
        self.inner.accept(index + self.offset, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(rss: &[u64]) -> Curve {
        Curve {
            samples: rss
                .iter()
                .enumerate()
                .map(|(i, &rss)| Sample {
                    at: i as f64,
                    rss,
                    throughput: 1.0,
                    errors: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn flat_compares_the_halves() {
        assert_eq!(curve(&[100, 120, 118, 121, 119, 122]).flat(), Some(true));
        assert_eq!(curve(&[100, 110, 130, 150, 170, 190]).flat(), Some(false));
        assert_eq!(curve(&[100, 110]).flat(), None);
        assert!(curve(&[100_000_000]).table().contains("100.0"));
    }
}
