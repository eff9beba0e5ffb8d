//! Clients of the gateway: API keys mapped to the Solana keypairs whose
//! escrows pay, and the running voucher totals per (client, node).
//!
//! The gateway is custodial for these keys: it signs each client's vouchers
//! so that unmodified OpenAI clients can pay. A client that wants to keep its
//! key runs its own gateway. Totals are written to disk (atomically, before a
//! voucher leaves) so a restarted gateway never signs a total below one it
//! already gave a node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_chain::{Keypair, Pubkey, Signer};

use crate::GatewayError;

/// Held while one settlement with a node is under way.
type SettleLock = Arc<tokio::sync::Mutex<()>>;

/// One client account.
pub struct Account {
    /// The paying keypair.
    pub keypair: Keypair,
}

/// API keys and voucher totals.
pub struct Accounts {
    by_key: HashMap<String, Account>,
    totals: Mutex<HashMap<(Pubkey, Pubkey), u64>>,
    /// Amounts held for tasks in flight, per client.
    reserved: Mutex<HashMap<Pubkey, u64>>,
    /// One settlement at a time per (client, node): vouchers are running
    /// totals, so they must reach the node in the order they were signed.
    settling: Mutex<HashMap<(Pubkey, Pubkey), SettleLock>>,
    /// The last escrow read per client, for when the chain cannot be read.
    escrows: Mutex<HashMap<Pubkey, (EscrowReading, Instant)>>,
    path: PathBuf,
}

/// What the gateway needs of an escrow account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowReading {
    /// Balance.
    pub balance: u64,
    /// Requested for withdrawal (leaves after the program's delay).
    pub pending_withdrawal: u64,
    /// Paid out to nodes so far.
    pub total_paid: u64,
}

/// How old an escrow reading may be when the chain cannot be read: below
/// the program's floor on the withdrawal delay, so no withdrawal requested
/// after the reading can have left the escrow yet, and the one pending at
/// the reading is set aside. Redemptions since only lower the balance by
/// vouchers this gateway signed, which it already counts as unredeemed.
pub const ESCROW_STALE_LIMIT: Duration =
    Duration::from_secs(strata_chain::params::MIN_ESCROW_WITHDRAW_DELAY as u64 - 5);

impl Accounts {
    /// Accounts for `keys` (API key, keypair), with totals kept in `state_dir`.
    pub fn open(keys: Vec<(String, Keypair)>, state_dir: &Path) -> Result<Self, GatewayError> {
        std::fs::create_dir_all(state_dir).map_err(|e| GatewayError::State(e.to_string()))?;
        let path = state_dir.join("voucher-totals.json");
        let mut totals = HashMap::new();
        if path.exists() {
            let text =
                std::fs::read_to_string(&path).map_err(|e| GatewayError::State(e.to_string()))?;
            let rows: Vec<(String, String, u64)> = serde_json::from_str(&text)
                .map_err(|e| GatewayError::State(format!("{}: {e}", path.display())))?;
            for (c, n, t) in rows {
                let parse = |s: &str| {
                    s.parse::<Pubkey>()
                        .map_err(|e| GatewayError::State(format!("{}: {e}", path.display())))
                };
                totals.insert((parse(&c)?, parse(&n)?), t);
            }
        }
        Ok(Self {
            by_key: keys
                .into_iter()
                .map(|(k, keypair)| (k, Account { keypair }))
                .collect(),
            totals: Mutex::new(totals),
            reserved: Mutex::new(HashMap::new()),
            settling: Mutex::new(HashMap::new()),
            escrows: Mutex::new(HashMap::new()),
            path,
        })
    }

    /// Every API key (a batch finds its owner's among them).
    pub fn api_keys(&self) -> impl Iterator<Item = &str> {
        self.by_key.keys().map(String::as_str)
    }

    /// The account of an API key.
    pub fn get(&self, api_key: &str) -> Option<&Account> {
        self.by_key.get(api_key)
    }

    /// Everything vouched to any node by `client` and not yet redeemed
    /// on-chain, given what the escrow says was paid out so far.
    pub fn unredeemed(&self, client: &Pubkey, total_paid: u64) -> u64 {
        let vouched: u64 = lock(&self.totals)
            .iter()
            .filter(|((c, _), _)| c == client)
            .map(|(_, t)| *t)
            .sum();
        vouched.saturating_sub(total_paid)
    }

    /// Remembers a fresh escrow reading of `client`.
    pub fn remember_escrow(&self, client: &Pubkey, reading: EscrowReading) {
        lock(&self.escrows).insert(*client, (reading, Instant::now()));
    }

    /// The last escrow reading of `client` if it is younger than
    /// [`ESCROW_STALE_LIMIT`].
    pub fn recent_escrow(&self, client: &Pubkey) -> Option<EscrowReading> {
        lock(&self.escrows)
            .get(client)
            .filter(|(_, at)| at.elapsed() < ESCROW_STALE_LIMIT)
            .map(|(r, _)| *r)
    }

    /// Holds `amount` for a task in flight; false if `available` does not
    /// cover it plus what is already held.
    pub fn reserve(&self, client: &Pubkey, amount: u64, available: u64) -> bool {
        let mut r = lock(&self.reserved);
        let held = r.entry(*client).or_default();
        if held.saturating_add(amount) > available {
            return false;
        }
        *held += amount;
        true
    }

    /// Releases a hold.
    pub fn release(&self, client: &Pubkey, amount: u64) {
        if let Some(h) = lock(&self.reserved).get_mut(client) {
            *h = h.saturating_sub(amount);
        }
    }

    /// Raises the total for (client, node) to at least what the chain has
    /// redeemed (a fresh gateway, or a chain that moved on without us).
    pub fn catch_up(&self, client: &Pubkey, node: &Pubkey, redeemed: u64) {
        let mut totals = lock(&self.totals);
        let t = totals.entry((*client, *node)).or_default();
        *t = (*t).max(redeemed);
    }

    /// Every (client, node, voucher total) signed so far.
    pub fn totals(&self) -> Vec<(Pubkey, Pubkey, u64)> {
        lock(&self.totals)
            .iter()
            .map(|((c, n), t)| (*c, *n, *t))
            .collect()
    }

    /// Waits for the right to settle with `node` for `client`; hold the
    /// guard from signing the voucher until the node has answered.
    pub async fn settle_turn(
        &self,
        client: &Pubkey,
        node: &Pubkey,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = lock(&self.settling)
            .entry((*client, *node))
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Whether a total for (client, node) is known.
    pub fn knows(&self, client: &Pubkey, node: &Pubkey) -> bool {
        lock(&self.totals).contains_key(&(*client, *node))
    }

    /// Signs the voucher for a task of `price` to `node`: the new total is
    /// the old one plus `price`, never what a node claims it is owed (a node
    /// could claim anything). Persists the total before returning.
    pub fn sign_voucher(
        &self,
        account: &Account,
        node: &Pubkey,
        price: u64,
    ) -> Result<strata_wire::Voucher, GatewayError> {
        let client = account.keypair.pubkey();
        let mut totals = lock(&self.totals);
        let new = totals
            .get(&(client, *node))
            .copied()
            .unwrap_or(0)
            .saturating_add(price);
        totals.insert((client, *node), new);
        let rows: Vec<(String, String, u64)> = totals
            .iter()
            .map(|((c, n), t)| (c.to_string(), n.to_string(), *t))
            .collect();
        write_atomic(&self.path, &serde_json::to_vec(&rows).unwrap_or_default())?;
        Ok(strata_wire::Voucher::sign(&account.keypair, node, new))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), GatewayError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| GatewayError::State(e.to_string()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| GatewayError::State(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| GatewayError::State(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_escrow_stands_in_only_for_its_client() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts::open(Vec::new(), dir.path()).unwrap();
        let (client, other) = (Pubkey::new_unique(), Pubkey::new_unique());
        assert_eq!(accounts.recent_escrow(&client), None);
        let r = EscrowReading {
            balance: 1_000,
            pending_withdrawal: 300,
            total_paid: 50,
        };
        accounts.remember_escrow(&client, r);
        assert_eq!(accounts.recent_escrow(&client), Some(r));
        assert_eq!(accounts.recent_escrow(&other), None);
        // An old reading no longer stands in.
        lock(&accounts.escrows).insert(
            client,
            (r, Instant::now().checked_sub(ESCROW_STALE_LIMIT).unwrap()),
        );
        assert_eq!(accounts.recent_escrow(&client), None);
    }
}
