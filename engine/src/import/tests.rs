//! Pass 2's checks of each revision against its ad's head, with the heads in memory and
//! with heads the import had dropped (module `heads`): the same refusals either way.

use chrono::{TimeZone, Utc};
use futures::FutureExt;

use super::*;
use crate::ad::{Ad, AdKey};
use crate::block;
use crate::export::export;
use crate::memory::MemoryJournal;
use crate::ports::AppendBatch;
use crate::revision::{RevisionBody, RevisionMetadata};
use crate::time::TimeRange;

/// One revision: ad, version, event.
type Step = (u64, u64, EventKind);

fn body(sequence: u64, (ad, version, event): Step) -> RevisionBody {
    let id = format!("ad-{ad}");
    RevisionBody {
        data: (event != EventKind::AdDeleted).then(|| Ad {
            ad_id: id.clone(),
            publisher_id: "acme".into(),
            ad_title: format!("Title {ad} v{version}"),
            ad_description: String::new(),
            price: None,
            currency: "EUR".into(),
            category: "bikes".into(),
            tags: Vec::new(),
        }),
        metadata: RevisionMetadata {
            id,
            publisher_id: "acme".into(),
            version,
            tx_id: format!("tx-{sequence:06}"),
            tx_time: Utc
                .timestamp_millis_opt(1_700_000_000_000 + sequence as i64 * 1_000)
                .single()
                .expect("valid time"),
            actor: None,
        },
        event,
    }
}

/// A journal of one block per step (sealed, with its Merkle nodes; no heads: the export
/// does not read them), exported to a file in `dir`.
fn exported(steps: &[Step], dir: &Path) -> std::path::PathBuf {
    let mut frontier = Frontier::new();
    let mut previous = Hash::ZERO;
    let (mut blocks, mut merkle_nodes) = (Vec::new(), Vec::new());
    for (sequence, step) in (0u64..).zip(steps) {
        let tx_id = format!("tx-{sequence:06}");
        let tx_time = body(sequence, *step).metadata.tx_time;
        let (sealed, encoded) = block::seal(
            sequence,
            &tx_id,
            tx_time,
            previous,
            vec![body(sequence, *step)],
        )
        .expect("seals");
        previous = sealed.hash;
        merkle_nodes.extend(frontier.push(&sealed.hash));
        blocks.push(encoded);
    }
    let journal = MemoryJournal::new();
    journal
        .append(AppendBatch {
            blocks,
            merkle_nodes,
            expected_last: None,
            ..Default::default()
        })
        .now_or_never()
        .expect("the in-memory journal never waits")
        .expect("appends");
    let path = dir.join("ledger.ion");
    let mut file = std::fs::File::create(&path).expect("create");
    export(
        &journal,
        TimeRange::default(),
        ExportFormat::Ion,
        &mut file,
        &mut |_, _| {},
    )
    .now_or_never()
    .expect("the in-memory journal never waits")
    .expect("exports");
    path
}

/// Imports `path` into a new journal keeping about `heads_kept` heads, two blocks per
/// batch.
fn import_keeping(path: &Path, heads_kept: usize) -> (MemoryJournal, Result<ExportSummary>) {
    let journal = MemoryJournal::new();
    let options = ImportOptions {
        batch_blocks: 2,
        heads_kept,
        ..ImportOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let result = runtime.block_on(import(&journal, path, &options, &mut |_| {}));
    (journal, result)
}

/// Ads 0..20 created, one per block, ad 3 deleted, the others updated, then ads 10..20
/// updated again: the revisions the tests add after it concern ads last touched about 30
/// blocks earlier, whose heads an import keeping a few has dropped by then (at most
/// four batches of two blocks are in flight).
fn history() -> Vec<Step> {
    let mut steps: Vec<Step> = (0..20).map(|ad| (ad, 0, EventKind::AdCreated)).collect();
    steps.push((3, 1, EventKind::AdDeleted));
    steps.extend(
        (0..20)
            .filter(|&ad| ad != 3)
            .map(|ad| (ad, 1, EventKind::AdUpdated)),
    );
    steps.extend((10..20).map(|ad| (ad, 2, EventKind::AdUpdated)));
    steps
}

#[test]
fn a_bounded_head_map_imports_the_same_heads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = exported(&history(), dir.path());
    let (all, summary) = import_keeping(&path, DEFAULT_HEADS_KEPT);
    let all_summary = summary.expect("imports");
    for kept in [1, 3, 8] {
        let (bounded, summary) = import_keeping(&path, kept);
        assert_eq!(summary.expect("imports"), all_summary, "kept {kept}");
        for ad in 0..20 {
            let key = AdKey::new("acme", format!("ad-{ad}"));
            let head = |j: &MemoryJournal| j.ad_head(&key).now_or_never().expect("ready");
            let expected = head(&all).expect("head");
            assert!(expected.is_some(), "ad {ad} imported");
            assert_eq!(
                head(&bounded).expect("head"),
                expected,
                "kept {kept}, ad {ad}"
            );
        }
    }
}

/// Each history that must be refused, with the block and the words of its refusal.
fn refused() -> Vec<(Vec<Step>, u64, &'static str)> {
    let with = |extra: &[Step]| {
        let mut steps = history();
        steps.extend_from_slice(extra);
        steps
    };
    let at = history().len() as u64;
    vec![
        (
            with(&[(3, 3, EventKind::AdUpdated)]),
            at,
            "ad ad-3 has a revision after its delete",
        ),
        (
            with(&[(0, 0, EventKind::AdCreated)]),
            at,
            "ad ad-0 jumps to version 0, version 2 comes next",
        ),
        (
            with(&[(1, 5, EventKind::AdUpdated)]),
            at,
            "ad ad-1 jumps to version 5, version 2 comes next",
        ),
        (
            with(&[(99, 4, EventKind::AdUpdated)]),
            at,
            "ad ad-99 jumps to version 4, version 0 comes next",
        ),
        // A failure the reader finds (an update that says it creates) after one only
        // the journal can find: the earlier one is reported.
        (
            with(&[(3, 3, EventKind::AdUpdated), (5, 0, EventKind::AdUpdated)]),
            at,
            "after its delete",
        ),
        // Two forgotten ads in one batch, the create first: the journal's refusal of
        // the batch is explained by the create.
        (
            with(&[(0, 0, EventKind::AdCreated), (1, 2, EventKind::AdUpdated)]),
            at,
            "ad ad-0 jumps to version 0",
        ),
        // ... and the other way round: the update is checked before the append, the
        // create after it is not reached.
        (
            with(&[(1, 5, EventKind::AdUpdated), (0, 0, EventKind::AdCreated)]),
            at,
            "ad ad-1 jumps to version 5",
        ),
    ]
}

#[test]
fn a_revision_that_does_not_continue_its_head_is_refused_whether_kept_or_not() {
    for (steps, sequence, words) in refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = exported(&steps, dir.path());
        for kept in [DEFAULT_HEADS_KEPT, 1, 4] {
            let (_, result) = import_keeping(&path, kept);
            match result {
                Err(Error::ChainBroken {
                    sequence: at,
                    detail,
                }) => {
                    assert_eq!(at, sequence, "kept {kept}: {detail}");
                    assert!(detail.contains(words), "kept {kept}: {detail}");
                }
                other => panic!("kept {kept}: expected a refusal at {sequence}, got {other:?}"),
            }
        }
    }
}
