//! Prometheus metrics: requests and their latency by route, refusals by the rule that refused
//! them, the store's latency, and its write batches: how many, how large, and how long each
//! held the deployment's write lock (the serial section) and waited for the disk.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use careid_domain::ports::WriteStats;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    kind: String,
    severity: String,
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
    writes: WriteCounters,
    alerts: Family<AlertLabels, Counter>,
    /// The service's alert counts as last seen, so that each scrape adds what is new.
    alerts_seen: Mutex<std::collections::HashMap<AlertLabels, u64>>,
}

/// The store's write counters, brought up to date at each scrape.
#[derive(Default)]
struct WriteCounters {
    batches: Counter,
    transactions: Counter,
    serial_seconds: Counter<f64, AtomicU64>,
    flush_seconds: Counter<f64, AtomicU64>,
    seen: Mutex<WriteStats>,
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
        let writes = WriteCounters::default();
        registry.register("store_write_batches", "Write batches committed by this node", writes.batches.clone());
        registry.register(
            "store_write_transactions",
            "Write transactions committed by this node (per batch: divide by batches)",
            writes.transactions.clone(),
        );
        registry.register(
            "store_serial_section_seconds",
            "Seconds this node's batches held the deployment's write lock (per second: the share of the ceiling used)",
            writes.serial_seconds.clone(),
        );
        registry.register(
            "store_flush_wait_seconds",
            "Seconds this node's batches waited, outside the lock, for their commit to reach the disk",
            writes.flush_seconds.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register("alerts", "Misuse alerts recorded, by kind and severity", alerts.clone());
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            refusals,
            store_latency,
            writes,
            alerts,
            alerts_seen: Mutex::default(),
        }
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

    /// Brings the write counters up to the store's figures.
    pub fn observe_writes(&self, now: WriteStats) {
        let w = &self.writes;
        let mut seen = w.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.batches.inc_by(now.batches.saturating_sub(seen.batches));
        w.transactions.inc_by(now.transactions.saturating_sub(seen.transactions));
        w.serial_seconds.inc_by((now.serial_seconds - seen.serial_seconds).max(0.0));
        w.flush_seconds.inc_by((now.flush_seconds - seen.flush_seconds).max(0.0));
        *seen = now;
    }

    /// Brings the alert counters up to the service's running counts.
    pub fn observe_alerts(&self, counts: &[(&str, &str, u64)]) {
        let mut seen = self.alerts_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for &(kind, severity, n) in counts {
            let labels = AlertLabels { kind: kind.to_owned(), severity: severity.to_owned() };
            let before = seen.insert(labels.clone(), n).unwrap_or(0);
            self.alerts.get_or_create(&labels).inc_by(n.saturating_sub(before));
        }
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

    #[test]
    fn alerts_are_counted_by_kind_and_severity_from_the_services_running_counts() {
        let metrics = Metrics::default();
        metrics.observe_alerts(&[("off_duty", "medium", 2)]);
        metrics.observe_alerts(&[("off_duty", "medium", 3), ("two_places", "high", 1)]);
        let text = metrics.render();
        assert!(text.contains("careid_alerts_total{kind=\"off_duty\",severity=\"medium\"} 3"), "{text}");
        assert!(text.contains("careid_alerts_total{kind=\"two_places\",severity=\"high\"} 1"), "{text}");
    }

    #[test]
    fn write_batches_are_counted_from_the_stores_running_totals() {
        let metrics = Metrics::default();
        let stats = |batches, transactions, serial_seconds| WriteStats {
            batches,
            transactions,
            serial_seconds,
            flush_seconds: 0.5,
        };
        metrics.observe_writes(stats(2, 30, 0.25));
        metrics.observe_writes(stats(5, 100, 1.0));
        let text = metrics.render();
        assert!(text.contains("careid_store_write_batches_total 5"), "{text}");
        assert!(text.contains("careid_store_write_transactions_total 100"), "{text}");
        assert!(text.contains("careid_store_serial_section_seconds_total 1.0"), "{text}");
        assert!(text.contains("careid_store_flush_wait_seconds_total 0.5"), "{text}");
    }
}
