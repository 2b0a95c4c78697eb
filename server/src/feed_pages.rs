//! Reading pages of the ledger feed, for the feed routes and the shared live tail alike:
//! the ledger's `source` (from block 0, which never changes) is read once and kept.

use std::sync::OnceLock;

use adledger_engine::feed::{
    FeedFilter, FeedOptions, FeedPage, Position, ledger_source, read_page,
};
use adledger_engine::{Ledger, Result};

/// One page of `ledger`'s feed after `after`, or an empty one at the tip of an empty
/// journal; `source` keeps the ledger's source once known.
pub async fn read(
    ledger: &Ledger,
    source: &OnceLock<String>,
    options: &FeedOptions,
    filter: &FeedFilter,
    after: Position,
    limit: usize,
    tip: u64,
) -> Result<FeedPage> {
    let journal = ledger.ports().journal.as_ref();
    let known = match (source.get(), tip) {
        (Some(known), _) => Some(known.clone()),
        (None, 0) => None,
        (None, _) => {
            let found = ledger_source(journal).await?;
            if let Some(found) = &found {
                let _ = source.set(found.clone());
            }
            found
        }
    };
    match known {
        Some(known) => read_page(journal, &known, options, filter, after, limit, tip).await,
        None => Ok(FeedPage {
            events: Vec::new(),
            next: after,
            tip,
        }),
    }
}
