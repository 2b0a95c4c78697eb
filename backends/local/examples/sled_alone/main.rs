//! sled alone, doing what adledger's bulk commands make sled do, with nothing else: the
//! measurements behind issue 13's bulk rows (`bench/README.md`, "Bulk commands").
//!
//! Each mode works on a data directory an `adledger` server, `import` or `rebuild` left
//! (the server must not be running) and prints wall time, CPU time and peak RSS:
//!
//! - `write` ([`write`]): what an import writes, the journal's records in its batches.
//! - `read` ([`read`]): what `adledger verify` reads, the blocks and Merkle nodes, in
//!   verify's batches and as plain range scans.
//! - `state` ([`state`]): what a rebuild writes into the state store, in its chunks,
//!   beside the search index's `put` of the same states.
//!
//! ```sh
//! cargo build --release -p adledger-local --example sled_alone
//! target/release/examples/sled_alone write DATA_DIR [--batch 256] [--cache MB]
//! target/release/examples/sled_alone read DATA_DIR [--batch 4096] [--hash] [--rounds N]
//! target/release/examples/sled_alone state DATA_DIR [--states N] [--chunk N] [--cache MB]
//!     [--only STEP]
//! ```
//!
//! (`sled_alone DATA_DIR …` without a mode is `write`, as before the other modes.)

mod meter;
mod read;
mod state;
mod write;

/// The journal's and state store's sled page cache (`SLED_CACHE_BYTES`), in MB.
const CACHE_MB: u64 = 128;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        Some("write" | "read" | "state") => args.remove(0),
        _ => "write".to_string(),
    };
    if args.is_empty() {
        return Err(
            "usage: sled_alone [write|read|state] DATA_DIR [options] (see the source's docs)"
                .into(),
        );
    }
    let data_dir = std::path::PathBuf::from(args.remove(0));
    let mut flags = Flags::default();
    let mut rest = args.into_iter();
    while let Some(flag) = rest.next() {
        let mut number = || -> Result<u64, Box<dyn std::error::Error>> {
            Ok(rest
                .next()
                .ok_or(format!("{flag} needs a number"))?
                .parse()?)
        };
        match flag.as_str() {
            "--batch" => flags.batch = Some(number()?),
            "--cache" => flags.cache_mb = number()?,
            "--states" => flags.states = Some(number()?),
            "--chunk" => flags.chunk = Some(number()?),
            "--rounds" => flags.rounds = number()?,
            "--hash" => flags.hash = true,
            "--only" => flags.only = Some(rest.next().ok_or("--only needs a step")?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    match mode.as_str() {
        "read" => read::run(&data_dir, &flags),
        "state" => state::run(&data_dir, &flags),
        _ => write::run(&data_dir, &flags),
    }
}

/// The options of every mode (each reads the ones it understands).
#[derive(Debug)]
pub struct Flags {
    /// Blocks per batch (`write`: an import's append, 256; `read`: verify's read, 4096).
    pub batch: Option<u64>,
    /// sled's page cache, MB.
    pub cache_mb: u64,
    /// States per rebuild batch (`state`).
    pub states: Option<u64>,
    /// States per sled batch of the `sled` step of `state` (the store's 2,048).
    pub chunk: Option<u64>,
    /// Times each measurement is repeated (`read`).
    pub rounds: u64,
    /// Also SHA-256-hash every block read (`read`), on this one thread.
    pub hash: bool,
    /// Runs only this step (`state`: `sled`, `store`, `search` or `both`), so that its
    /// peak RSS is not another's memory that the allocator kept.
    pub only: Option<String>,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            batch: None,
            cache_mb: CACHE_MB,
            states: None,
            chunk: None,
            rounds: 1,
            hash: false,
            only: None,
        }
    }
}

impl Flags {
    /// sled's configuration as the journal and the state store open it.
    pub fn sled(&self, path: &std::path::Path) -> sled::Config {
        sled::Config::new()
            .path(path)
            .cache_capacity(self.cache_mb * 1024 * 1024)
    }
}
