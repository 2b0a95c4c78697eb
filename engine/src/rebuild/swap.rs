//! The swap of a shadow rebuild: the live read models take the content of a state store
//! rebuilt beside them (`adledger rebuild --shadow --swap`).
//!
//! Only the shadow *state store* is read: it holds every ad's last state, which is all
//! that both read models are made of ([`StateStore::put`], [`SearchIndex::put`]), so the
//! live search index is rebuilt from it without reading the shadow index.

use crate::ad::AdKey;
use crate::error::Result;
use crate::ports::{SearchIndex, StateStore};

use super::clear_read_models;

/// States per page read from the shadow state store and written to the live read models:
/// the memory one page takes, against one write (one search commit) per page.
const PAGE: usize = 4096;

/// Replaces the content of the live read models (`state`, `search`) with the content of
/// the state store `from` (a shadow rebuild's), checkpoint included.
///
/// It clears them, copies `from` page by page, and writes `from`'s checkpoint with the
/// last page only: until the copy is complete the live read models say checkpoint 0, so
/// an interrupted copy (a crash, Ctrl-C) never passes for a finished one, and running
/// the copy again finishes it. The ledger must be stopped meanwhile: a running
/// projection would write into the read models being replaced.
pub async fn copy_read_models(
    from: &dyn StateStore,
    state: &dyn StateStore,
    search: &dyn SearchIndex,
) -> Result<()> {
    copy_in_pages(from, state, search, PAGE).await
}

/// [`copy_read_models`] with a chosen page size (tests cross page boundaries with small
/// ones).
async fn copy_in_pages(
    from: &dyn StateStore,
    state: &dyn StateStore,
    search: &dyn SearchIndex,
    page_size: usize,
) -> Result<()> {
    let page_size = page_size.max(1);
    let checkpoint = from.checkpoint().await?;
    clear_read_models(state, search).await?;
    let mut after: Option<AdKey> = None;
    loop {
        let page = from.scan(after.as_ref(), page_size).await?;
        let last = page.len() < page_size;
        let at = last.then_some(checkpoint);
        let (s, i) = tokio::join!(state.put(&page, at), search.put(&page, at));
        s.and(i)?;
        match page.last() {
            Some(entry) if !last => after = Some(entry.key.clone()),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::ad::Ad;
    use crate::memory::MemoryBackend;
    use crate::ports::{AdState, SearchQuery};

    fn state(publisher: &str, i: u64, title: &str) -> AdState {
        let ad_id = format!("ad-{i:03}");
        AdState {
            key: AdKey::new(publisher, &ad_id),
            version: i,
            sequence: i,
            updated_at: Utc
                .timestamp_millis_opt(1_700_000_000_000)
                .single()
                .expect("valid time"),
            ad: Some(Ad {
                ad_id,
                publisher_id: publisher.into(),
                ad_title: title.into(),
                ad_description: "A bicycle in good condition.".into(),
                price: None,
                currency: "EUR".into(),
                category: "bikes".into(),
                tags: Vec::new(),
            }),
        }
    }

    fn everything(text: &str) -> SearchQuery {
        SearchQuery {
            text: text.into(),
            limit: 100,
            ..SearchQuery::default()
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn the_live_read_models_take_the_shadow_content_and_checkpoint() {
        block_on(async {
            let shadow = MemoryBackend::new();
            let shadow_states: Vec<AdState> = (0..7)
                .map(|i| state("acme", i, "Rebuilt bicycle"))
                .collect();
            shadow
                .state
                .put(&shadow_states, Some(42))
                .await
                .expect("put");
            let live = MemoryBackend::new();
            // Stale content: one ad the shadow lacks, one it holds differently.
            let stale = vec![
                state("acme", 3, "Stale bicycle"),
                state("other", 99, "Stale bicycle"),
            ];
            live.state.put(&stale, Some(5)).await.expect("put");
            live.search.put(&stale, Some(5)).await.expect("put");

            // Page sizes below, at and above the shadow's size, and one dividing it.
            for page_size in [1, 2, 7, 8, PAGE] {
                copy_in_pages(
                    shadow.state.as_ref(),
                    live.state.as_ref(),
                    live.search.as_ref(),
                    page_size,
                )
                .await
                .expect("copies");
                let copied = live.state.scan(None, 100).await.expect("scan");
                assert_eq!(copied, shadow_states, "page size {page_size}");
                assert_eq!(live.state.checkpoint().await.expect("checkpoint"), 42);
                assert_eq!(live.search.checkpoint().await.expect("checkpoint"), 42);
                let found = live
                    .search
                    .search(&everything("bicycle"))
                    .await
                    .expect("search");
                assert_eq!(found.total, 7, "page size {page_size}");
                assert!(found.ads.iter().all(|ad| ad.ad_title == "Rebuilt bicycle"));
                let stale = live
                    .search
                    .search(&everything("stale"))
                    .await
                    .expect("search");
                assert_eq!(stale.total, 0, "page size {page_size}");
            }
        });
    }

    #[test]
    fn an_empty_shadow_empties_the_live_read_models() {
        block_on(async {
            let shadow = MemoryBackend::new();
            let live = MemoryBackend::new();
            let stale = vec![state("acme", 1, "Stale bicycle")];
            live.state.put(&stale, Some(5)).await.expect("put");
            live.search.put(&stale, Some(5)).await.expect("put");
            copy_read_models(
                shadow.state.as_ref(),
                live.state.as_ref(),
                live.search.as_ref(),
            )
            .await
            .expect("copies");
            assert!(live.state.scan(None, 10).await.expect("scan").is_empty());
            assert_eq!(live.state.checkpoint().await.expect("checkpoint"), 0);
            let found = live.search.search(&everything("")).await.expect("search");
            assert_eq!(found.total, 0);
        });
    }
}
