//! A big ledger without HTTP: a generated export of `n` create blocks, for
//! `adledger import`.
//!
//! Filling a million-event journal through `POST /publisher/{p}/ad` takes many minutes
//! here (about 3,000 creates/s), so the catch-up rows read a journal imported from an
//! export this module writes: each block is sealed by the engine's own
//! [`block::seal`] (the same Ion encoding and hashes as the server's committer) around one
//! `AdCreated` revision of a generated ad (the bench's workload, reproducible from the
//! seed), chained by hash, with the Merkle digest of the whole journal in the trailer.
//! The JSON-lines format of `adledger export` is used because it needs no Ion writer.

use std::io::Write as _;
use std::path::Path;

use adledger_engine::block;
use adledger_engine::hash::Hash;
use adledger_engine::merkle::Frontier;
use adledger_engine::revision::{RevisionBody, RevisionMetadata};
use adledger_engine::{Ad, EventKind};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::rng::Rng;
use crate::workload;

/// The request stream the generated ads are drawn from (apart from the HTTP phases').
pub(crate) const FILL_STREAM: u64 = 11;

/// What was written.
#[derive(Debug, Clone, Copy)]
pub struct Filled {
    /// Blocks (one revision each).
    pub blocks: u64,
    /// Bytes of the file.
    pub bytes: u64,
}

/// Writes an export of `blocks` create blocks to `path`, the transaction times one
/// millisecond apart and ending about now.
pub fn write_export(path: &Path, blocks: u64, seed: u64) -> Result<Filled, String> {
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let io = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let span = i64::try_from(blocks).map_err(|_| "too many blocks".to_string())?;
    let start = Utc::now() - Duration::milliseconds(span) - Duration::seconds(1);
    let line = |out: &mut std::io::BufWriter<std::fs::File>, value: &Value| {
        serde_json::to_writer(&mut *out, value).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(io)
    };
    line(
        &mut out,
        &json!({
            "format": "adledger-export",
            "formatVersion": 1,
            "firstSequence": (blocks > 0).then_some(0),
            "lastSequence": blocks.checked_sub(1),
        }),
    )?;
    let mut previous = Hash::ZERO;
    let mut frontier = Frontier::new();
    let mut rng = Rng::new(seed ^ 0x5eed_f11d);
    for sequence in 0..blocks {
        let offset = i64::try_from(sequence).map_err(|_| "too many blocks".to_string())?;
        let tx_time = start + Duration::milliseconds(offset);
        let tx_id = ulid(tx_time, &mut rng);
        let body = revision(seed, sequence, &tx_id, tx_time, &mut rng)?;
        let (sealed, encoded) = block::seal(sequence, &tx_id, tx_time, previous, vec![body])
            .map_err(|e| format!("cannot seal block {sequence}: {e}"))?;
        previous = sealed.hash;
        frontier.push(&sealed.hash);
        out.write_all(b"{\"sequenceNo\":").map_err(io)?;
        out.write_all(sequence.to_string().as_bytes()).map_err(io)?;
        out.write_all(b",\"frame\":\"").map_err(io)?;
        out.write_all(STANDARD.encode(&encoded.bytes).as_bytes())
            .map_err(io)?;
        out.write_all(b"\"}\n").map_err(io)?;
    }
    let digest = blocks.checked_sub(1).map(|last| {
        json!({
            "sequenceNo": last,
            "root": STANDARD.encode(frontier.root().unwrap_or_default().as_bytes()),
            "tipHash": STANDARD.encode(previous.as_bytes()),
        })
    });
    line(&mut out, &json!({"blocks": blocks, "digest": digest}))?;
    out.flush().map_err(io)?;
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    Ok(Filled { blocks, bytes })
}

/// The `AdCreated` revision of block `sequence`: a generated ad, version 0.
fn revision(
    seed: u64,
    sequence: u64,
    tx_id: &str,
    tx_time: DateTime<Utc>,
    rng: &mut Rng,
) -> Result<RevisionBody, String> {
    let publisher = workload::publisher_of(sequence);
    let ad_id = ulid(tx_time, rng);
    let mut ad = workload::ad_body(&mut Rng::for_request(seed, FILL_STREAM, sequence));
    if let Value::Object(fields) = &mut ad {
        fields.insert("adId".into(), Value::String(ad_id.clone()));
        fields.insert("publisherId".into(), Value::String(publisher.into()));
        for (name, empty) in [
            ("adDescription", json!("")),
            ("price", Value::Null),
            ("currency", json!("")),
            ("category", json!("")),
            ("tags", json!([])),
        ] {
            fields.entry(name).or_insert(empty);
        }
    }
    let ad: Ad = serde_json::from_value(ad).map_err(|e| format!("a generated ad: {e}"))?;
    Ok(RevisionBody {
        data: Some(ad),
        metadata: RevisionMetadata {
            id: ad_id,
            publisher_id: publisher.into(),
            version: 0,
            tx_id: tx_id.into(),
            tx_time,
            actor: None,
        },
        event: EventKind::AdCreated,
    })
}

/// A ULID at `time` with random bits from `rng`.
fn ulid(time: DateTime<Utc>, rng: &mut Rng) -> String {
    let millis = u64::try_from(time.timestamp_millis()).unwrap_or(0);
    let random = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
    ulid::Ulid::from_parts(millis, random).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_verifies_with_the_engines_importer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("export.jsonl");
        let filled = write_export(&path, 250, 7).expect("written");
        assert_eq!(filled.blocks, 250);
        let summary = adledger_engine::import::verify_export(&path, &mut |_| {})
            .expect("the generated export verifies");
        assert_eq!(summary.blocks, 250);
        assert_eq!(summary.revisions, 250);
    }
}
