//! Redemption: for every (client, node) channel whose latest voucher exceeds
//! what the Channel account says is redeemed, `redeem_vouchers` pays the
//! difference, at most three vouchers to one node per transaction (what fits
//! in 1232 bytes; two when a priority fee adds its instruction).
//!
//! Vouchers are cumulative and the program pays only `cumulative − redeemed`,
//! so sending one twice (after a crash, or a lost confirmation) cannot pay
//! twice: the chain is the source of truth, and what the relayer records is
//! reconciled with it every round.

use std::collections::BTreeMap;

use strata_chain::accounts::Channel;
use strata_chain::ix::VoucherAccounts;
use strata_chain::{ed25519, ix, pda, token, ChainError, Pubkey, Signer};
use strata_wire::Voucher;
use tracing::{info, warn};

use crate::chain::bps_of;
use crate::store::Settlement;
use crate::{now_ms, Ctx, RelayerError};

/// Vouchers per transaction to one node: what fits in 1232 bytes with the
/// compute-unit limit instruction (1,224 bytes for three).
pub const VOUCHERS_PER_TX: usize = 3;
/// The same with a priority fee: the price instruction's 12 bytes push
/// three vouchers to 1,236 bytes, so two.
pub const VOUCHERS_PER_TX_PRICED: usize = 2;

/// A voucher to redeem and what its channel had redeemed before.
#[derive(Clone, Copy)]
struct Due {
    voucher: Voucher,
    redeemed: u64,
}

/// One round: reconcile recorded redemptions with the chain, then redeem what is due.
pub async fn round(ctx: &Ctx) -> Result<(), RelayerError> {
    let config = ctx.chain.config().await?;
    let fee_bps = config.params.protocol_fee_bps;
    let mut due: BTreeMap<[u8; 32], Vec<Due>> = BTreeMap::new();
    for channel in ctx.store.channels()? {
        if channel.latest.cumulative <= channel.recorded {
            continue;
        }
        let v = channel.latest;
        let address = pda::channel(&v.client_key(), &v.node_key());
        let redeemed = ctx
            .chain
            .account::<Channel>(&address, "channel")
            .await?
            .map_or(0, |c| c.redeemed);
        if redeemed > channel.recorded {
            // Redeemed on-chain but not recorded here: a crash came
            // between the transaction and its record.
            let amount = redeemed - channel.recorded;
            let fee = bps_of(amount, fee_bps);
            ctx.store.record_settlement(&Settlement {
                signature: None,
                client: v.client,
                node: v.node,
                cumulative: redeemed,
                amount,
                paid: amount - fee,
                fee,
                at_ms: now_ms(),
            })?;
        }
        if v.cumulative > redeemed {
            due.entry(v.node).or_default().push(Due {
                voucher: v,
                redeemed,
            });
        }
    }
    for (node, list) in due {
        let node = Pubkey::from(node);
        if let Err(e) = ensure_token_account(ctx, &node, &config.mint).await {
            warn!(%node, error = %e, "cannot create the node's token account");
            continue;
        }
        let per_tx = if ctx.chain.priority_fee() > 0 {
            VOUCHERS_PER_TX_PRICED
        } else {
            VOUCHERS_PER_TX
        };
        for group in list.chunks(per_tx) {
            if let Err(e) = redeem(ctx, group, fee_bps, &config.mint).await {
                warn!(%node, error = %e, vouchers = group.len(), "redeem_vouchers failed");
                if group.len() > 1 {
                    // One bad voucher (say, an empty escrow) must not hold up the others.
                    for one in group {
                        if let Err(e) =
                            redeem(ctx, std::slice::from_ref(one), fee_bps, &config.mint).await
                        {
                            warn!(%node, client = %one.voucher.client_key(), error = %e, "voucher not redeemed");
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

async fn ensure_token_account(ctx: &Ctx, node: &Pubkey, mint: &Pubkey) -> Result<(), ChainError> {
    if ctx
        .token_accounts
        .lock()
        .is_ok_and(|known| known.contains(node))
    {
        return Ok(());
    }
    let ata = pda::associated_token(node, mint);
    if ctx.chain.account_data(&ata).await?.is_none() {
        let create = token::create_ata_idempotent(&ctx.keypair.pubkey(), node, mint);
        ctx.chain.send(&[create], &ctx.keypair, &[]).await?;
    }
    if let Ok(mut known) = ctx.token_accounts.lock() {
        known.insert(*node);
    }
    Ok(())
}

async fn redeem(ctx: &Ctx, group: &[Due], fee_bps: u16, mint: &Pubkey) -> Result<(), RelayerError> {
    let messages: Vec<_> = group.iter().map(|d| d.voucher.signed_message()).collect();
    let accounts: Vec<_> = group
        .iter()
        .map(|d| VoucherAccounts {
            client: d.voucher.client_key(),
            node: d.voucher.node_key(),
            node_token: pda::associated_token(&d.voucher.node_key(), mint),
        })
        .collect();
    let ixs = [
        ed25519::verify_instruction(&messages)?,
        ix::redeem_vouchers(&ctx.keypair.pubkey(), &accounts),
    ];
    match ctx.chain.send(&ixs, &ctx.keypair, &[]).await {
        Ok(sig) => {
            for d in group {
                let amount = d.voucher.cumulative - d.redeemed;
                let fee = bps_of(amount, fee_bps);
                ctx.store.record_settlement(&Settlement {
                    signature: Some(sig.to_string()),
                    client: d.voucher.client,
                    node: d.voucher.node,
                    cumulative: d.voucher.cumulative,
                    amount,
                    paid: amount - fee,
                    fee,
                    at_ms: now_ms(),
                })?;
            }
            info!(%sig, vouchers = group.len(), "redeemed vouchers");
            Ok(())
        }
        Err(ChainError::Program { name, .. }) if name == "StaleVoucher" => {
            // Already redeemed (an earlier send landed after all): the
            // next round reads the channel and records it.
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
