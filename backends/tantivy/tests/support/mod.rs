//! Builds real, sealed revisions for the tests.

use adledger_engine::block;
use adledger_engine::revision::{EventKind, RevisionBody, RevisionMetadata};
use adledger_engine::{Ad, AdKey, Hash, Revision};
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;

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

pub fn price(text: &str) -> Option<Decimal> {
    Some(text.parse().expect("a decimal"))
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

/// A journal being written: the hash chain, as the engine's committer keeps it (the
/// index only reads the revisions, so heads and Merkle nodes are not kept).
pub struct Chain {
    previous: Hash,
    next: u64,
}

impl Chain {
    pub fn new() -> Chain {
        Chain {
            previous: Hash::ZERO,
            next: 0,
        }
    }

    /// Seals one block per entry of `blocks` and answers their revisions.
    pub fn batch(&mut self, blocks: Vec<Vec<RevisionBody>>) -> Vec<Revision> {
        let mut revisions = Vec::new();
        for mut bodies in blocks {
            let sequence = self.next;
            let tx_id = format!("tx{sequence}");
            for body in &mut bodies {
                body.metadata.tx_id.clone_from(&tx_id);
                body.metadata.tx_time = time(sequence);
            }
            let (sealed, _) =
                block::seal(sequence, &tx_id, time(sequence), self.previous, bodies).expect("seal");
            self.previous = sealed.hash;
            self.next += 1;
            revisions.extend(sealed.revisions);
        }
        revisions
    }
}
