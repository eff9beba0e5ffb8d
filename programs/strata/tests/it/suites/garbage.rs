//! Arbitrary instruction data and accounts: always an error, never a panic.
use proptest::prelude::*;

use crate::prelude::*;

/// Every instruction's discriminator, followed by arbitrary bytes and
/// arbitrary accounts, is refused with an error: never a panic (which
/// the native harness reports as `ProgramFailedToComplete`), never a success.
#[test]
fn arbitrary_instruction_data_is_refused_without_panic() {
    let env = std::cell::RefCell::new(Env::new());
    let (user, ata) = env.borrow_mut().user(1_000);
    let mint = env.borrow().mint;
    let known = [
        pda::config(),
        pda::vault(),
        ata,
        user.pubkey(),
        mint,
        anchor_lang::system_program::ID,
    ];
    let discriminators: Vec<Vec<u8>> = {
        use anchor_lang::Discriminator;
        use strata_program::instruction as i;
        vec![
            i::Initialize::DISCRIMINATOR.to_vec(),
            i::Stake::DISCRIMINATOR.to_vec(),
            i::Deposit::DISCRIMINATOR.to_vec(),
            i::RegisterNode::DISCRIMINATOR.to_vec(),
            i::RedeemVouchers::DISCRIMINATOR.to_vec(),
            i::OpenChallenge::DISCRIMINATOR.to_vec(),
            i::ClaimRewards::DISCRIMINATOR.to_vec(),
            i::PostBatch::DISCRIMINATOR.to_vec(),
            vec![],
        ]
    };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(200));
    let strategy = (
        0..discriminators.len(),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec((0..known.len(), any::<bool>()), 0..10),
    );
    runner
        .run(&strategy, |(d, tail, metas)| {
            let mut data = discriminators[d].clone();
            data.extend_from_slice(&tail);
            let accounts = metas
                .iter()
                .map(|(k, w)| {
                    let key = known[*k];
                    let signer = key == user.pubkey();
                    if *w {
                        AccountMeta::new(key, signer)
                    } else {
                        AccountMeta::new_readonly(key, signer)
                    }
                })
                .collect();
            let ix = solana_instruction::Instruction {
                program_id: PROGRAM_ID,
                accounts,
                data,
            };
            let result = env.borrow_mut().send(&[ix], &user, &[]);
            match result {
                Ok(_) => Err(TestCaseError::fail("garbage succeeded")),
                Err(solana_transaction_error::TransactionError::InstructionError(
                    _,
                    solana_instruction::error::InstructionError::ProgramFailedToComplete,
                )) => Err(TestCaseError::fail("the program panicked")),
                Err(_) => Ok(()),
            }
        })
        .unwrap();
    env.borrow().assert_vault_balanced();
}
