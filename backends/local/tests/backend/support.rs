//! Builds real, sealed blocks and revisions for the tests.

use adledger_engine::block::{self, EncodedBlock};
use adledger_engine::merkle::Frontier;
use adledger_engine::ports::{AdHead, AppendBatch, HeadUpdate, RevisionRef};
use adledger_engine::revision::{EventKind, RevisionBody, RevisionMetadata};
use adledger_engine::{Ad, AdKey, Hash, Revision};
use chrono::{DateTime, TimeZone, Utc};

/// 2020-09-13T12:26:40Z, the base of every test time.
const BASE_MS: i64 = 1_600_000_000_000;

pub fn time(offset_ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(BASE_MS + offset_ms as i64)
        .single()
        .expect("a valid time")
}

/// A ULID created `n` ms after the base time: later `n`, newer ad.
pub fn ad_id(n: u64) -> String {
    ulid::Ulid::from_parts(BASE_MS as u64 + n, u128::from(n) + 1).to_string()
}

pub fn ad(publisher_id: &str, n: u64, title: &str) -> Ad {
    Ad {
        ad_id: ad_id(n),
        publisher_id: publisher_id.to_string(),
        ad_title: title.to_string(),
        ad_description: String::new(),
        price: None,
        currency: String::new(),
        category: String::new(),
        tags: Vec::new(),
    }
}

/// One change to an ad: its new state (`None`: deleted) at `version`.
pub fn change(key: &AdKey, version: u64, data: Option<Ad>) -> RevisionBody {
    let event = match (&data, version) {
        (None, _) => EventKind::AdDeleted,
        (Some(_), 0) => EventKind::AdCreated,
        (Some(_), _) => EventKind::AdUpdated,
    };
    RevisionBody {
        data,
        metadata: RevisionMetadata {
            id: key.ad_id.clone(),
            publisher_id: key.publisher_id.clone(),
            version,
            tx_id: String::new(),
            tx_time: time(0),
            actor: None,
        },
        event,
    }
}

pub fn created(ad: &Ad) -> RevisionBody {
    change(&ad.key(), 0, Some(ad.clone()))
}

/// A journal being written: hash chain, Merkle frontier and ad heads, like the engine's
/// committer keeps them.
pub struct Chain {
    previous: Hash,
    next: u64,
    frontier: Frontier,
    heads: std::collections::HashMap<AdKey, u64>,
}

impl Chain {
    pub fn new() -> Chain {
        Chain {
            previous: Hash::ZERO,
            next: 0,
            frontier: Frontier::new(),
            heads: Default::default(),
        }
    }

    /// The journal's last sequence number, as the next batch expects it.
    pub fn last(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    /// Seals one block per entry of `blocks` and builds the batch appending them.
    pub fn batch(&mut self, blocks: Vec<Vec<RevisionBody>>) -> (AppendBatch, Vec<Revision>) {
        let mut batch = AppendBatch {
            expected_last: self.last(),
            ..AppendBatch::default()
        };
        let mut revisions = Vec::new();
        let mut heads: Vec<HeadUpdate> = Vec::new();
        for mut bodies in blocks {
            let sequence = self.next;
            let tx_id = format!("tx{sequence}");
            for body in &mut bodies {
                body.metadata.tx_id.clone_from(&tx_id);
                body.metadata.tx_time = time(sequence);
            }
            let (sealed, encoded): (block::Block, EncodedBlock) =
                block::seal(sequence, &tx_id, time(sequence), self.previous, bodies).expect("seal");
            self.previous = sealed.hash;
            self.next += 1;
            batch.merkle_nodes.extend(self.frontier.push(&sealed.hash));
            for revision in &sealed.revisions {
                let key = revision.key();
                let new_head = AdHead {
                    version: revision.version(),
                    sequence,
                    deleted: revision.body.data.is_none(),
                };
                match heads.iter_mut().find(|h| h.key == key) {
                    Some(update) => update.new_head = new_head,
                    None => heads.push(HeadUpdate {
                        key: key.clone(),
                        expected_version: self.heads.get(&key).copied(),
                        new_head,
                    }),
                }
                batch.revisions.push(RevisionRef {
                    key,
                    version: revision.version(),
                    sequence,
                });
            }
            revisions.extend(sealed.revisions);
            batch.blocks.push(encoded);
        }
        for update in &heads {
            self.heads
                .insert(update.key.clone(), update.new_head.version);
        }
        batch.heads = heads;
        (batch, revisions)
    }
}
