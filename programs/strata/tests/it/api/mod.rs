//! The test environment: the Strata program registered natively in a real
//! LiteSVM runtime (with the SPL Token and ATA programs it preloads), a mint,
//! and helpers that send real signed transactions. Helpers for each group of
//! instructions live in the files beside this one.
#![allow(dead_code)]

pub mod batches;
pub mod challenges;
pub mod nodes;
pub mod payments;

use anchor_lang::AccountDeserialize;
use litesvm::types::TransactionMetadata;
use litesvm::LiteSVM;
use solana_account::Account;
use solana_instruction::error::InstructionError;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_program_pack::Pack;
use solana_signer::Signer;
use solana_transaction::Transaction;
use solana_transaction_error::TransactionError;
use strata_chain::{ix, pda, ConfigParams, Pubkey, PROGRAM_ID};
use strata_primitives::slot_hashes;
use strata_program::errors::StrataError;
use strata_program::state::Config;

pub const SOL: u64 = 1_000_000_000;
pub const MIN_STAKE: u64 = 1_000;
pub const GENESIS: i64 = 1_800_000_000;

pub fn params() -> ConfigParams {
    ConfigParams {
        min_stake: MIN_STAKE,
        unbonding_period: 3_600,
        epoch_length: 600,
        audit_rate_bps: 500,
        slash_bps: 5_000,
        challenger_share_bps: 2_000,
        challenge_window: 1_800,
        challenge_bond: 100,
        verdict_timeout: 900,
        verifier_quorum: 2,
        committee_size: 3,
        protocol_fee_bps: 1_000,
        epoch_reward_cap: 1_000_000,
        escrow_withdraw_delay: 600,
        audit_layers: 4,
        audit_positions: 4,
        seed_delay_slots: 2,
        audit_reward_bps: 2_000,
        committee_reward: 10,
    }
}

pub struct Env {
    pub svm: LiteSVM,
    pub admin: Keypair,
    pub reward_authority: Keypair,
    pub mint: Pubkey,
    pub mint_authority: Keypair,
}

/// The custom error code a failed transaction carries, if any.
pub fn code(err: &TransactionError) -> Option<u32> {
    match err {
        TransactionError::InstructionError(_, InstructionError::Custom(c)) => Some(*c),
        _ => None,
    }
}

/// Asserts that `result` failed with the program error `expected`.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, TransactionError>,
    expected: StrataError,
) {
    let want = u32::from(expected);
    match result {
        Err(e) => assert_eq!(
            code(&e),
            Some(want),
            "expected {expected:?} ({want}), got {e:?}"
        ),
        Ok(ok) => panic!("expected {expected:?}, but the transaction succeeded: {ok:?}"),
    }
}

/// Asserts that `result` failed with custom code `want` (Anchor or system codes).
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, TransactionError>, want: u32) {
    match result {
        Err(e) => assert_eq!(code(&e), Some(want), "expected code {want}, got {e:?}"),
        Ok(ok) => panic!("expected code {want}, but the transaction succeeded: {ok:?}"),
    }
}

impl Env {
    /// A runtime with the program, a mint and a funded admin; not initialised.
    pub fn bare() -> Self {
        let mut svm = LiteSVM::new();
        native_svm::add_native_program(
            &mut svm,
            PROGRAM_ID,
            strata_program::native::process_instruction,
        );
        let mut clock: anchor_lang::prelude::Clock = svm.get_sysvar();
        clock.unix_timestamp = GENESIS;
        clock.slot = 1_000;
        svm.set_sysvar(&clock);
        let admin = Keypair::new();
        let reward_authority = Keypair::new();
        let mint_authority = Keypair::new();
        for k in [&admin, &reward_authority, &mint_authority] {
            svm.airdrop(&k.pubkey(), 100 * SOL).expect("airdrop");
        }
        let mut env = Self {
            svm,
            admin,
            reward_authority,
            mint: Pubkey::default(),
            mint_authority,
        };
        env.mint = env.create_mint();
        env
    }

    /// A runtime with the program initialised with [`params`].
    pub fn new() -> Self {
        let mut env = Self::bare();
        let ix = ix::initialize(
            &env.admin.pubkey(),
            &env.mint,
            params(),
            &env.reward_authority.pubkey(),
        );
        let admin = env.admin.insecure_clone();
        env.send(&[ix], &admin, &[]).expect("initialize");
        env
    }

    fn create_mint(&mut self) -> Pubkey {
        let mint = Keypair::new();
        let token = spl_token_interface::ID;
        let space = spl_token_interface::state::Mint::LEN;
        let create = solana_instruction::Instruction {
            program_id: anchor_lang::system_program::ID,
            accounts: vec![
                solana_instruction::AccountMeta::new(self.mint_authority.pubkey(), true),
                solana_instruction::AccountMeta::new(mint.pubkey(), true),
            ],
            data: system_create_account_data(
                self.svm.minimum_balance_for_rent_exemption(space),
                space as u64,
                &token,
            ),
        };
        let init = spl_token_interface::instruction::initialize_mint2(
            &token,
            &mint.pubkey(),
            &self.mint_authority.pubkey(),
            None,
            6,
        )
        .expect("initialize_mint2");
        let payer = self.mint_authority.insecure_clone();
        self.send(&[create, init], &payer, &[&mint])
            .expect("create mint");
        mint.pubkey()
    }

    /// Sends one transaction paid by `payer`, also signed by `signers`.
    pub fn send(
        &mut self,
        ixs: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Result<TransactionMetadata, TransactionError> {
        let mut all: Vec<&Keypair> = vec![payer];
        all.extend(
            signers
                .iter()
                .copied()
                .filter(|s| s.pubkey() != payer.pubkey()),
        );
        let tx = Transaction::new_signed_with_payer(
            ixs,
            Some(&payer.pubkey()),
            &all,
            self.svm.latest_blockhash(),
        );
        let result = self.svm.send_transaction(tx).map_err(|failed| failed.err);
        self.svm.expire_blockhash();
        result
    }

    /// A new funded key with an associated token account holding `tokens`.
    pub fn user(&mut self, tokens: u64) -> (Keypair, Pubkey) {
        let user = Keypair::new();
        self.svm.airdrop(&user.pubkey(), 10 * SOL).expect("airdrop");
        let ata = self.token_account_for(&user.pubkey());
        if tokens > 0 {
            self.mint_to(&ata, tokens);
        }
        (user, ata)
    }

    /// Creates (if needed) the associated token account of `owner`.
    pub fn token_account_for(&mut self, owner: &Pubkey) -> Pubkey {
        let ata = pda::associated_token(owner, &self.mint);
        if self.svm.get_account(&ata).is_none() {
            let create = spl_associated_token_account_interface::instruction::create_associated_token_account(
                &self.mint_authority.pubkey(),
                owner,
                &self.mint,
                &spl_token_interface::ID,
            );
            let payer = self.mint_authority.insecure_clone();
            self.send(&[create], &payer, &[]).expect("create ATA");
        }
        ata
    }

    pub fn mint_to(&mut self, account: &Pubkey, amount: u64) {
        let ix = spl_token_interface::instruction::mint_to(
            &spl_token_interface::ID,
            &self.mint,
            account,
            &self.mint_authority.pubkey(),
            &[],
            amount,
        )
        .expect("mint_to");
        let payer = self.mint_authority.insecure_clone();
        self.send(&[ix], &payer, &[]).expect("mint_to");
    }

    pub fn token_balance(&self, account: &Pubkey) -> u64 {
        let data = self.svm.get_account(account).expect("token account").data;
        spl_token_interface::state::Account::unpack(&data)
            .expect("token account")
            .amount
    }

    pub fn account<T: AccountDeserialize>(&self, address: &Pubkey) -> T {
        let data = self.svm.get_account(address).expect("account exists").data;
        T::try_deserialize(&mut data.as_slice()).expect("decodes")
    }

    pub fn exists(&self, address: &Pubkey) -> bool {
        self.svm
            .get_account(address)
            .is_some_and(|a| a.lamports > 0)
    }

    pub fn config(&self) -> Config {
        self.account(&pda::config())
    }

    pub fn now(&self) -> i64 {
        self.svm
            .get_sysvar::<anchor_lang::prelude::Clock>()
            .unix_timestamp
    }

    /// Moves the clock forward by `seconds` (and a slot per 400 ms).
    pub fn warp(&mut self, seconds: i64) {
        let mut clock: anchor_lang::prelude::Clock = self.svm.get_sysvar();
        clock.unix_timestamp += seconds;
        clock.slot = clock
            .slot
            .saturating_add_signed(seconds.saturating_mul(5) / 2);
        self.svm.set_sysvar(&clock);
    }

    /// Moves the clock forward by `slots` slots (400 ms each).
    pub fn advance_slots(&mut self, slots: u64) {
        let mut clock: anchor_lang::prelude::Clock = self.svm.get_sysvar();
        clock.slot += slots;
        clock.unix_timestamp += (slots * 2 / 5) as i64;
        self.svm.set_sysvar(&clock);
    }

    /// The current slot.
    pub fn slot(&self) -> u64 {
        self.svm.get_sysvar::<anchor_lang::prelude::Clock>().slot
    }

    /// Moves the clock past `seed_slot` and makes SlotHashes show `hash` for
    /// it (and another hash for the slot before, so the draw is certain).
    /// In a real cluster the hash is whatever the leader's bank produced;
    /// here a test picks it, as anyone could search for one off-chain.
    pub fn reach_seed_slot(&mut self, seed_slot: u64, hash: [u8; 32]) {
        let mut clock: anchor_lang::prelude::Clock = self.svm.get_sysvar();
        if clock.slot <= seed_slot {
            clock.slot = seed_slot + 1;
            self.svm.set_sysvar(&clock);
        }
        self.set_slot_hashes(&[(seed_slot, hash), (seed_slot - 1, [0xEE; 32])]);
    }

    /// Sets the SlotHashes sysvar account to `entries` (newest first).
    pub fn set_slot_hashes(&mut self, entries: &[(u64, [u8; 32])]) {
        let id = solana_sdk_ids_slot_hashes();
        let existing = self.svm.get_account(&id);
        let account = Account {
            lamports: existing.as_ref().map_or(1_000_000, |a| a.lamports),
            data: slot_hashes::encode(entries),
            owner: existing.map_or(
                "Sysvar1111111111111111111111111111111111111"
                    .parse::<Pubkey>()
                    .expect("valid"),
                |a| a.owner,
            ),
            executable: false,
            rent_epoch: 0,
        };
        self.svm.set_account(id, account).expect("set slot hashes");
    }

    /// Rewrites the program account at `address` with `change` applied: the
    /// state an attacker would need many transactions (or years) to reach,
    /// set directly so a test can check what the program does there.
    pub fn patch<T: AccountDeserialize + anchor_lang::AccountSerialize>(
        &mut self,
        address: &Pubkey,
        change: impl FnOnce(&mut T),
    ) {
        let mut account = self.svm.get_account(address).expect("account exists");
        let mut value = T::try_deserialize(&mut account.data.as_slice()).expect("decodes");
        change(&mut value);
        let mut data = Vec::new();
        value.try_serialize(&mut data).expect("encodes");
        account.data[..data.len()].copy_from_slice(&data);
        self.svm
            .set_account(*address, account)
            .expect("set account");
    }

    /// The vault holds exactly what the ledger says it holds.
    #[track_caller]
    pub fn assert_vault_balanced(&self) {
        let c = self.config();
        let owed = c.total_stake + c.total_escrow + c.reward_pool + c.bonds_held;
        assert_eq!(
            self.token_balance(&pda::vault()),
            owed,
            "vault vs ledger totals: {c:?}"
        );
    }
}

fn solana_sdk_ids_slot_hashes() -> Pubkey {
    "SysvarS1otHashes111111111111111111111111111"
        .parse()
        .expect("valid")
}

/// The system program's CreateAccount instruction data (bincode of the enum).
fn system_create_account_data(lamports: u64, space: u64, owner: &Pubkey) -> Vec<u8> {
    let mut data = 0u32.to_le_bytes().to_vec();
    data.extend_from_slice(&lamports.to_le_bytes());
    data.extend_from_slice(&space.to_le_bytes());
    data.extend_from_slice(owner.as_ref());
    data
}
