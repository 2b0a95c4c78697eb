//! `adledger proof verify FILE [--digest SEQ:ROOT] [--json]`: what an auditor runs to
//! check, fully offline, that a revision is in the ledger.
//!
//! FILE is the JSON of `GET /publisher/{p}/ad/{adId}/proof` (`-` reads standard input).
//! Nothing in it is taken on trust; [`verify_bundle`] recomputes everything from the
//! stored bytes the bundle carries:
//!
//! 1. the header bytes decode, and `SHA-256(header bytes)` is the block hash;
//! 2. `SHA-256(revision bytes)` is the hash the header lists at `revisionIndex`;
//! 3. the revision bytes decode to exactly the `revision` shown in the bundle (so what
//!    the auditor reads is what was hashed);
//! 4. the header's `sequenceNo` is the proof's leaf index;
//! 5. the proof's tree size is the trusted digest's `sequence + 1` (a root alone does not
//!    bind a tree size; see `adledger_engine::proof`);
//! 6. the RFC 9162 inclusion proof leads from the block hash to the trusted root.
//!
//! The trusted digest is `--digest`, one the auditor saved earlier (from `GET
//! /ledger/digest`); without it, the digest inside the bundle, which only shows that the
//! bundle is consistent with itself.
//!
//! Exit codes: 0 verified, 1 does not verify (a line saying why), 2 the file cannot be
//! read.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use adledger_engine::Hash;
use adledger_engine::codec;
use adledger_engine::proof::{InclusionProof, verify_inclusion};
use adledger_engine::revision::{BlockAddress, STRAND_ID};
use adledger_engine::{Revision, revision::RevisionBody};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::verify_cmd::SavedDigest;
use crate::views::RevisionView;

/// `adledger proof …`.
#[derive(Debug, Clone, Args)]
pub struct ProofArgs {
    /// What to do with a proof.
    #[command(subcommand)]
    pub command: ProofCommand,
}

/// The subcommands of `adledger proof`.
#[derive(Debug, Clone, Subcommand)]
pub enum ProofCommand {
    /// Check a proof bundle saved from GET /publisher/{p}/ad/{adId}/proof, offline.
    ///
    /// Exits 0 when the revision is proved to be under the digest, 1 when it is not
    /// (saying why), 2 when the file cannot be read.
    Verify(ProofVerifyArgs),
}

/// Flags of `adledger proof verify`.
#[derive(Debug, Clone, Args)]
pub struct ProofVerifyArgs {
    /// The saved JSON of the proof route; `-` reads standard input
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// A digest you saved earlier, as SEQUENCE:ROOT (from GET /ledger/digest). Without
    /// it the digest inside the bundle is used, which proves only self-consistency
    #[arg(long, value_name = "SEQ:ROOT")]
    pub digest: Option<SavedDigest>,

    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// What a verified bundle proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Proved {
    /// The ad.
    pub ad_id: String,
    /// Its publisher.
    pub publisher_id: String,
    /// The proved version.
    pub version: u64,
    /// The block holding it.
    pub sequence: u64,
    /// The block's hash.
    pub block_hash: Hash,
    /// The digest it is proved under.
    pub digest: SavedDigest,
    /// Whether that digest came from `--digest` (an earlier, independent copy) rather than
    /// from the bundle itself.
    pub trusted_digest_given: bool,
}

/// Why a bundle does not verify: one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BundleFailure(pub String);

/// The part of the bundle the checks read; everything else is ignored.
#[derive(Debug, Deserialize)]
struct Bundle {
    revision: Value,
    block: BundleBlock,
    digest: BundleDigest,
    proof: InclusionProof,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleBlock {
    sequence_no: u64,
    hash: Hash,
    revision_index: usize,
    header_bytes: String,
    revision_bytes: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleDigest {
    sequence: u64,
    root: Hash,
    tip_hash: Option<Hash>,
}

fn fail<T>(text: impl Into<String>) -> Result<T, BundleFailure> {
    Err(BundleFailure(text.into()))
}

/// Checks a proof bundle against `trusted` (or, without it, against the bundle's own
/// digest), as the module docs list. Pure: no storage, no network.
pub fn verify_bundle(
    bundle: &Value,
    trusted: Option<SavedDigest>,
) -> Result<Proved, BundleFailure> {
    let bundle: Bundle = serde_json::from_value(bundle.clone())
        .map_err(|e| BundleFailure(format!("this is not a proof bundle: {e}")))?;
    let header_bytes = hex::decode(&bundle.block.header_bytes)
        .map_err(|e| BundleFailure(format!("block.headerBytes is not hex: {e}")))?;
    let revision_bytes = hex::decode(&bundle.block.revision_bytes)
        .map_err(|e| BundleFailure(format!("block.revisionBytes is not hex: {e}")))?;

    // 1. The header.
    let header = codec::decode_header(&header_bytes)
        .map_err(|e| BundleFailure(format!("the block header bytes do not decode: {e}")))?;
    let block_hash = Hash::of(&header_bytes);
    if block_hash != bundle.block.hash {
        return fail(format!(
            "the header bytes hash to {block_hash}, but block.hash says {}",
            bundle.block.hash
        ));
    }

    // 2. The revision is the one the header commits to.
    let revision_hash = Hash::of(&revision_bytes);
    let index = bundle.block.revision_index;
    match header.revision_hashes.get(index) {
        Some(listed) if *listed == revision_hash => {}
        Some(listed) => {
            return fail(format!(
                "the revision bytes hash to {revision_hash}, but block {}'s header lists \
                 {listed} for revision {index}: these are not the bytes that were committed",
                header.sequence_no
            ));
        }
        None => {
            return fail(format!(
                "block {}'s header lists {} revisions; the bundle points at revision {index}",
                header.sequence_no,
                header.revision_hashes.len()
            ));
        }
    }

    // 3. What the bundle shows is what was hashed.
    let body = codec::decode_revision_of(&revision_bytes, &header)
        .map_err(|e| BundleFailure(format!("the revision bytes do not decode: {e}")))?;
    let shown = shown_revision(&body, revision_hash, header.sequence_no)?;
    if let Some(field) = first_difference(&shown, &bundle.revision) {
        return fail(format!(
            "the bundle's revision.{field} is not what the revision bytes say; the bytes \
             say {}",
            shown
                .pointer(&format!("/{}", field.replace('.', "/")))
                .map_or_else(|| "nothing".to_string(), Value::to_string)
        ));
    }

    // 4. The block is the proof's leaf.
    let proof = &bundle.proof;
    if header.sequence_no != proof.leaf_index || bundle.block.sequence_no != proof.leaf_index {
        return fail(format!(
            "the header says it is block {} (the bundle says {}), but the proof is for leaf \
             {}",
            header.sequence_no, bundle.block.sequence_no, proof.leaf_index
        ));
    }

    // 5. The digest to trust, and the tree size it binds.
    let given = trusted.is_some();
    let digest = match trusted {
        Some(saved) => {
            if bundle.digest.sequence == saved.sequence && bundle.digest.root != saved.root {
                return fail(format!(
                    "the bundle's digest at sequence {} has root {}, but your saved digest \
                     at that sequence has root {}: the ledger's history up to {} is not the \
                     one you saved",
                    saved.sequence, bundle.digest.root, saved.root, saved.sequence
                ));
            }
            saved
        }
        None => SavedDigest {
            sequence: bundle.digest.sequence,
            root: bundle.digest.root,
        },
    };
    let Some(size) = digest.sequence.checked_add(1) else {
        return fail(format!(
            "digest sequence {} is past any possible journal",
            digest.sequence
        ));
    };
    if proof.tree_size != size {
        return fail(format!(
            "the proof is for a tree of {} blocks, but the digest at sequence {} covers {size}; \
             fetch the proof again with digestSequence={}",
            proof.tree_size, digest.sequence, digest.sequence
        ));
    }
    if !given
        && digest.sequence == header.sequence_no
        && let Some(tip) = bundle.digest.tip_hash
        && tip != block_hash
    {
        return fail(format!(
            "the digest's tipHash is {tip}, but its last block, this one, hashes to \
             {block_hash}"
        ));
    }

    // 6. The inclusion proof.
    verify_inclusion(&block_hash, proof, &digest.root).map_err(|e| {
        BundleFailure(format!(
            "block {} is not under the digest at sequence {}: {e}",
            header.sequence_no, digest.sequence
        ))
    })?;

    Ok(Proved {
        ad_id: body.metadata.id,
        publisher_id: body.metadata.publisher_id,
        version: body.metadata.version,
        sequence: header.sequence_no,
        block_hash,
        digest,
        trusted_digest_given: given,
    })
}

/// The revision as the API shows it, built from the decoded bytes.
fn shown_revision(body: &RevisionBody, hash: Hash, sequence: u64) -> Result<Value, BundleFailure> {
    let view = RevisionView::from(Revision {
        block_address: BlockAddress {
            strand_id: STRAND_ID.to_string(),
            sequence_no: sequence,
        },
        hash,
        body: body.clone(),
    });
    serde_json::to_value(view)
        .map_err(|e| BundleFailure(format!("the revision cannot be shown as JSON: {e}")))
}

/// The first member (as a dotted path, one level into objects) where `shown` and
/// `claimed` differ; `None` when they are equal.
fn first_difference(shown: &Value, claimed: &Value) -> Option<String> {
    if shown == claimed {
        return None;
    }
    let (Some(a), Some(b)) = (shown.as_object(), claimed.as_object()) else {
        return Some("(whole)".into());
    };
    let keys = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)));
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        if x == y {
            continue;
        }
        if let (Some(Value::Object(x)), Some(Value::Object(y))) = (x, y) {
            let inner = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k)));
            for k in inner {
                if x.get(k) != y.get(k) {
                    return Some(format!("{key}.{k}"));
                }
            }
        }
        return Some(key.clone());
    }
    Some("(whole)".into())
}

/// Runs `adledger proof …`; the exit code is the result (see the module docs).
pub fn proof_command(args: &ProofArgs) -> ExitCode {
    match &args.command {
        ProofCommand::Verify(verify) => verify_command(verify),
    }
}

fn verify_command(args: &ProofVerifyArgs) -> ExitCode {
    let bundle = match read_bundle(&args.file) {
        Ok(bundle) => bundle,
        Err(error) => {
            return report(args.json, 2, &error, json!({ "ok": false, "error": error }));
        }
    };
    match verify_bundle(&bundle, args.digest) {
        Ok(proved) => {
            let source = if proved.trusted_digest_given {
                "your saved digest"
            } else {
                "the digest inside the bundle (pass --digest SEQ:ROOT to check against a \
                 digest you saved)"
            };
            let text = format!(
                "OK: ad {} of publisher {} version {} is in block {} (hash {}), which is \
                 under the digest at sequence {} with root {}; checked against {source}",
                proved.ad_id,
                proved.publisher_id,
                proved.version,
                proved.sequence,
                proved.block_hash,
                proved.digest.sequence,
                proved.digest.root
            );
            report(args.json, 0, &text, json!({ "ok": true, "proved": proved }))
        }
        Err(failure) => report(
            args.json,
            1,
            &format!("FAIL: {failure}"),
            json!({ "ok": false, "failure": failure.0 }),
        ),
    }
}

/// Reads and parses FILE (or standard input for `-`).
fn read_bundle(path: &PathBuf) -> Result<Value, String> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// Prints the text (or JSON) and turns `code` into the exit code.
fn report(as_json: bool, code: u8, text: &str, json: Value) -> ExitCode {
    // Nothing more can be said if the output is gone; the exit code still tells.
    let _ = if as_json {
        writeln!(std::io::stdout(), "{json}")
    } else if code == 2 {
        writeln!(std::io::stderr(), "adledger proof verify: {text}")
    } else {
        writeln!(std::io::stdout(), "{text}")
    };
    ExitCode::from(code)
}
