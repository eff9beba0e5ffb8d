//! Prometheus text exposition of values read at scrape time: the services
//! that count nothing themselves (node, relayer, verifier) build a fresh
//! registry from their current state at each scrape, with these.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A registry of values read now, every name under `prefix`.
pub struct Snapshot(Registry);

impl Snapshot {
    /// An empty snapshot whose metric names start with `prefix_`.
    pub fn new(prefix: &str) -> Self {
        Self(Registry::with_prefix(prefix))
    }

    /// A counter (monotonic since the service started, or since ever if
    /// the service reads it from its store); exposed as `name_total`.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        self.0.register(name, help, c);
        self
    }

    /// A counter of seconds (or any fractional quantity).
    pub fn counter_f64(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        let c = Counter::<f64>::default();
        c.inc_by(value);
        self.0.register(name, help, c);
        self
    }

    /// A gauge: a level now.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(value).unwrap_or(i64::MAX));
        self.0.register(name, help, g);
        self
    }

    /// A fractional gauge.
    pub fn gauge_f64(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        g.set(value);
        self.0.register(name, help, g);
        self
    }

    /// The registry, to register a labelled family.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.0
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.0);
        out
    }
}
