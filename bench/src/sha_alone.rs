//! Verify's peer: reading the same block bytes and hashing them with SHA-256, nothing
//! else (no decoding, no chain, no Merkle tree).
//!
//! The bytes are the ledger's Ion export, which is the journal's block frames one after
//! the other (plus a few bytes of framing): the file is read in pieces of the average
//! block's size and each piece is hashed on its own, as verify hashes block by block.

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Bytes hashed and how long reading and hashing took.
#[derive(Debug, Clone, Copy)]
pub struct Hashed {
    /// Bytes read and hashed.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Hashed {
    /// Megabytes (10^6) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Reads `path` in `piece`-byte pieces, hashing each.
pub fn read_and_hash(path: &Path, piece: usize) -> Result<Hashed, String> {
    let started = Instant::now();
    let mut file = std::fs::File::open(path)
        .map_err(|e| format!("SHA-256 baseline: cannot open {}: {e}", path.display()))?;
    let mut buffer = vec![0u8; piece.clamp(64, 1 << 20)];
    let mut bytes = 0u64;
    let mut last = [0u8; 32];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| format!("SHA-256 baseline: cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        last = Sha256::digest(&buffer[..n]).into();
        bytes += n as u64;
    }
    // Keeps the hashing from being optimised away.
    std::hint::black_box(last);
    Ok(Hashed {
        bytes,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_the_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blocks");
        std::fs::write(&path, vec![7u8; 10_000]).expect("write");
        let hashed = read_and_hash(&path, 700).expect("hashed");
        assert_eq!(hashed.bytes, 10_000);
        assert!(read_and_hash(&dir.path().join("missing"), 700).is_err());
    }
}
