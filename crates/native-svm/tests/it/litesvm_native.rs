//! A native program run through real signed LiteSVM transactions.

use {
    crate::support::*,
    litesvm::LiteSVM,
    native_svm::{add_native_program, program_data_from_logs},
    solana_account::Account,
    solana_keypair::Keypair,
    solana_program_pack_v3::Pack,
    solana_pubkey_v3::Pubkey,
    solana_signer::Signer,
    solana_transaction::{
        AccountMeta, Instruction, InstructionError, Message, Transaction, TransactionError,
    },
    spl_token_interface_v3::state::{Account as TokenAccount, AccountState, Mint},
};

const LAMPORTS: u64 = 10_000_000_000;

struct Env {
    svm: LiteSVM,
    program_id: Pubkey,
    payer: Keypair,
}

fn env() -> Env {
    let mut svm = LiteSVM::new();
    let program_id = Pubkey::new_unique();
    add_native_program(&mut svm, program_id, process_instruction);
    let payer = Keypair::new();
    svm.airdrop(&payer.pubkey(), LAMPORTS).expect("airdrop");
    Env {
        svm,
        program_id,
        payer,
    }
}

impl Env {
    fn ix(&self, data: Vec<u8>, accounts: Vec<AccountMeta>) -> Instruction {
        Instruction::new_with_bytes(self.program_id, &data, accounts)
    }

    /// Sends `ixs` signed by the payer and `signers`.
    fn send(
        &mut self,
        ixs: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<litesvm::types::TransactionMetadata, TransactionError> {
        let mut all: Vec<&Keypair> = vec![&self.payer];
        all.extend_from_slice(signers);
        let tx = Transaction::new_signed_with_payer(
            ixs,
            Some(&self.payer.pubkey()),
            &all,
            self.svm.latest_blockhash(),
        );
        let result = self.svm.send_transaction(tx).map_err(|failed| {
            eprintln!("{}", failed.meta.pretty_logs());
            failed.err
        });
        self.svm.expire_blockhash();
        result
    }

    /// A rent-exempt account owned by `owner` holding `data`.
    fn put(&mut self, owner: Pubkey, data: Vec<u8>) -> Pubkey {
        let key = Pubkey::new_unique();
        let account = Account {
            lamports: self.svm.minimum_balance_for_rent_exemption(data.len()),
            data,
            owner,
            executable: false,
            rent_epoch: 0,
        };
        self.svm.set_account(key, account).expect("set_account");
        key
    }
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().unwrap())
}

#[test]
fn sysvars_come_from_the_runtime() {
    let mut env = env();
    let mut clock: solana_clock_v3::Clock = env.svm.get_sysvar();
    clock.slot = 4242;
    clock.unix_timestamp = 1_700_000_123;
    env.svm.set_sysvar(&clock);
    // SlotHashes: 1 entry (slot 4241, hash of 0x5A bytes).
    let mut slot_hashes = 1u64.to_le_bytes().to_vec();
    slot_hashes.extend_from_slice(&4241u64.to_le_bytes());
    slot_hashes.extend_from_slice(&[0x5A; 32]);
    let mut slot_hashes_account = env
        .svm
        .get_account(&solana_sysvar_v3::slot_hashes::ID)
        .expect("LiteSVM provides SlotHashes");
    slot_hashes_account.data = slot_hashes.clone();
    env.svm
        .set_account(solana_sysvar_v3::slot_hashes::ID, slot_hashes_account)
        .unwrap();

    let out = env.put(env.program_id, vec![0; 80]);
    let ix = env.ix(vec![SYSVARS], vec![AccountMeta::new(out, false)]);
    env.send(&[ix], &[]).expect("sysvars tx");

    let data = env.svm.get_account(&out).unwrap().data;
    assert_eq!(u64_at(&data, 0), 4242);
    assert_eq!(u64_at(&data, 8), 1_700_000_123);
    assert_eq!(
        u64_at(&data, 16),
        env.svm.minimum_balance_for_rent_exemption(1000)
    );
    let schedule = env
        .svm
        .get_account(&solana_sysvar_v3::epoch_schedule::ID)
        .unwrap()
        .data;
    assert_eq!(u64_at(&data, 24), u64_at(&schedule, 0));
    assert_eq!(&data[32..80], &slot_hashes[..]);
}

#[test]
fn system_transfer_via_invoke() {
    let mut env = env();
    let to = Pubkey::new_unique();
    let amount = 1_234_567u64;
    let ix = env.ix(
        [vec![TRANSFER], amount.to_le_bytes().to_vec()].concat(),
        vec![
            AccountMeta::new(env.payer.pubkey(), true),
            AccountMeta::new(to, false),
            AccountMeta::new_readonly(solana_system_interface_v3::program::ID, false),
        ],
    );
    let before = env.svm.get_balance(&env.payer.pubkey()).unwrap();
    let meta = env.send(&[ix], &[]).expect("transfer tx");
    assert_eq!(env.svm.get_balance(&to), Some(amount));
    assert_eq!(
        env.svm.get_balance(&env.payer.pubkey()),
        Some(before - amount - meta.fee)
    );
}

fn create_pda_ix(env: &Env, bump: u8, pda: Pubkey, space: u64) -> Instruction {
    env.ix(
        [vec![CREATE_PDA, bump], space.to_le_bytes().to_vec()].concat(),
        vec![
            AccountMeta::new(env.payer.pubkey(), true),
            AccountMeta::new(pda, false),
            AccountMeta::new_readonly(solana_system_interface_v3::program::ID, false),
        ],
    )
}

#[test]
fn create_pda_with_invoke_signed() {
    let mut env = env();
    let payer = env.payer.pubkey();
    let (pda, bump) = Pubkey::find_program_address(&[b"vault", payer.as_ref()], &env.program_id);
    env.send(&[create_pda_ix(&env, bump, pda, 100)], &[])
        .expect("create pda tx");
    let account = env.svm.get_account(&pda).expect("pda exists");
    assert_eq!(account.owner, env.program_id);
    assert_eq!(account.data, vec![0xAB; 100]);
    assert_eq!(
        account.lamports,
        env.svm.minimum_balance_for_rent_exemption(100)
    );
}

#[test]
fn create_pda_with_wrong_seeds_is_refused() {
    let mut env = env();
    let payer = env.payer.pubkey();
    let (pda, bump) = Pubkey::find_program_address(&[b"vault", payer.as_ref()], &env.program_id);
    // Find a bump whose address is off-curve but is not `pda`.
    let wrong = (0..bump)
        .rev()
        .find(|b| {
            Pubkey::create_program_address(&[b"vault", payer.as_ref(), &[*b]], &env.program_id)
                .is_ok()
        })
        .expect("another valid bump");
    let err = env
        .send(&[create_pda_ix(&env, wrong, pda, 100)], &[])
        .unwrap_err();
    assert_eq!(
        err,
        TransactionError::InstructionError(0, InstructionError::PrivilegeEscalation)
    );
    assert!(env.svm.get_account(&pda).is_none_or(|a| a.lamports == 0));
}

#[test]
fn spl_token_transfer_signed_by_pda() {
    let mut env = env();
    let token_program = spl_token_interface_v3::ID;
    let (authority, bump) = Pubkey::find_program_address(&[b"authority"], &env.program_id);
    let mut mint = vec![0; Mint::LEN];
    Mint {
        supply: 1_000,
        decimals: 6,
        is_initialized: true,
        ..Mint::default()
    }
    .pack_into_slice(&mut mint);
    let mint = env.put(token_program, mint);
    let token_account = |owner: Pubkey, amount: u64| {
        let mut data = vec![0; TokenAccount::LEN];
        TokenAccount {
            mint,
            owner,
            amount,
            state: AccountState::Initialized,
            ..TokenAccount::default()
        }
        .pack_into_slice(&mut data);
        data
    };
    let vault = env.put(token_program, token_account(authority, 1_000));
    let user = Keypair::new();
    let dest = env.put(token_program, token_account(user.pubkey(), 0));

    let ix = env.ix(
        [vec![TOKEN_TRANSFER, bump], 400u64.to_le_bytes().to_vec()].concat(),
        vec![
            AccountMeta::new(vault, false),
            AccountMeta::new(dest, false),
            AccountMeta::new_readonly(authority, false),
            AccountMeta::new_readonly(token_program, false),
        ],
    );
    env.send(&[ix], &[]).expect("token transfer tx");
    let amount = |key: &Pubkey, env: &Env| {
        TokenAccount::unpack(&env.svm.get_account(key).unwrap().data)
            .unwrap()
            .amount
    };
    assert_eq!(amount(&vault, &env), 600);
    assert_eq!(amount(&dest, &env), 400);

    // The same transfer with a wrong bump does not sign for the authority.
    let ix = env.ix(
        [
            vec![TOKEN_TRANSFER, bump.wrapping_sub(1)],
            1u64.to_le_bytes().to_vec(),
        ]
        .concat(),
        vec![
            AccountMeta::new(vault, false),
            AccountMeta::new(dest, false),
            AccountMeta::new_readonly(authority, false),
            AccountMeta::new_readonly(token_program, false),
        ],
    );
    assert!(env.send(&[ix], &[]).is_err());
    assert_eq!(amount(&vault, &env), 600);
}

#[test]
fn account_writes_and_resize_persist() {
    let mut env = env();
    let out = env.put(env.program_id, vec![0; 4]);
    // Top up so the grown account stays rent exempt.
    env.svm.airdrop(&out, 1_000_000).unwrap();
    let payload: Vec<u8> = (1..=40).collect();
    let ix = env.ix(
        [vec![WRITE], payload.clone()].concat(),
        vec![AccountMeta::new(out, false)],
    );
    let meta = env.send(&[ix], &[]).expect("write tx");
    assert_eq!(env.svm.get_account(&out).unwrap().data, payload);
    // Top-level stack height is 1; return data reaches the transaction metadata.
    assert_eq!(meta.return_data.program_id, env.program_id);
    assert_eq!(meta.return_data.data, vec![1, 40]);

    // Writing an account the program does not own is refused by the runtime.
    let foreign = env.put(Pubkey::new_unique(), vec![0; 4]);
    let ix = env.ix(
        vec![WRITE, 9, 9, 9, 9],
        vec![AccountMeta::new(foreign, false)],
    );
    assert_eq!(
        env.send(&[ix], &[]).unwrap_err(),
        TransactionError::InstructionError(0, InstructionError::ExternalAccountDataModified)
    );
}

#[test]
fn custom_error_code_survives() {
    let mut env = env();
    for code in [2003u32, 6001] {
        let ix = env.ix([vec![FAIL], code.to_le_bytes().to_vec()].concat(), vec![]);
        assert_eq!(
            env.send(&[ix], &[]).unwrap_err(),
            TransactionError::InstructionError(0, InstructionError::Custom(code))
        );
    }
}

#[test]
fn forged_or_missing_signature_is_refused() {
    let mut env = env();
    let user = Keypair::new();
    env.svm.airdrop(&user.pubkey(), LAMPORTS).unwrap();
    let to = Pubkey::new_unique();
    let ix = env.ix(
        [vec![TRANSFER], 1_000_000u64.to_le_bytes().to_vec()].concat(),
        vec![
            AccountMeta::new(user.pubkey(), true),
            AccountMeta::new(to, false),
            AccountMeta::new_readonly(solana_system_interface_v3::program::ID, false),
        ],
    );
    let message = Message::new(&[ix], Some(&env.payer.pubkey()));

    // Missing: only the payer signs.
    let mut missing = Transaction::new_unsigned(message.clone());
    missing.partial_sign(&[&env.payer], env.svm.latest_blockhash());
    assert!(env.svm.send_transaction(missing).is_err());

    // Forged: the user's slot holds a signature by another key.
    let mut forged = Transaction::new_unsigned(message);
    let blockhash = env.svm.latest_blockhash();
    forged.partial_sign(&[&env.payer], blockhash);
    let impostor = Keypair::new();
    let position = forged
        .message
        .account_keys
        .iter()
        .position(|k| *k == user.pubkey())
        .unwrap();
    forged.signatures[position] = impostor.sign_message(&forged.message_data());
    let err = env.svm.send_transaction(forged).unwrap_err().err;
    assert_eq!(err, TransactionError::SignatureFailure);
    assert_eq!(env.svm.get_balance(&to), None);
}

#[test]
fn log_data_reaches_transaction_logs() {
    let mut env = env();
    let ix = env.ix(vec![LOG_DATA, 1, 2, 3], vec![]);
    let meta = env.send(&[ix], &[]).expect("log tx");
    assert!(
        meta.logs
            .iter()
            .any(|l| l == "Program log: hello from native"),
        "{:?}",
        meta.logs
    );
    let data = program_data_from_logs(&meta.logs).unwrap();
    assert_eq!(data, vec![vec![b"event".to_vec(), vec![1, 2, 3]]]);
}

#[test]
fn caller_changes_are_visible_to_the_callee() {
    let mut env = env();
    let vault = env.put(env.program_id, vec![0; 8]);
    env.svm.airdrop(&vault, 5_000_000).unwrap();
    let vault_before = env.svm.get_balance(&vault).unwrap();
    let user = Keypair::new();
    env.svm.airdrop(&user.pubkey(), 1_000_000).unwrap();
    let ix = env.ix(
        vec![SWEEP],
        vec![
            AccountMeta::new(vault, false),
            AccountMeta::new(user.pubkey(), true),
            AccountMeta::new_readonly(solana_system_interface_v3::program::ID, false),
        ],
    );
    env.send(&[ix], &[&user]).expect("sweep tx");
    assert_eq!(env.svm.get_balance(&vault), Some(vault_before + 1_000_000));
    assert!(env.svm.get_balance(&user.pubkey()).is_none_or(|l| l == 0));
}

#[test]
fn cpi_into_another_native_program() {
    let mut env = env();
    let writer = Pubkey::new_unique();
    add_native_program(&mut env.svm, writer, process_instruction);
    let target = env.put(writer, vec![0; 2]);
    env.svm.airdrop(&target, 1_000_000).unwrap();
    let ix = env.ix(
        vec![CALL_WRITER, 7, 7, 7, 7, 7],
        vec![
            AccountMeta::new(target, false),
            AccountMeta::new_readonly(writer, false),
        ],
    );
    env.send(&[ix], &[]).expect("native cpi tx");
    assert_eq!(env.svm.get_account(&target).unwrap().data, vec![7; 5]);
}
