//! Builds the instruction for Solana's ed25519 signature-verify precompile
//! carrying several signatures at once (vouchers or verdict votes). The
//! program reads it back through the Instructions sysvar, so it must sit
//! directly before the program instruction it vouches for.

use ed25519_dalek::{Signer as _, SigningKey};
use solana_instruction::Instruction;
use solana_keypair::Keypair;

use crate::{ChainError, Pubkey};

const HEADER_LEN: usize = 2;
const OFFSETS_LEN: usize = 14;
const SIG_LEN: usize = 64;
const KEY_LEN: usize = 32;
/// "This instruction" in the precompile's index fields.
const THIS: u16 = u16::MAX;

/// One signed message: who signed, the 64-byte signature, and the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedMessage {
    /// Signer's public key.
    pub signer: Pubkey,
    /// Ed25519 signature.
    pub signature: [u8; 64],
    /// Signed bytes.
    pub message: Vec<u8>,
}

impl SignedMessage {
    /// Signs `message` with `keypair`.
    pub fn sign(keypair: &Keypair, message: &[u8]) -> Self {
        let key = SigningKey::from_bytes(keypair.secret_bytes());
        Self {
            signer: Pubkey::from(key.verifying_key().to_bytes()),
            signature: key.sign(message).to_bytes(),
            message: message.to_vec(),
        }
    }

    /// Whether the signature is valid (checked off-chain before anything is submitted).
    pub fn verify(&self) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.signer.to_bytes()) else {
            return false;
        };
        key.verify_strict(
            &self.message,
            &ed25519_dalek::Signature::from_bytes(&self.signature),
        )
        .is_ok()
    }
}

/// The precompile instruction verifying all of `messages`.
pub fn verify_instruction(messages: &[SignedMessage]) -> Result<Instruction, ChainError> {
    let count = u8::try_from(messages.len())
        .map_err(|_| ChainError::Invalid("at most 255 signatures per instruction".into()))?;
    let mut data = vec![count, 0];
    data.resize(HEADER_LEN + OFFSETS_LEN * messages.len(), 0);
    for (i, m) in messages.iter().enumerate() {
        let sig_at = data.len();
        data.extend_from_slice(&m.signature);
        let key_at = data.len();
        data.extend_from_slice(m.signer.as_ref());
        let msg_at = data.len();
        data.extend_from_slice(&m.message);
        let offset = |v: usize| {
            u16::try_from(v).map_err(|_| ChainError::Invalid("signed data over 64 KiB".into()))
        };
        let fields = [
            offset(sig_at)?,
            THIS,
            offset(key_at)?,
            THIS,
            offset(msg_at)?,
            offset(m.message.len())?,
            THIS,
        ];
        let rec = HEADER_LEN + i * OFFSETS_LEN;
        for (k, f) in fields.iter().enumerate() {
            data[rec + 2 * k..rec + 2 * k + 2].copy_from_slice(&f.to_le_bytes());
        }
    }
    debug_assert_eq!(SIG_LEN + KEY_LEN, 96);
    Ok(Instruction {
        program_id: solana_sdk_ids::ed25519_program::ID,
        accounts: vec![],
        data,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use strata_program::signatures::parse_precompile_data;

    use super::*;

    proptest! {
        /// What the client writes, the program reads back unchanged.
        #[test]
        fn program_parses_what_client_builds(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..8)) {
            let kp = Keypair::new();
            let signed: Vec<_> = msgs.iter().map(|m| SignedMessage::sign(&kp, m)).collect();
            let ix = verify_instruction(&signed).unwrap();
            let parsed = parse_precompile_data(&ix.data).unwrap();
            prop_assert_eq!(parsed.len(), signed.len());
            for (p, s) in parsed.iter().zip(&signed) {
                prop_assert_eq!(p.signer, s.signer);
                prop_assert_eq!(&p.message, &s.message);
                prop_assert!(s.verify());
            }
        }

        /// Arbitrary bytes never panic the program's parser.
        #[test]
        fn program_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_precompile_data(&data);
        }
    }

    #[test]
    fn tampered_signature_fails_offchain_check() {
        let kp = Keypair::new();
        let mut m = SignedMessage::sign(&kp, b"hello");
        assert!(m.verify());
        m.message[0] ^= 1;
        assert!(!m.verify());
    }
}
