//! Money in the store: the latest voucher per (client, node) channel, the
//! settlements that redeemed them, work per node, and reward epochs.

use redb::ReadableTable;

use super::*;

impl Store {
    /// Every channel's latest voucher and recorded redemption.
    pub fn channels(&self) -> Result<Vec<ChannelRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(CHANNELS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(decode(v.value(), "channels")?);
        }
        Ok(out)
    }

    /// Records that a channel is redeemed up to `settlement.cumulative`,
    /// with the settlement, atomically. Ignored if already recorded that far.
    pub fn record_settlement(&self, settlement: &Settlement) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut channels = tx.open_table(CHANNELS)?;
            let key = channel_key(&settlement.client, &settlement.node);
            let mut record: ChannelRecord = match channels.get(key.as_slice())? {
                Some(g) => decode(g.value(), "channels")?,
                None => return Ok(()),
            };
            if record.recorded >= settlement.cumulative {
                return Ok(());
            }
            record.recorded = settlement.cumulative;
            channels.insert(key.as_slice(), encode(&record).as_slice())?;
            let mut counters = tx.open_table(COUNTERS)?;
            let seq = counters.get(NEXT_SETTLEMENT)?.map_or(0, |g| g.value());
            counters.insert(NEXT_SETTLEMENT, seq + 1)?;
            tx.open_table(SETTLEMENTS)?
                .insert(seq, encode(settlement).as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every recorded settlement, oldest first.
    pub fn settlements(&self) -> Result<Vec<Settlement>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SETTLEMENTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(decode(v.value(), "settlements")?);
        }
        Ok(out)
    }

    /// Work units per node in posted batches, sorted by node.
    pub fn node_work(&self) -> Result<Vec<([u8; 32], u64)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(NODE_WORK)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let node: [u8; 32] = k
                .value()
                .try_into()
                .map_err(|_| StoreError::Corrupt("node_work"))?;
            out.push((node, v.value()));
        }
        Ok(out)
    }

    /// Writes (or overwrites) an epoch record.
    pub fn put_epoch(&self, record: &EpochRecord) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(EPOCHS)?
            .insert(record.epoch, encode(record).as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a planned epoch that can no longer be published.
    pub fn drop_epoch(&self, epoch: i64) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(EPOCHS)?.remove(epoch)?;
        tx.commit()?;
        Ok(())
    }

    /// Every epoch record, oldest first.
    pub fn epochs(&self) -> Result<Vec<EpochRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(EPOCHS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(decode(v.value(), "epochs")?);
        }
        Ok(out)
    }
}
