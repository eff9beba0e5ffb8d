//! Rewards: when the chain enters an epoch after the last published one,
//! the relayer (the reward authority) publishes a root of cumulative rewards
//! per node since genesis: `reward_per_work_unit` × the work units of the
//! node's receipts in posted batches. Leaves are sorted by operator.
//! `declared` (what claims against the root may pay) is what is still
//! unclaimed on-chain, capped by the program's per-epoch cap.
//!
//! As with batches, the epoch's leaves are committed before the transaction
//! is sent, so the proofs for a published root are never lost.

use strata_chain::accounts::{ClaimRecord, RewardEpoch};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::{ix, pda, Pubkey, Signer};
use tracing::{info, warn};

use crate::chain::{chain_now, creating_signature};
use crate::store::{EpochRecord, EpochStatus};
use crate::{Ctx, RelayerError};

/// One round: reconcile planned epochs, then publish the current epoch if due.
pub async fn round(ctx: &Ctx) -> Result<(), RelayerError> {
    let config = ctx.chain.config().await?;
    let current = config.epoch_at(chain_now(&ctx.chain).await?);
    let epochs = ctx.store.epochs()?;
    for planned in epochs.iter().filter(|e| e.status == EpochStatus::Planned) {
        let address = pda::reward_epoch(planned.epoch);
        match ctx
            .chain
            .account::<RewardEpoch>(&address, "reward epoch")
            .await?
        {
            Some(onchain) if onchain.root == planned.root => {
                let mut done = planned.clone();
                done.status = EpochStatus::Published;
                done.signature = creating_signature(&ctx.chain, &address).await;
                ctx.store.put_epoch(&done)?;
            }
            Some(_) => {
                warn!(
                    epoch = planned.epoch,
                    "another root was published for this epoch; dropping ours"
                );
                ctx.store.drop_epoch(planned.epoch)?;
            }
            None if planned.epoch > config.last_reward_epoch && planned.epoch <= current => {
                return publish(ctx, planned.clone()).await;
            }
            None => ctx.store.drop_epoch(planned.epoch)?,
        }
    }
    if current <= config.last_reward_epoch {
        return Ok(());
    }
    let leaves: Vec<([u8; 32], u64)> = ctx
        .store
        .node_work()?
        .into_iter()
        .map(|(node, work)| (node, work.saturating_mul(ctx.reward_per_work_unit)))
        .filter(|(_, cumulative)| *cumulative > 0)
        .collect();
    let last = ctx
        .store
        .epochs()?
        .into_iter()
        .rev()
        .find(|e| e.status == EpochStatus::Published);
    if leaves.is_empty() || last.is_some_and(|l| l.leaves == leaves) {
        return Ok(());
    }
    let mut unclaimed = 0u64;
    for (operator, cumulative) in &leaves {
        let claimed = ctx
            .chain
            .account::<ClaimRecord>(&pda::claim_record(&Pubkey::from(*operator)), "claim record")
            .await?
            .map_or(0, |c| c.claimed);
        unclaimed = unclaimed.saturating_add(cumulative.saturating_sub(claimed));
    }
    let declared = unclaimed.min(config.params.epoch_reward_cap);
    if declared == 0 {
        return Ok(());
    }
    let mut record = EpochRecord {
        epoch: current,
        status: EpochStatus::Planned,
        root: [0; 32],
        leaves,
        declared,
        signature: None,
    };
    record.root = merkle::root::<Ledger>(&record.leaf_hashes());
    ctx.store.put_epoch(&record)?;
    publish(ctx, record).await
}

async fn publish(ctx: &Ctx, mut record: EpochRecord) -> Result<(), RelayerError> {
    let leaf_count = u32::try_from(record.leaves.len())
        .map_err(|_| RelayerError::Task("too many reward leaves".into()))?;
    let publish = ix::publish_rewards(
        &ctx.keypair.pubkey(),
        record.epoch,
        record.root,
        leaf_count,
        record.declared,
    );
    let sig = ctx.chain.send(&[publish], &ctx.keypair, &[]).await?;
    record.status = EpochStatus::Published;
    record.signature = Some(sig.to_string());
    ctx.store.put_epoch(&record)?;
    info!(epoch = record.epoch, %sig, leaves = leaf_count, declared = record.declared, "published rewards");
    Ok(())
}
