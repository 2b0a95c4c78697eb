//! The command line (clap derive).

use std::path::PathBuf;

use clap::Parser;

/// Load generator for adledger: starts the server (or drives a running one on this
/// machine) and measures throughput and latency per phase.
#[derive(Debug, Parser)]
#[command(
    name = "adledger-bench",
    version,
    about,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// The adledger server binary to start [default: `adledger` beside this executable]
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    pub server_bin: Option<PathBuf>,

    /// Data directory for the started server [default: a fresh temporary directory,
    /// removed afterwards]. An existing directory's ads are kept and add to the index.
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    pub data_dir: Option<PathBuf>,

    /// Drive an already running server instead of starting one: http://127.0.0.1:PORT.
    /// Only loopback addresses (127.0.0.0/8, [::1], localhost) are accepted.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Concurrent client tasks (they share one connection pool of this size)
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub clients: u64,

    /// `GET /healthz` requests of the baseline phase [default: the same as --gets]
    #[arg(long, value_name = "N")]
    pub healthz: Option<u64>,

    /// Ads created (and measured) in the creates phase
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub creates: u64,

    /// Gets by id, over the created ads in random order
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub gets: u64,

    /// Searches, run after the preload
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    pub searches: u64,

    /// Extra ads created before the searches so they run against a realistic index
    /// size (e.g. 100000); reported as their own phase
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preload: u64,

    /// Ads in the search index before the searches: the creates plus a preload of the
    /// rest (e.g. --ads 1000000 for the search rows of issue 13); instead of --preload
    #[arg(long, value_name = "N", conflicts_with = "preload")]
    pub ads: Option<u64>,

    /// With --ads: load the ads beyond the creates before the server starts, by
    /// `adledger import` of a generated export (the workload's ads, one create per block)
    /// into the fresh data directory, then wait until both projections have applied it.
    /// Minutes for a million ads instead of half an hour of HTTP creates; neither the
    /// import nor the catch-up is measured
    #[arg(long, requires = "ads", conflicts_with = "url")]
    pub ads_by_import: bool,

    /// Requests of each of the `search` (GET /search?q=WORD) and `root-q` (GET /?q=WORD)
    /// phases, at --clients clients
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    pub word_searches: u64,

    /// Requests of each one-client phase (`healthz-1`, `search-1`, `root-q-1`)
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub single_client: u64,

    /// Skip the PostgreSQL peer of the creates (its row then says so)
    #[arg(long)]
    pub no_postgres: bool,

    /// Directory of the PostgreSQL programs (initdb, pg_ctl, psql, pgbench)
    /// [default: the newest /usr/lib/postgresql/N/bin, else PATH]
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,

    /// Skip the bulk rows (export, verify, import, rebuild, disk) after the server stops
    #[arg(long)]
    pub no_bulk: bool,

    /// After the phases, run the default mix for SECS seconds, sampling the server's RSS
    /// after every slice of 4,200 requests, and print the curve
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub soak: u64,

    /// Safety cap on each phase's duration, in seconds; a phase stopped by it fails
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration_limit: u64,

    /// Worker threads of the bench's own runtime; keep it low, the server shares the
    /// machine's cores
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub client_threads: u64,

    /// Seed of the generated ads and searches (the same seed, the same workload)
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    pub seed: u64,

    /// Before the gets, wait (unmeasured, at most --duration-limit) until the server's
    /// state projection has applied every block (`/healthz`: `projections.state` reaches
    /// `journal.blocks`), so the gets measure the read path rather than a read-your-writes
    /// wait behind a projection backlog; the wait is reported as a note
    #[arg(long)]
    pub settle: bool,

    /// After everything else, the feed phase (issue 12) on servers of its own: creates/s
    /// with 0 and 3 webhook sinks, one sink's rate unbatched and batched, commit → SSE
    /// latency, and the catch-up of --feed-events events by pull and by SSE
    #[arg(long)]
    pub feed: bool,

    /// Only the feed phase: no other phase, no PostgreSQL peer, no bulk rows
    #[arg(long)]
    pub feed_only: bool,

    /// Which part of the feed phase runs: `live` (sink and SSE latency rows),
    /// `catch-up` (the catch-up rows) or `all`
    #[arg(long, value_name = "PART", default_value = "all",
          value_parser = ["all", "live", "catch-up"])]
    pub feed_part: String,

    /// Blocks of the generated journal the catch-up rows read (one event each, plus a
    /// digest event every 100)
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub feed_events: u64,

    /// SSE clients of the latency rows
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=2000))]
    pub feed_sse_clients: u64,

    /// Commits per second while the latency is measured
    #[arg(long, value_name = "N", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub feed_rate: u64,

    /// Seconds of commits while the latency is measured
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub feed_secs: u64,

    /// Creates of each of the three runs of the sink-cost row (0, 3, 0 sinks), at
    /// --clients clients
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub feed_creates: u64,

    /// Events one sink delivers for each webhook rate row (at most 3 × --feed-creates)
    #[arg(long, value_name = "N", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub feed_webhook_events: u64,

    /// batchSize of the three sinks of the sink-cost row
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub feed_sinks_batch: u32,

    /// Print the results as one JSON object on stdout instead of a table
    #[arg(long)]
    pub json: bool,

    /// Seconds to wait for the started server to announce its address
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub startup_timeout: u64,

    /// Seconds to wait for the started server to exit after SIGTERM
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub shutdown_timeout: u64,
}

const LONG_ABOUT: &str = "\
Load generator for adledger: starts the server (or drives a running one on this machine) \
and measures throughput and latency per phase.

By default it starts `adledger serve --listen 127.0.0.1:0 --backend local` on a fresh \
temporary data directory (ADLEDGER_* variables are not passed on), reads the port from \
its `adledger listening on http://ADDR` line, runs the phases, then stops it with SIGTERM \
and requires exit code 0. Build both first:

    cargo build --release -p adledger -p adledger-bench
    target/release/adledger-bench

Phases, each with --clients concurrent tasks sharing one keep-alive connection pool \
(first, 4 x --clients unmeasured GET /healthz open its connections):

  healthz   GET /healthz (--healthz, default --gets): the baseline
  creates   POST /publisher/{p}/ad with varied ads (decimal prices, 0-5 tags), keeping
            the returned adIds
  gets      GET /publisher/{p}/ad/{adId} over the created ads in random order
  preload   (--preload N > 0) more creates, to grow the search index
  searches  GET /search?q=WORD&limit=20, a quarter with category, a quarter with minPrice
  search    GET /search?q=WORD (--word-searches)
  root-q    GET /?q=WORD, the seed's search (--word-searches)
  healthz-1, search-1, root-q-1
            the same with one client (--single-client)

Right after the creates, the PostgreSQL peer: a private cluster (initdb in a temporary \
directory, unix socket only, fsync and synchronous_commit on) where pgbench makes as many \
durable appends with --clients clients (--no-postgres skips it). After the server stops: \
the bulk rows, `adledger export`, `verify`, `import` and `rebuild` on the ledger the \
bench made, timed with their peak RSS, next to their baselines (export; reading and \
SHA-256-hashing the same bytes; tantivy alone indexing the same ads). The last table is \
the rows of issue 13, each with its baseline, ratio and target.

With --url, the server is neither started nor stopped, and its existing ads stay in \
the index. Every response is checked: a non-2xx status, a transport error or an unusable body is \
an error, counted by kind and sampled on stderr.";

const AFTER_LONG_HELP: &str = "\
Output: per phase, requests answered, errors, elapsed seconds, throughput (req/s), p50, \
p99 and max latency of the successful requests (from sending to the last body byte), and \
throughput relative to the /healthz baseline of the same run. The machine is shared and \
noisy: compare those ratios between runs, not raw req/s. --json prints the same as one \
JSON object.

The server logs one line per request at its default RUST_LOG (info) to a scratch file; \
set RUST_LOG=warn to measure without that cost.

Exit status: 0 when every phase ran all its requests without error and the started \
server exited 0 after SIGTERM; 1 otherwise (the results are still printed).";

impl Cli {
    /// Requests of the baseline phase.
    pub fn healthz_requests(&self) -> u64 {
        self.healthz.unwrap_or(self.gets)
    }

    /// Ads created before the searches only to grow the index.
    pub fn preload_requests(&self) -> u64 {
        match self.ads {
            Some(_) if self.ads_by_import => 0,
            Some(ads) => ads.saturating_sub(self.creates),
            None => self.preload,
        }
    }

    /// Ads imported before the server starts (`--ads-by-import`).
    pub fn imported_ads(&self) -> u64 {
        match self.ads {
            Some(ads) if self.ads_by_import => ads.saturating_sub(self.creates),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["adledger-bench"]).expect("defaults");
        assert_eq!(cli.clients, 64);
        assert_eq!(cli.creates, 20_000);
        assert_eq!(cli.gets, 20_000);
        assert_eq!(cli.searches, 2_000);
        assert_eq!(cli.preload, 0);
        assert_eq!(cli.duration_limit, 300);
        assert_eq!(cli.healthz_requests(), 20_000);
        assert_eq!(cli.preload_requests(), 0);
        assert_eq!(cli.soak, 0);
        assert!(!cli.json);
        let big = Cli::try_parse_from(["adledger-bench", "--ads", "1000000"]).expect("ads");
        assert_eq!(big.preload_requests(), 980_000);
        assert!(Cli::try_parse_from(["adledger-bench", "--ads", "5", "--preload", "5"]).is_err());
    }

    #[test]
    fn url_excludes_starting_a_server() {
        assert!(
            Cli::try_parse_from([
                "adledger-bench",
                "--url",
                "http://127.0.0.1:1",
                "--server-bin",
                "x"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["adledger-bench", "--clients", "0"]).is_err());
    }
}
