//! `GET /metrics`: after one paid completion and one refused request, the
//! scrape, parsed by a Prometheus text-format parser, counts exactly them.

use strata_chain::params::{self, TOKEN};
use strata_test_utils::chain::LocalChain;

use crate::common::*;

const KEY: &str = "metrics-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_tasks_tokens_and_charges() {
    let chain = LocalChain::start(params::local()).await;
    let client = chain.client(10 * TOKEN).await;
    let node = FakeNode::start(1, 0, 4).await;
    chain
        .register_node(&node.key, &node.addrs, 100 * TOKEN)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&chain.url, vec![(KEY.into(), client)], dir.path(), &[&node]).await;
    wait_for_nodes(&gw, 1).await;

    let (status, body) = post(&gw, "/v1/chat/completions", Some(KEY), chat(MODEL, 8)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(&gw, "/v1/chat/completions", Some("nobody"), chat(MODEL, 8)).await;
    assert_eq!(status, 401);

    let scrape = strata_test_utils::scrape(&format!("{}/metrics", gw.url())).await;
    let get = |name: &str, labels: &[(&str, &str)]| scrape.value(name, labels);
    let chat = [("endpoint", "chat")];
    assert_eq!(
        get(
            "strata_gateway_http_responses",
            &[chat[0], ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "strata_gateway_http_responses",
            &[chat[0], ("status", "401")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "strata_gateway_tasks",
            &[("route", "whole"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        get("strata_gateway_tokens", &[("kind", "prompt")]),
        f64::from(PROMPT_TOKENS)
    );
    assert_eq!(
        get("strata_gateway_tokens", &[("kind", "completion")]),
        f64::from(COMPLETION_TOKENS)
    );
    assert_eq!(
        get("strata_gateway_charged_base_units", &[]),
        node.price() as f64
    );
    assert_eq!(
        get("strata_gateway_task_seconds", &[]),
        1.0,
        "one task timed"
    );
    assert_eq!(get("strata_gateway_tasks_in_flight", &[]), 0.0);
    assert_eq!(get("strata_gateway_nodes", &[]), 1.0);

    // Every gateway metric the Grafana dashboard plots is here.
    let plotted = strata_test_utils::dashboard_metrics("strata_gateway_");
    assert!(plotted.len() >= 7, "{plotted:?}");
    for name in plotted {
        assert!(
            scrape.has(&name),
            "the dashboard plots {name}, the gateway has none"
        );
    }
}
