//! A test environment: the Strata program registered natively in a real
//! LiteSVM runtime (with the SPL Token and ATA programs it preloads), a mint,
//! and helpers that send real signed transactions.
#![allow(dead_code)]

pub mod dispute;

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
use strata_chain::ed25519::{verify_instruction, SignedMessage};
use strata_chain::merkle::domains::Ledger;
use strata_chain::{
    ix, merkle, messages, pda, Capacity, ConfigParams, Pubkey, PROGRAM_ID, ROLE_COMPUTE,
    ROLE_VERIFIER,
};
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
        env.set_slot_hash([7; 32]);
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

    /// Sets the SlotHashes sysvar account to a single recent entry.
    pub fn set_slot_hash(&mut self, hash: [u8; 32]) {
        let id = solana_sdk_ids_slot_hashes();
        let existing = self.svm.get_account(&id);
        let slot = self.svm.get_sysvar::<anchor_lang::prelude::Clock>().slot;
        let mut data = 1u64.to_le_bytes().to_vec();
        data.extend_from_slice(&slot.saturating_sub(1).to_le_bytes());
        data.extend_from_slice(&hash);
        let account = Account {
            lamports: existing.as_ref().map_or(1_000_000, |a| a.lamports),
            data,
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

    /// Registers a node with `roles` and stakes `stake`.
    pub fn node(&mut self, roles: u8, stake: u64) -> (Keypair, Pubkey) {
        let (op, ata) = self.user(stake.max(1) * 10);
        let register = ix::register_node(
            &op.pubkey(),
            vec!["/ip4/127.0.0.1/tcp/4001".into()],
            Capacity {
                memory_mb: 8_192,
                compute_score: 2_600,
                bandwidth_mbps: 100,
            },
            roles,
        );
        let mut ixs = vec![register];
        if stake > 0 {
            ixs.push(ix::stake(&op.pubkey(), &ata, &self.mint, stake));
        }
        self.send(&ixs, &op, &[]).expect("register and stake");
        (op, ata)
    }

    pub fn compute_node(&mut self, stake: u64) -> (Keypair, Pubkey) {
        self.node(ROLE_COMPUTE, stake)
    }

    pub fn verifier(&mut self, stake: u64) -> (Keypair, Pubkey) {
        self.node(ROLE_VERIFIER, stake)
    }

    /// A client with `deposit` in escrow.
    pub fn client(&mut self, deposit: u64) -> (Keypair, Pubkey) {
        let (client, ata) = self.user(deposit * 2);
        self.send(
            &[ix::deposit(&client.pubkey(), &ata, deposit)],
            &client,
            &[],
        )
        .expect("deposit");
        (client, ata)
    }

    /// A relayer the admin allowed.
    pub fn relayer(&mut self) -> Keypair {
        let relayer = Keypair::new();
        self.svm
            .airdrop(&relayer.pubkey(), 10 * SOL)
            .expect("airdrop");
        let admin = self.admin.insecure_clone();
        self.send(
            &[ix::add_relayer(&admin.pubkey(), &relayer.pubkey())],
            &admin,
            &[],
        )
        .expect("add relayer");
        relayer
    }

    /// Posts a batch of `leaves` and returns its id.
    pub fn post_batch(&mut self, relayer: &Keypair, leaves: &[[u8; 32]]) -> u64 {
        let id = self.config().next_batch_id;
        let epoch = self.config().epoch_at(self.now());
        let ix = ix::post_batch(
            &relayer.pubkey(),
            id,
            epoch,
            merkle::root::<Ledger>(leaves),
            leaves.len() as u32,
            1_000,
        );
        self.send(&[ix], relayer, &[]).expect("post batch");
        id
    }

    /// The ed25519 + redeem pair for `vouchers` (client, node, node token, cumulative).
    pub fn redeem_ixs(
        &self,
        payer: &Pubkey,
        vouchers: &[(&Keypair, Pubkey, Pubkey, u64)],
    ) -> Vec<Instruction> {
        let signed: Vec<_> = vouchers
            .iter()
            .map(|(client, node, _, cumulative)| {
                SignedMessage::sign(
                    client,
                    &messages::voucher_message(PROGRAM_ID.as_array(), node.as_array(), *cumulative),
                )
            })
            .collect();
        let accounts: Vec<_> = vouchers
            .iter()
            .map(|(client, node, node_token, _)| ix::VoucherAccounts {
                client: client.pubkey(),
                node: *node,
                node_token: *node_token,
            })
            .collect();
        vec![
            verify_instruction(&signed).expect("ed25519 ix"),
            ix::redeem_vouchers(payer, &accounts),
        ]
    }

    /// The ed25519 + resolve pair for a verdict signed by `voters` (the first submits).
    pub fn verdict_ixs(
        challenge: &Pubkey,
        accused: &Pubkey,
        challenger_token: &Pubkey,
        voters: &[&Keypair],
        upheld: bool,
    ) -> Vec<Instruction> {
        let msg = messages::verdict_message(PROGRAM_ID.as_array(), challenge.as_array(), upheld);
        let signed: Vec<_> = voters
            .iter()
            .map(|v| SignedMessage::sign(v, &msg))
            .collect();
        let keys: Vec<_> = voters.iter().map(|v| v.pubkey()).collect();
        vec![
            verify_instruction(&signed).expect("ed25519 ix"),
            ix::resolve_challenge(
                &keys[0],
                challenge,
                accused,
                challenger_token,
                &keys,
                upheld,
            ),
        ]
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
