//! Batching: unbatched receipts, in arrival order, become a Merkle root
//! posted on-chain with `post_batch`.
//!
//! The plan (id, receipts, root) is committed before the transaction is
//! sent, so a crash can never lose which receipts a posted root covers. Each
//! round first reconciles planned batches with the chain: the Batch account
//! holds our root → posted; holds another root (the id was taken) → the same
//! receipts are replanned under the next free id; absent → sent again.

use strata_chain::accounts::Batch;
use strata_chain::{ix, pda, Signer};
use tracing::{info, warn};

use crate::chain::{chain_now, creating_signature};
use crate::store::BatchRecord;
use crate::{now_ms, Ctx, RelayerError};

/// Most receipts in one batch (a 12-hash proof).
pub const MAX_BATCH: usize = 4096;

/// One batching round: reconcile, then post everything that waits.
pub async fn round(ctx: &Ctx) -> Result<(), RelayerError> {
    for planned in ctx.store.planned_batches()? {
        settle_planned(ctx, planned).await?;
    }
    loop {
        let config = ctx.chain.config().await?;
        let store = ctx.store.clone();
        let id = config.next_batch_id;
        let planned =
            tokio::task::spawn_blocking(move || store.plan_batch(id, MAX_BATCH, now_ms()))
                .await
                .map_err(|e| RelayerError::Task(e.to_string()))??;
        let Some(planned) = planned else {
            return Ok(());
        };
        info!(
            batch = planned.id,
            receipts = planned.task_ids.len(),
            "planned batch"
        );
        settle_planned(ctx, planned).await?;
    }
}

/// Brings one planned batch to `posted`, replanning or sending as the chain requires.
async fn settle_planned(ctx: &Ctx, mut planned: BatchRecord) -> Result<(), RelayerError> {
    // Bounded: each pass either finishes or moves the batch to a newer id.
    for _ in 0..8 {
        let address = pda::batch(planned.id);
        if let Some(onchain) = ctx.chain.account::<Batch>(&address, "batch").await? {
            if onchain.root == planned.root {
                let signature = creating_signature(&ctx.chain, &address).await;
                ctx.store
                    .mark_batch_posted(planned.id, onchain.epoch, signature)?;
                info!(batch = planned.id, "batch found on-chain; marked posted");
                return Ok(());
            }
        }
        let config = ctx.chain.config().await?;
        if config.next_batch_id != planned.id {
            // The id is taken by another root (or our plan is stale): same
            // receipts, next free id.
            warn!(
                old = planned.id,
                new = config.next_batch_id,
                "batch id taken on-chain; replanning"
            );
            ctx.store.replan_batch(planned.id, config.next_batch_id)?;
            planned.id = config.next_batch_id;
            continue;
        }
        let epoch = config.epoch_at(chain_now(&ctx.chain).await?);
        let task_count = u32::try_from(planned.task_ids.len())
            .map_err(|_| RelayerError::Task("batch too large".into()))?;
        let post = ix::post_batch(
            &ctx.keypair.pubkey(),
            planned.id,
            epoch,
            planned.root,
            task_count,
            planned.work_units,
        );
        match ctx.chain.send(&[post], &ctx.keypair, &[]).await {
            Ok(sig) => {
                ctx.store
                    .mark_batch_posted(planned.id, epoch, Some(sig.to_string()))?;
                info!(batch = planned.id, %sig, task_count, "posted batch");
                return Ok(());
            }
            Err(e) => {
                // It may have landed anyway (a lost confirmation): the next
                // pass reads the Batch account before deciding.
                warn!(batch = planned.id, error = %e, "post_batch failed");
                if ctx
                    .chain
                    .account::<Batch>(&address, "batch")
                    .await?
                    .is_none()
                {
                    return Err(e.into());
                }
            }
        }
    }
    Err(RelayerError::Task(format!(
        "batch {} could not be settled after several attempts",
        planned.id
    )))
}
