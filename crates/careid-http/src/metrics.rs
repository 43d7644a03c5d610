//! Prometheus metrics: requests and their latency by route, refusals by the rule that refused
//! them, and the store's latency.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    refusals: Family<RuleLabels, Counter>,
    store_latency: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("careid");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let store_latency = latency_histogram();
        let refusals = Family::<RuleLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route, method and status", requests.clone());
        registry.register(
            "refusals",
            "Requests a rule refused (off duty, one live card, separation of duties, ...), by rule",
            refusals.clone(),
        );
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        registry.register(
            "store_ping_duration_seconds",
            "Store round-trip latency, measured at each scrape",
            store_latency.clone(),
        );
        Metrics { registry: Mutex::new(registry), requests, latency, refusals, store_latency }
    }
}

impl Metrics {
    pub fn observe_request(&self, route: String, method: String, status: u16, elapsed: Duration) {
        self.requests.get_or_create(&RequestLabels { route: route.clone(), method, status }).inc();
        self.latency.get_or_create(&RouteLabels { route }).observe(elapsed.as_secs_f64());
    }

    /// A request refused by `rule` (its stable code).
    pub fn observe_refusal(&self, rule: &str) {
        self.refusals.get_or_create(&RuleLabels { rule: rule.to_owned() }).inc();
    }

    pub fn observe_store(&self, elapsed: Duration) {
        self.store_latency.observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_rule() {
        let metrics = Metrics::default();
        metrics.observe_refusal("one_live_card");
        metrics.observe_refusal("one_live_card");
        metrics.observe_refusal("off_duty");
        let text = metrics.render();
        assert!(text.contains("careid_refusals_total{rule=\"one_live_card\"} 2"), "{text}");
        assert!(text.contains("careid_refusals_total{rule=\"off_duty\"} 1"), "{text}");
    }
}
