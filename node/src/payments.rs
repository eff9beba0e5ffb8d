//! What each client has paid this node: the largest voucher total accepted.
//!
//! A voucher's cumulative counts everything a client ever paid this node, so
//! the task service (whole-model tasks) and the hop runtime (pipeline hops)
//! share one ledger: a voucher for a hop must rise above the last one taken
//! for a whole task, and the other way round.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use strata_chain::rpc::ChainClient;
use strata_chain::Pubkey;
use strata_wire::Voucher;

/// The per-client ledger of voucher totals; shared behind an `Arc`.
pub struct Payments {
    owed: Mutex<HashMap<[u8; 32], u64>>,
    chain: Option<ChainClient>,
    node: Pubkey,
    /// Vouchers accepted (tasks and hops paid), for the metrics.
    accepted: AtomicU64,
    /// Base units those vouchers paid for (sum of prices).
    charged: AtomicU64,
}

impl Payments {
    /// An empty ledger for `node`; with `chain`, a client's ledger starts at
    /// what the chain already redeemed (see [`Payments::ensure_client`]).
    pub(crate) fn new(chain: Option<ChainClient>, node: Pubkey) -> Self {
        Self {
            owed: Mutex::new(HashMap::new()),
            chain,
            node,
            accepted: AtomicU64::new(0),
            charged: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], u64>> {
        // Every update is one insert: a poisoned map is still whole.
        self.owed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a client's ledger at what the chain already redeemed, so a
    /// restarted node expects vouchers above that.
    pub(crate) async fn ensure_client(&self, client: [u8; 32]) {
        if self.lock().contains_key(&client) {
            return;
        }
        let mut redeemed = 0;
        if let Some(chain) = &self.chain {
            let channel = strata_chain::pda::channel(&Pubkey::from(client), &self.node);
            match chain
                .account::<strata_chain::accounts::Channel>(&channel, "channel")
                .await
            {
                Ok(Some(c)) => redeemed = c.redeemed,
                Ok(None) => {}
                Err(e) => tracing::warn!("reading channel {channel}: {e}"),
            }
        }
        self.lock().entry(client).or_insert(redeemed);
    }

    /// The largest voucher total accepted from `client`.
    pub(crate) fn owed(&self, client: &[u8; 32]) -> u64 {
        self.lock().get(client).copied().unwrap_or(0)
    }

    /// Takes `voucher` as `client`'s payment of `price` for one task: it
    /// must come from that client, pay this node, carry a valid signature
    /// and a total of at least what was owed before plus `price`.
    pub(crate) fn accept(
        &self,
        client: &[u8; 32],
        voucher: &Voucher,
        price: u64,
    ) -> Result<(), String> {
        if voucher.client != *client {
            return Err("voucher is not from the task's client".into());
        }
        if voucher.node != self.node.to_bytes() {
            return Err("voucher pays another node".into());
        }
        voucher.verify().map_err(|e| e.to_string())?;
        let mut owed = self.lock();
        let expected = owed.get(client).copied().unwrap_or(0).saturating_add(price);
        if voucher.cumulative < expected {
            return Err(format!(
                "voucher total {} is below the {expected} owed",
                voucher.cumulative
            ));
        }
        owed.insert(*client, voucher.cumulative);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.charged.fetch_add(price, Ordering::Relaxed);
        Ok(())
    }

    /// Vouchers accepted so far, and the base units they paid for.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.charged.load(Ordering::Relaxed),
        )
    }
}
