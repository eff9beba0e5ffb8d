//! Batches in the store: planning one from the unbatched receipts (its plan
//! is committed before its transaction is sent), marking it posted, and
//! re-planning it under another id when the chain moved on.

use redb::ReadableTable;
use strata_chain::merkle::{self, domains::Ledger};

use super::*;

impl Store {
    /// Plans batch `id` from up to `limit` unbatched receipts in arrival
    /// order: computes the leaves and root, and moves the receipts into it,
    /// atomically. `None` if nothing waits.
    pub fn plan_batch(
        &self,
        id: u64,
        limit: usize,
        now_ms: u64,
    ) -> Result<Option<BatchRecord>, StoreError> {
        let tx = self.db.begin_write()?;
        let record = {
            let mut unbatched = tx.open_table(UNBATCHED)?;
            let mut taken = Vec::new();
            for entry in unbatched.iter()?.take(limit) {
                let (seq, task) = entry?;
                let task: [u8; 32] = task
                    .value()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("unbatched"))?;
                taken.push((seq.value(), task));
            }
            if taken.is_empty() {
                return Ok(None);
            }
            let receipts = tx.open_table(RECEIPTS)?;
            let mut leaves = Vec::with_capacity(taken.len());
            let mut work_units = 0u64;
            for (_, task) in &taken {
                let g = receipts
                    .get(task.as_slice())?
                    .ok_or(StoreError::Corrupt("unbatched"))?;
                let receipt = decode::<StoredReceipt>(g.value(), "receipts")?.receipt()?;
                leaves.push(receipt.leaf());
                work_units = work_units.saturating_add(receipt.body.work_units());
            }
            let mut places = tx.open_table(RECEIPT_BATCH)?;
            for (index, (seq, task)) in taken.iter().enumerate() {
                unbatched.remove(*seq)?;
                let index = u32::try_from(index).map_err(|_| StoreError::Corrupt("batch size"))?;
                places.insert(task.as_slice(), (id, index))?;
            }
            let record = BatchRecord {
                id,
                status: BatchStatus::Planned,
                root: merkle::root::<Ledger>(&leaves),
                leaves,
                task_ids: taken.iter().map(|(_, t)| *t).collect(),
                work_units,
                epoch: 0,
                signature: None,
                planned_ms: now_ms,
            };
            tx.open_table(BATCHES)?
                .insert(id, encode(&record).as_slice())?;
            record
        };
        tx.commit()?;
        Ok(Some(record))
    }

    /// Batches still planned, lowest id first.
    pub fn planned_batches(&self) -> Result<Vec<BatchRecord>, StoreError> {
        Ok(self
            .batches()?
            .into_iter()
            .filter(|b| b.status == BatchStatus::Planned)
            .collect())
    }

    /// Every batch, lowest id first.
    pub fn batches(&self) -> Result<Vec<BatchRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BATCHES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(decode(v.value(), "batches")?);
        }
        Ok(out)
    }

    /// One batch.
    pub fn batch(&self, id: u64) -> Result<Option<BatchRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BATCHES)?;
        let out = match table.get(id)? {
            Some(g) => Some(decode(g.value(), "batches")?),
            None => None,
        };
        Ok(out)
    }

    /// Marks a planned batch posted (its root is on-chain) and credits its
    /// work units to the nodes. Idempotent.
    pub fn mark_batch_posted(
        &self,
        id: u64,
        epoch: i64,
        signature: Option<String>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut batches = tx.open_table(BATCHES)?;
            let mut record: BatchRecord = match batches.get(id)? {
                Some(g) => decode(g.value(), "batches")?,
                None => return Ok(()),
            };
            if record.status == BatchStatus::Posted {
                return Ok(());
            }
            record.status = BatchStatus::Posted;
            record.epoch = epoch;
            record.signature = signature;
            batches.insert(id, encode(&record).as_slice())?;
            let receipts = tx.open_table(RECEIPTS)?;
            let mut work = tx.open_table(NODE_WORK)?;
            for task in &record.task_ids {
                let g = receipts
                    .get(task.as_slice())?
                    .ok_or(StoreError::Corrupt("batches"))?;
                let receipt = decode::<StoredReceipt>(g.value(), "receipts")?.receipt()?;
                let node = receipt.body.node;
                let before = work.get(node.as_slice())?.map_or(0, |g| g.value());
                work.insert(
                    node.as_slice(),
                    before.saturating_add(receipt.body.work_units()),
                )?;
            }
            let mut counters = tx.open_table(COUNTERS)?;
            let batched = counters.get(BATCHED)?.map_or(0, |g| g.value());
            counters.insert(BATCHED, batched + record.task_ids.len() as u64)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Gives a planned batch a new id (its old id was taken on-chain by
    /// another root), keeping its receipts and root.
    pub fn replan_batch(&self, old_id: u64, new_id: u64) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut batches = tx.open_table(BATCHES)?;
            let mut record: BatchRecord = match batches.remove(old_id)? {
                Some(g) => decode(g.value(), "batches")?,
                None => return Ok(()),
            };
            record.id = new_id;
            batches.insert(new_id, encode(&record).as_slice())?;
            let mut places = tx.open_table(RECEIPT_BATCH)?;
            for (index, task) in record.task_ids.iter().enumerate() {
                let index = u32::try_from(index).map_err(|_| StoreError::Corrupt("batch size"))?;
                places.insert(task.as_slice(), (new_id, index))?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
