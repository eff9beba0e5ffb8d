//! Transaction sizes against Solana's 1232-byte packet limit, and how many
//! vouchers or verdict signatures fit in one transaction. Prints the table
//! reported in the docs; asserts only what must hold (it fits, it executes).

use strata_chain::budget::{self, with_budget};
use strata_chain::limits::{MAX_MULTIADDRS, MAX_MULTIADDR_LEN};
use strata_chain::tx::{sign, wire_size, LAMPORTS_PER_SIGNATURE, PACKET_DATA_SIZE};

use crate::prelude::*;

/// Bytes of the transaction `ChainClient::send` makes of `ixs`: behind the
/// compute-unit limit instruction, without a priority fee.
fn size(ixs: &[solana_instruction::Instruction], payer: &Keypair, signers: &[&Keypair]) -> usize {
    priced_size(ixs, payer, signers, 0)
}

/// The same with a priority fee of `micro_lamports` (0: none).
fn priced_size(
    ixs: &[solana_instruction::Instruction],
    payer: &Keypair,
    signers: &[&Keypair],
    micro_lamports: u64,
) -> usize {
    let budgeted = with_budget(ixs, micro_lamports, None);
    wire_size(&sign(&budgeted, payer, signers, Default::default()))
}

fn voucher_ixs(
    payer: &Pubkey,
    n: usize,
    same_node: bool,
) -> (Vec<solana_instruction::Instruction>, Vec<Keypair>) {
    let clients: Vec<Keypair> = (0..n).map(|_| Keypair::new()).collect();
    let node = Pubkey::new_unique();
    let node_token = Pubkey::new_unique();
    let signed: Vec<_> = clients
        .iter()
        .map(|c| {
            SignedMessage::sign(
                c,
                &messages::voucher_message(PROGRAM_ID.as_array(), node.as_array(), u64::MAX),
            )
        })
        .collect();
    let accounts: Vec<_> = clients
        .iter()
        .map(|c| ix::VoucherAccounts {
            client: c.pubkey(),
            node,
            node_token: if same_node {
                node_token
            } else {
                Pubkey::new_unique()
            },
        })
        .collect();
    (
        vec![
            verify_instruction(&signed).unwrap(),
            ix::redeem_vouchers(payer, &accounts),
        ],
        clients,
    )
}

/// The largest number of vouchers from distinct clients per transaction,
/// all to one node (how a relayer groups them) or each to another node.
fn max_vouchers(payer: &Keypair, same_node: bool) -> usize {
    max_vouchers_priced(payer, same_node, 0)
}

/// [`max_vouchers`] with a priority fee (its price instruction takes room).
fn max_vouchers_priced(payer: &Keypair, same_node: bool, micro_lamports: u64) -> usize {
    (1..=32)
        .take_while(|&n| {
            let ixs = voucher_ixs(&payer.pubkey(), n, same_node).0;
            priced_size(&ixs, payer, &[], micro_lamports) <= PACKET_DATA_SIZE
        })
        .last()
        .unwrap_or(0)
}

#[test]
fn largest_instructions_fit_and_report_sizes() {
    let p = Keypair::new();
    let k = p.pubkey();
    let long_addrs = vec!["/".repeat(MAX_MULTIADDR_LEN); MAX_MULTIADDRS];
    let caps = Capacity {
        memory_mb: u32::MAX,
        compute_score: u32::MAX,
        bandwidth_mbps: u32::MAX,
    };
    let deep = |levels: usize| ReceiptClaim {
        leaf_index: u32::MAX,
        task_id: [0; 32],
        receipt_digest: [0; 32],
        proof: vec![[0; 32]; levels],
    };
    let verdict_voters: Vec<Keypair> = (0..3).map(|_| Keypair::new()).collect();
    let verdict_msgs: Vec<_> = verdict_voters
        .iter()
        .map(|v| {
            SignedMessage::sign(
                v,
                &messages::verdict_message(
                    PROGRAM_ID.as_array(),
                    Pubkey::new_unique().as_array(),
                    true,
                ),
            )
        })
        .collect();
    let voter_keys: Vec<_> = verdict_voters.iter().map(|v| v.pubkey()).collect();
    let m = Pubkey::new_unique();
    // A challenge's batch: its own key, as in a real transaction.
    let b = Pubkey::new_unique();
    let rows: Vec<(&str, usize)> = vec![
        (
            "initialize",
            size(&[ix::initialize(&k, &m, params(), &k)], &p, &[]),
        ),
        (
            "update_config",
            size(&[ix::update_config(&k, params(), &k)], &p, &[]),
        ),
        (
            "register_node (4 x 96-byte multiaddrs)",
            size(
                &[ix::register_node(&k, long_addrs.clone(), caps, 3)],
                &p,
                &[],
            ),
        ),
        (
            "update_node (4 x 96-byte multiaddrs)",
            size(&[ix::update_node(&k, long_addrs, caps, 3)], &p, &[]),
        ),
        ("stake", size(&[ix::stake(&k, &m, &m, 1)], &p, &[])),
        ("deposit", size(&[ix::deposit(&k, &m, 1)], &p, &[])),
        ("withdraw", size(&[ix::withdraw(&k, &m)], &p, &[])),
        (
            "post_batch",
            size(&[ix::post_batch(&k, 0, 0, [0; 32], 1, 1)], &p, &[]),
        ),
        ("seal_batch", size(&[ix::seal_batch(0)], &p, &[])),
        ("close_batch", size(&[ix::close_batch(&k, 0)], &p, &[])),
        ("draw_committee", size(&[ix::draw_committee(&m)], &p, &[])),
        (
            "expire_challenge",
            size(&[ix::expire_challenge(&k, &m, &b, &m, &m, &m)], &p, &[]),
        ),
        (
            "open_challenge (2^20-leaf batch, 20-hash proof)",
            size(&[ix::open_challenge(&k, &m, 0, &m, deep(20))], &p, &[]),
        ),
        (
            "resolve_challenge (3 verifier signatures)",
            size(
                &[
                    verify_instruction(&verdict_msgs).unwrap(),
                    ix::resolve_challenge(&k, &m, &b, &m, &m, &voter_keys, true),
                ],
                &p,
                &[],
            ),
        ),
        (
            "publish_rewards",
            size(&[ix::publish_rewards(&k, 0, [0; 32], 1, 1)], &p, &[]),
        ),
        (
            "claim_rewards (2^20 nodes, 20-hash proof)",
            size(
                &[ix::claim_rewards(&k, &m, 0, 1, 0, vec![[0; 32]; 20])],
                &p,
                &[],
            ),
        ),
        (
            "redeem_vouchers (1 voucher)",
            size(&voucher_ixs(&k, 1, true).0, &p, &[]),
        ),
    ];
    let vouchers = max_vouchers(&p, true);
    let spread = max_vouchers(&p, false);
    println!("\n| instruction (largest form) | bytes | of 1232 |");
    println!("|---|---:|---:|");
    for (name, bytes) in &rows {
        println!(
            "| {name} | {bytes} | {:.0} % |",
            *bytes as f64 * 100.0 / PACKET_DATA_SIZE as f64
        );
        assert!(*bytes <= PACKET_DATA_SIZE, "{name} is {bytes} bytes");
    }
    println!(
        "| redeem_vouchers ({vouchers} clients -> 1 node) | {} | |",
        size(&voucher_ixs(&k, vouchers, true).0, &p, &[])
    );
    println!(
        "| redeem_vouchers ({spread} clients -> {spread} nodes) | {} | |",
        size(&voucher_ixs(&k, spread, false).0, &p, &[])
    );
    println!(
        "\nvouchers per transaction: {vouchers} to one node, {spread} to distinct nodes; fee per voucher: {} lamports \
         (the transaction signature plus one precompile signature per voucher, {LAMPORTS_PER_SIGNATURE} lamports each)",
        LAMPORTS_PER_SIGNATURE * (1 + vouchers as u64) / vouchers as u64
    );
    println!("claims per transaction: 1 (each claim is signed by its operator; a second signer adds 64 bytes and another claim ~{} bytes)", rows[11].1 - 64 - 3);
    assert!(vouchers >= 2, "a batch must settle more than one voucher");
    // What the relayer groups (relayer::redeemer::VOUCHERS_PER_TX and
    // VOUCHERS_PER_TX_PRICED): 3 fit behind the limit, 2 with a price too.
    assert_eq!(vouchers, 3);
    assert_eq!(max_vouchers_priced(&p, true, 1), 2);
}

/// The compute-unit limit each instruction's transaction asks for (its
/// largest form, as above), printed for docs/devnet.md.
#[test]
fn compute_unit_limits_report() {
    let k = Pubkey::new_unique();
    let m = Pubkey::new_unique();
    let voucher = || ix::VoucherAccounts {
        client: Pubkey::new_unique(),
        node: m,
        node_token: m,
    };
    let claim = |levels: usize| ReceiptClaim {
        leaf_index: 0,
        task_id: [0; 32],
        receipt_digest: [0; 32],
        proof: vec![[0; 32]; levels],
    };
    let addrs = vec!["/".repeat(MAX_MULTIADDR_LEN); MAX_MULTIADDRS];
    let rows: Vec<(&str, solana_instruction::Instruction)> = vec![
        ("initialize", ix::initialize(&k, &m, params(), &k)),
        ("update_config", ix::update_config(&k, params(), &k)),
        ("add_relayer", ix::add_relayer(&k, &m)),
        ("remove_relayer", ix::remove_relayer(&k, &m)),
        (
            "register_node",
            ix::register_node(&k, addrs.clone(), Capacity::default(), 3),
        ),
        (
            "update_node",
            ix::update_node(&k, addrs, Capacity::default(), 3),
        ),
        ("stake", ix::stake(&k, &m, &m, 1)),
        ("request_unstake", ix::request_unstake(&k, 1)),
        ("withdraw_stake", ix::withdraw_stake(&k, &m)),
        ("deregister_node", ix::deregister_node(&k)),
        (
            "deposit (first: creates the escrow)",
            ix::deposit(&k, &m, 1),
        ),
        ("request_withdrawal", ix::request_withdrawal(&k, 1)),
        ("withdraw", ix::withdraw(&k, &m)),
        ("post_batch", ix::post_batch(&k, 0, 0, [0; 32], 1, 1)),
        ("seal_batch", ix::seal_batch(0)),
        (
            "redeem_vouchers, 1 voucher",
            ix::redeem_vouchers(&k, &[voucher()]),
        ),
        (
            "redeem_vouchers, 3 vouchers",
            ix::redeem_vouchers(&k, &[voucher(), voucher(), voucher()]),
        ),
        (
            "open_challenge, 20-hash proof",
            ix::open_challenge(&k, &m, 0, &m, claim(20)),
        ),
        ("draw_committee", ix::draw_committee(&m)),
        (
            "resolve_challenge, 3 verifiers",
            ix::resolve_challenge(&k, &m, &m, &m, &m, &[k, m, Pubkey::new_unique()], true),
        ),
        (
            "expire_challenge",
            ix::expire_challenge(&k, &m, &m, &m, &m, &m),
        ),
        ("close_batch", ix::close_batch(&k, 0)),
        ("fund_rewards", ix::fund_rewards(&k, &m, 1)),
        ("publish_rewards", ix::publish_rewards(&k, 0, [0; 32], 1, 1)),
        (
            "claim_rewards (first), 20-hash proof",
            ix::claim_rewards(&k, &m, 0, 1, 0, vec![[0; 32]; 20]),
        ),
    ];
    println!("\n| instruction | estimate (CU) | limit requested |");
    println!("|---|---:|---:|");
    for (name, ix) in rows {
        let units = budget::estimate(&ix);
        let limit = budget::limit(std::slice::from_ref(&ix), false);
        println!("| {name} | {units} | {limit} |");
        assert!(
            u64::from(limit) > units,
            "{name}: a margin over the estimate"
        );
        assert!(limit <= budget::MAX_COMPUTE_UNIT_LIMIT);
    }
}

#[test]
fn the_largest_voucher_batch_executes() {
    let mut env = Env::new();
    let payer = env.relayer();
    let n = max_vouchers(&payer, true);
    let (node, node_ata) = env.compute_node(MIN_STAKE);
    let clients: Vec<Keypair> = (0..n).map(|_| env.client(1_000).0).collect();
    let vouchers: Vec<_> = clients
        .iter()
        .map(|c| (c, node.pubkey(), node_ata, 100))
        .collect();
    let ixs = env.redeem_ixs(&payer.pubkey(), &vouchers);
    let tx_size = size(&ixs, &payer, &[]);
    assert!(tx_size <= PACKET_DATA_SIZE);
    let before = env.token_balance(&node_ata);
    let lamports_before = env.svm.get_balance(&payer.pubkey()).unwrap();
    // Sent as ChainClient sends it, behind its compute-unit limit: the
    // runtime accepts the budget instruction, and the part it meters here
    // (the SPL Token CPIs, the system program; the native program itself
    // counts 1 unit) stays under the limit.
    let limit = budget::limit(&ixs, false);
    let meta = env
        .send(&with_budget(&ixs, 0, None), &payer, &[])
        .expect("the largest batch settles");
    println!(
        "\n{n} vouchers: limit {limit} CU requested, {} CU metered here (token CPIs, system program, budget instruction; the native program is not metered)",
        meta.compute_units_consumed
    );
    assert!(meta.compute_units_consumed < u64::from(limit));
    assert_eq!(env.token_balance(&node_ata) - before, n as u64 * 90);
    let spent = lamports_before - env.svm.get_balance(&payer.pubkey()).unwrap();
    let rent = env
        .svm
        .minimum_balance_for_rent_exemption(8 + 32 + 32 + 8 + 2 + 16);
    println!(
        "\n{n} vouchers (same node, {tx_size} bytes) settled in one transaction: {spent} lamports paid, of which fee {} and channel rent {} x {n} (first redemption only)",
        spent - rent * n as u64,
        rent
    );
    // The same clients' next vouchers cost only the fee.
    let vouchers: Vec<_> = clients
        .iter()
        .map(|c| (c, node.pubkey(), node_ata, 200))
        .collect();
    let ixs = env.redeem_ixs(&payer.pubkey(), &vouchers);
    let before = env.svm.get_balance(&payer.pubkey()).unwrap();
    env.send(&ixs, &payer, &[]).unwrap();
    let fee = before - env.svm.get_balance(&payer.pubkey()).unwrap();
    println!(
        "next round: {fee} lamports for {n} vouchers = {} lamports per voucher",
        fee / n as u64
    );
    assert_eq!(
        fee,
        LAMPORTS_PER_SIGNATURE * (1 + n as u64),
        "signatures only, no new accounts"
    );
    let _ = merkle::root::<Ledger>(&[]);
}
