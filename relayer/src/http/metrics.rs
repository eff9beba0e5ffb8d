//! `GET /metrics`: the relayer's state in the Prometheus text exposition
//! format (receipts, batches, settlements, and what waits: the age of the
//! oldest unbatched receipt and the unredeemed voucher totals), read from its
//! store at each scrape (the store is the truth, and
//! a restarted relayer's counters go on from it rather than from zero).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use strata_service::metrics::Snapshot;
use strata_wire::api::StatsView;

use super::{internal, stats_view};
use crate::now_ms;
use crate::store::{Store, StoreError};

/// What is waiting: for a batch, and for redemption.
struct Lag {
    /// Age of the oldest receipt not yet batched, seconds (0 if none).
    batch_lag_secs: f64,
    /// Σ over channels of the latest voucher's total minus what is redeemed.
    unredeemed: u64,
    /// Channels with something left to redeem.
    channels_unredeemed: u64,
}

fn lag(store: &Store, now: u64) -> Result<Lag, StoreError> {
    let batch_lag_secs = store
        .oldest_unbatched_ms()?
        .map_or(0.0, |at| now.saturating_sub(at) as f64 / 1000.0);
    let (mut unredeemed, mut channels_unredeemed) = (0u64, 0u64);
    for c in store.channels()? {
        let owed = c.latest.cumulative.saturating_sub(c.recorded);
        unredeemed = unredeemed.saturating_add(owed);
        channels_unredeemed += u64::from(owed > 0);
    }
    Ok(Lag {
        batch_lag_secs,
        unredeemed,
        channels_unredeemed,
    })
}

/// The scrape handler.
pub(super) async fn get_metrics(State(store): State<Arc<Store>>) -> Response {
    let now = now_ms();
    match stats_view(&store, now).and_then(|view| Ok((view, lag(&store, now)?))) {
        Ok((view, lag)) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            render(&view, &lag),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

/// The exposition of `view` and `lag`.
fn render(view: &StatsView, lag: &Lag) -> String {
    let mut m = Snapshot::new("strata_relayer");
    m.counter("receipts", "Receipts stored", view.receipts)
        .counter(
            "receipts_batched",
            "Receipts in a posted batch",
            view.batched,
        )
        .counter("batches", "Batches posted on chain", view.batches)
        .counter(
            "settlements",
            "Voucher redemptions recorded",
            view.settlements,
        )
        .counter(
            "settled_paid_base_units",
            "Token base units paid to nodes by redemptions",
            view.settled_paid,
        )
        .counter(
            "settled_fee_base_units",
            "Protocol fees taken by redemptions, base units",
            view.settled_fee,
        )
        .counter("reward_epochs", "Reward epochs published", view.epochs)
        .gauge(
            "receipts_pending",
            "Receipts stored and not yet in a posted batch (the batching queue)",
            view.receipts.saturating_sub(view.batched),
        )
        .gauge_f64(
            "batch_lag_seconds",
            "Age of the oldest receipt not yet in a posted batch (0 when none waits)",
            lag.batch_lag_secs,
        )
        .gauge(
            "unredeemed_base_units",
            "Voucher totals received and not yet redeemed on chain (the settlement backlog)",
            lag.unredeemed,
        )
        .gauge(
            "channels_unredeemed",
            "Client-node channels with a voucher not yet redeemed",
            lag.channels_unredeemed,
        );
    m.render()
}
