//! `GET /metrics`: the relayer's state in the Prometheus text exposition
//! format, read from its store at each scrape (the store is the truth, and
//! a restarted relayer's counters go on from it rather than from zero).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_wire::api::StatsView;

use super::{internal, stats_view};
use crate::now_ms;
use crate::store::Store;

/// The scrape handler.
pub(super) async fn get_metrics(State(store): State<Arc<Store>>) -> Response {
    match stats_view(&store, now_ms()) {
        Ok(view) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            render(&view),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

/// The exposition of `view`.
fn render(view: &StatsView) -> String {
    let mut registry = Registry::with_prefix("strata_relayer");
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    counter(&mut registry, "receipts", "Receipts stored", view.receipts);
    counter(
        &mut registry,
        "receipts_batched",
        "Receipts in a posted batch",
        view.batched,
    );
    counter(
        &mut registry,
        "batches",
        "Batches posted on chain",
        view.batches,
    );
    counter(
        &mut registry,
        "settlements",
        "Voucher redemptions recorded",
        view.settlements,
    );
    counter(
        &mut registry,
        "settled_paid_base_units",
        "Token base units paid to nodes by redemptions",
        view.settled_paid,
    );
    counter(
        &mut registry,
        "settled_fee_base_units",
        "Protocol fees taken by redemptions, base units",
        view.settled_fee,
    );
    counter(
        &mut registry,
        "reward_epochs",
        "Reward epochs published",
        view.epochs,
    );
    let pending = Gauge::<i64>::default();
    pending.set(i64::try_from(view.receipts.saturating_sub(view.batched)).unwrap_or(i64::MAX));
    registry.register(
        "receipts_pending",
        "Receipts stored and not yet in a posted batch (the batching queue)",
        pending,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}
