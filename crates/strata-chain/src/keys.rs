//! Keypairs in the Solana CLI's JSON format (an array of 64 bytes). The same
//! key is a node's on-chain identity, its libp2p identity and its
//! receipt-signing key.

use std::path::Path;

use solana_keypair::Keypair;

use crate::ChainError;

/// Reads a keypair file, with an error that names the file and the problem.
pub fn read(path: &Path) -> Result<Keypair, ChainError> {
    let fail = |reason: String| ChainError::Keypair {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let bytes: Vec<u8> = serde_json::from_str(&text)
        .map_err(|e| fail(format!("not a Solana keypair JSON array: {e}")))?;
    let secret: [u8; 64] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| fail(format!("expected 64 bytes, found {}", b.len())))?;
    Keypair::try_from(&secret[..]).map_err(|e| fail(format!("invalid ed25519 keypair: {e}")))
}

/// Writes `keypair` to `path` (creating parent directories), refusing to overwrite.
pub fn write_new(path: &Path, keypair: &Keypair) -> Result<(), ChainError> {
    let fail = |reason: String| ChainError::Keypair {
        path: path.display().to_string(),
        reason,
    };
    if path.exists() {
        return Err(fail("already exists; refusing to overwrite".into()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let json =
        serde_json::to_string(&keypair.to_bytes().to_vec()).map_err(|e| fail(e.to_string()))?;
    std::fs::write(path, json).map_err(|e| fail(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// Reads `path` if it exists, otherwise generates a key and writes it there.
pub fn read_or_create(path: &Path) -> Result<Keypair, ChainError> {
    if path.exists() {
        read(path)
    } else {
        let keypair = Keypair::new();
        write_new(path, &keypair)?;
        Ok(keypair)
    }
}

#[cfg(test)]
mod tests {
    use solana_signer::Signer;

    use super::*;

    #[test]
    fn round_trip_and_bad_files() {
        let dir = std::env::temp_dir().join(format!("strata-keys-{}", std::process::id()));
        let path = dir.join("id.json");
        let _ = std::fs::remove_file(&path);
        let created = read_or_create(&path).unwrap();
        assert_eq!(read(&path).unwrap().pubkey(), created.pubkey());
        assert!(write_new(&path, &created).is_err(), "must not overwrite");

        let missing = read(&dir.join("missing.json")).unwrap_err().to_string();
        assert!(missing.contains("missing.json"), "{missing}");
        std::fs::write(dir.join("short.json"), "[1,2,3]").unwrap();
        let short = read(&dir.join("short.json")).unwrap_err().to_string();
        assert!(short.contains("expected 64 bytes, found 3"), "{short}");
        std::fs::write(dir.join("junk.json"), "not json").unwrap();
        assert!(read(&dir.join("junk.json"))
            .unwrap_err()
            .to_string()
            .contains("not a Solana keypair"));
        // 64 bytes whose public half does not match the secret half.
        std::fs::write(
            dir.join("mismatch.json"),
            serde_json::to_string(&vec![7u8; 64]).unwrap(),
        )
        .unwrap();
        assert!(read(&dir.join("mismatch.json")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
