//! Building and measuring transactions.

use solana_hash::Hash;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_signer::Signer;
use solana_transaction::Transaction;

use crate::ChainError;

/// Largest serialized transaction the network accepts (IPv6 MTU minus headers).
pub const PACKET_DATA_SIZE: usize = 1232;
/// Fee per signature charged by default on Solana.
pub const LAMPORTS_PER_SIGNATURE: u64 = 5_000;

/// Signs a legacy transaction paid by `payer`; extra signers follow the payer.
pub fn sign(
    instructions: &[Instruction],
    payer: &Keypair,
    signers: &[&Keypair],
    blockhash: Hash,
) -> Transaction {
    let mut all: Vec<&Keypair> = vec![payer];
    all.extend(
        signers
            .iter()
            .copied()
            .filter(|s| s.pubkey() != payer.pubkey()),
    );
    Transaction::new_signed_with_payer(instructions, Some(&payer.pubkey()), &all, blockhash)
}

/// Serialized size of a transaction in bytes, as sent over the wire.
pub fn wire_size(tx: &Transaction) -> usize {
    bincode::serialized_size(tx).map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Refuses a transaction the network would drop for its size.
pub fn check_size(tx: &Transaction) -> Result<usize, ChainError> {
    let size = wire_size(tx);
    if size > PACKET_DATA_SIZE {
        return Err(ChainError::TooLarge(size));
    }
    Ok(size)
}
