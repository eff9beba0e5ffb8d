//! The bytes that clients, nodes and verifiers sign. Each message starts with
//! an 8-byte domain tag and has a fixed layout, so one signature means one
//! thing only, whichever key made it and wherever it is checked (the program
//! through the ed25519 precompile, the services with ed25519-dalek).

/// Domain tag of a payment voucher.
pub const VOUCHER_DOMAIN: &[u8; 8] = b"STRVOUC1";
/// Length of a voucher message: tag, program id, node, cumulative u64.
pub const VOUCHER_LEN: usize = 8 + 32 + 32 + 8;
/// Domain tag of a challenge verdict vote.
pub const VERDICT_DOMAIN: &[u8; 8] = b"STRVERD1";
/// Length of a verdict message: tag, program id, challenge, upheld u8.
pub const VERDICT_LEN: usize = 8 + 32 + 32 + 1;
/// Domain tag of a node's receipt signature.
pub const RECEIPT_DOMAIN: &[u8; 8] = b"STRRCPT1";
/// Length of a receipt's signed bytes: tag and the receipt body's digest.
pub const RECEIPT_SIGNED_LEN: usize = 8 + 32;

/// The bytes a client signs to owe `node` a running total of `cumulative`
/// base units, redeemable through `program_id`.
pub fn voucher_message(
    program_id: &[u8; 32],
    node: &[u8; 32],
    cumulative: u64,
) -> [u8; VOUCHER_LEN] {
    let mut m = [0u8; VOUCHER_LEN];
    m[..8].copy_from_slice(VOUCHER_DOMAIN);
    m[8..40].copy_from_slice(program_id);
    m[40..72].copy_from_slice(node);
    m[72..].copy_from_slice(&cumulative.to_le_bytes());
    m
}

/// Splits a voucher message into (node, cumulative) if it is one for `program_id`.
pub fn parse_voucher(program_id: &[u8; 32], message: &[u8]) -> Option<([u8; 32], u64)> {
    if message.len() != VOUCHER_LEN
        || &message[..8] != VOUCHER_DOMAIN
        || &message[8..40] != program_id
    {
        return None;
    }
    let node = message[40..72].try_into().ok()?;
    let cumulative = u64::from_le_bytes(message[72..].try_into().ok()?);
    Some((node, cumulative))
}

/// The bytes a verifier signs to judge `challenge` (upheld: the accused cheated).
pub fn verdict_message(
    program_id: &[u8; 32],
    challenge: &[u8; 32],
    upheld: bool,
) -> [u8; VERDICT_LEN] {
    let mut m = [0u8; VERDICT_LEN];
    m[..8].copy_from_slice(VERDICT_DOMAIN);
    m[8..40].copy_from_slice(program_id);
    m[40..72].copy_from_slice(challenge);
    m[72] = u8::from(upheld);
    m
}

/// The bytes a node signs for a receipt whose body has `digest`.
pub fn receipt_signed_bytes(digest: &[u8; 32]) -> [u8; RECEIPT_SIGNED_LEN] {
    let mut m = [0u8; RECEIPT_SIGNED_LEN];
    m[..8].copy_from_slice(RECEIPT_DOMAIN);
    m[8..].copy_from_slice(digest);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn voucher_round_trips_and_is_bound_to_the_program() {
        let m = voucher_message(&[1; 32], &[2; 32], 77);
        assert_eq!(parse_voucher(&[1; 32], &m), Some(([2; 32], 77)));
        assert_eq!(parse_voucher(&[3; 32], &m), None);
        let v = verdict_message(&[1; 32], &[2; 32], true);
        assert_eq!(
            parse_voucher(&[1; 32], &v),
            None,
            "a verdict is not a voucher"
        );
    }

    proptest! {
        #[test]
        fn parse_voucher_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse_voucher(&[0; 32], &bytes);
        }
    }
}
