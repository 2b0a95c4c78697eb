//! The journal must still reach what its read models have seen
//! ([`crate::high_water`]): a journal behind them has lost acknowledged blocks, and a
//! ledger over it neither starts nor appends.

use super::{Harness, RunAsTester, draft};
use crate::command::Command;
use crate::error::Error;
use crate::high_water::{check_ports, read_model_marks};

/// Three blocks committed, then the state checkpoint (and, separately, the search
/// checkpoint) set past the journal's tip, as a journal cut back to an older length
/// leaves them: `Ledger::open` fails with `JournalBehind` naming both lengths, nothing is
/// appended, and the ledger opens again once the journal reaches the checkpoints.
pub async fn ledger_refuses_a_journal_behind_its_read_models<H: Harness>(h: &H) {
    let place = h.place().await.expect("place");
    {
        let stores = h.open(&place).await.expect("open");
        let ledger = stores.ledger(31).await.expect("ledger");
        for i in 0..3 {
            ledger
                .run(Command::CreateAd {
                    publisher_id: "acme".into(),
                    draft: draft(&format!("Ad {i}"), None, "misc", &[]),
                    idempotency_key: None,
                })
                .await
                .expect("create");
        }
        let (state, search) = ledger.projected();
        assert!(state <= 3 && search <= 3, "checkpoints past the journal");
        ledger.shutdown().await;
    }
    let stores = h.open(&place).await.expect("reopen");
    let ports = stores.deterministic_ports(32);
    assert_eq!(check_ports(&ports).await.expect("a whole journal"), 3);

    stores
        .state
        .put(&[], Some(5))
        .await
        .expect("state checkpoint");
    let err = stores
        .ledger(33)
        .await
        .expect_err("a journal behind the state");
    assert!(
        matches!(err, Error::JournalBehind { blocks: 3, seen: 5, ref record } if record.contains("state")),
        "{err:?}"
    );
    assert_eq!(
        stores.journal.last_sequence().await.expect("tip"),
        Some(2),
        "nothing appended"
    );
    stores.state.put(&[], Some(3)).await.expect("state back");
    stores
        .search
        .put(&[], Some(4))
        .await
        .expect("search checkpoint");
    let err = stores
        .ledger(34)
        .await
        .expect_err("a journal behind the index");
    assert!(
        matches!(err, Error::JournalBehind { blocks: 3, seen: 4, ref record } if record.contains("search")),
        "{err:?}"
    );
    let marks = read_model_marks(stores.state.as_ref(), stores.search.as_ref())
        .await
        .expect("marks");
    assert_eq!(marks.iter().map(|m| m.blocks).max(), Some(4));

    stores.search.put(&[], Some(3)).await.expect("search back");
    let ledger = stores
        .ledger(35)
        .await
        .expect("a journal that reaches both");
    assert_eq!(ledger.committed(), 3);
    ledger.shutdown().await;
}
