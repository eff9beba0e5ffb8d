//! SPL Token instructions the tools need: a mint, associated token accounts,
//! minting (the testnet faucet) and transfers.

use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_signer::Signer;

use crate::{pda, rpc::ChainClient, ChainError, Pubkey};

/// Decimals of the testnet mint.
pub const DECIMALS: u8 = 6;
/// Bytes of an SPL mint account.
pub const MINT_LEN: usize = 82;

/// Creates and initialises `mint` with `authority` (payer funds the rent).
pub fn create_mint(
    payer: &Pubkey,
    mint: &Pubkey,
    authority: &Pubkey,
    rent: u64,
) -> Result<Vec<Instruction>, ChainError> {
    let mut data = 0u32.to_le_bytes().to_vec(); // SystemInstruction::CreateAccount
    data.extend_from_slice(&rent.to_le_bytes());
    data.extend_from_slice(&(MINT_LEN as u64).to_le_bytes());
    data.extend_from_slice(spl_token_interface::ID.as_ref());
    let create = Instruction {
        program_id: anchor_lang::system_program::ID,
        accounts: vec![
            AccountMeta::new(*payer, true),
            AccountMeta::new(*mint, true),
        ],
        data,
    };
    let init = spl_token_interface::instruction::initialize_mint2(
        &spl_token_interface::ID,
        mint,
        authority,
        None,
        DECIMALS,
    )
    .map_err(|e| ChainError::Invalid(e.to_string()))?;
    Ok(vec![create, init])
}

/// Creates `owner`'s associated token account if it does not exist yet.
pub fn create_ata_idempotent(payer: &Pubkey, owner: &Pubkey, mint: &Pubkey) -> Instruction {
    spl_associated_token_account_interface::instruction::create_associated_token_account_idempotent(
        payer,
        owner,
        mint,
        &spl_token_interface::ID,
    )
}

/// Mints `amount` to `account`.
pub fn mint_to(
    mint: &Pubkey,
    account: &Pubkey,
    authority: &Pubkey,
    amount: u64,
) -> Result<Instruction, ChainError> {
    spl_token_interface::instruction::mint_to(
        &spl_token_interface::ID,
        mint,
        account,
        authority,
        &[],
        amount,
    )
    .map_err(|e| ChainError::Invalid(e.to_string()))
}

/// The testnet faucet: SOL for fees (by airdrop) and `tokens` of the Strata
/// mint, minted by the faucet's mint authority into `to`'s token account.
pub async fn faucet(
    client: &ChainClient,
    mint_authority: &Keypair,
    mint: &Pubkey,
    to: &Pubkey,
    lamports: u64,
    tokens: u64,
) -> Result<Pubkey, ChainError> {
    if lamports > 0 {
        client.airdrop(to, lamports).await?;
    }
    let ata = pda::associated_token(to, mint);
    let mut ixs = vec![create_ata_idempotent(&mint_authority.pubkey(), to, mint)];
    if tokens > 0 {
        ixs.push(mint_to(mint, &ata, &mint_authority.pubkey(), tokens)?);
    }
    client.send(&ixs, mint_authority, &[]).await?;
    Ok(ata)
}
