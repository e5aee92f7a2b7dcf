//! Prometheus metrics: every metric a binary exposes is declared here, once, and the
//! `Metrics` value is passed to whatever records (no scattered globals). Labels have
//! bounded cardinality: integration, tool, outcome, phase, status class, queue, route —
//! never a user, connection or execution id.
//!
//! Knows nothing about HTTP serving; `encode` renders the OpenMetrics text a `/metrics`
//! route returns.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExecutionLabels {
    pub integration: String,
    pub tool: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub integration: String,
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabels {
    pub integration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub service: &'static str,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub service: &'static str,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The job's name. Not `job`: Prometheus keeps its own scrape `job` label and would
    /// store ours as `exported_job`.
    pub name: &'static str,
    pub outcome: &'static str,
}

fn seconds_histogram() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric of ClawLink. Cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

pub struct Inner {
    registry: Registry,
    pub executions: Family<ExecutionLabels, Counter>,
    pub execution_duration: Family<PhaseLabels, Histogram>,
    pub provider_responses: Family<ProviderLabels, Counter>,
    pub retries: Family<IntegrationLabels, Counter>,
    pub pacing_wait: Histogram,
    pub token_refreshes: Family<OutcomeLabels, Counter>,
    pub inflight: Gauge,
    pub queue_messages: Family<QueueLabels, Gauge>,
    pub queue_consumers: Family<QueueLabels, Gauge>,
    /// Seconds the oldest never-delivered call of each lane has waited.
    pub queue_oldest_age: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub job_runs: Family<JobLabels, Counter>,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let executions = Family::<ExecutionLabels, Counter>::default();
        registry.register(
            "clawlink_executions",
            "Executions finished, by integration, tool and outcome",
            executions.clone(),
        );
        let execution_duration =
            Family::<PhaseLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> Histogram);
        registry.register(
            "clawlink_execution_duration_seconds",
            "Execution time by phase: queue_wait, provider, total",
            execution_duration.clone(),
        );
        let provider_responses = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "clawlink_provider_responses",
            "Provider answers by status class (2xx, 4xx, 429, 5xx, network)",
            provider_responses.clone(),
        );
        let retries = Family::<IntegrationLabels, Counter>::default();
        registry.register("clawlink_retries", "Retried provider calls", retries.clone());
        let pacing_wait = seconds_histogram();
        registry.register(
            "clawlink_pacing_wait_seconds",
            "Time spent waiting for a rate-limit permit",
            pacing_wait.clone(),
        );
        let token_refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register("clawlink_token_refreshes", "OAuth token refreshes by outcome", token_refreshes.clone());
        let inflight = Gauge::default();
        registry.register(
            "clawlink_inflight_executions",
            "Executions being worked on by this process",
            inflight.clone(),
        );
        let queue_messages = Family::<QueueLabels, Gauge>::default();
        registry.register("clawlink_queue_messages", "Messages ready in each queue", queue_messages.clone());
        let queue_consumers = Family::<QueueLabels, Gauge>::default();
        registry.register("clawlink_queue_consumers", "Consumers attached to each queue", queue_consumers.clone());
        let queue_oldest_age = Family::<QueueLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "clawlink_queue_oldest_message_age_seconds",
            "Age of the oldest call waiting for its first delivery in each work queue",
            queue_oldest_age.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "clawlink_http_requests",
            "HTTP requests by service, route and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> Histogram);
        registry.register(
            "clawlink_http_request_duration_seconds",
            "HTTP request time by service and route",
            http_duration.clone(),
        );
        let job_runs = Family::<JobLabels, Counter>::default();
        registry.register("clawlink_job_runs", "Scheduled job runs by job name and outcome", job_runs.clone());
        // Series whose labels are known up front exist from the start, at zero.
        for phase in ["queue_wait", "provider", "total"] {
            let _ = execution_duration.get_or_create(&PhaseLabels { phase });
        }
        for queue in ["interactive", "bulk", "delay", "dead"] {
            let _ = queue_messages.get_or_create(&QueueLabels { queue });
            let _ = queue_consumers.get_or_create(&QueueLabels { queue });
        }
        for queue in ["interactive", "bulk"] {
            let _ = queue_oldest_age.get_or_create(&QueueLabels { queue });
        }
        for outcome in ["refreshed", "invalid_grant", "failed"] {
            let _ = token_refreshes.get_or_create(&OutcomeLabels { outcome });
        }
        Self(Arc::new(Inner {
            registry,
            executions,
            execution_duration,
            provider_responses,
            retries,
            pacing_wait,
            token_refreshes,
            inflight,
            queue_messages,
            queue_consumers,
            queue_oldest_age,
            http_requests,
            http_duration,
            job_runs,
        }))
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }

    pub fn status_class(status: Option<u16>) -> &'static str {
        match status {
            None => "network",
            Some(429) => "429",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
        }
    }

    /// Counts one run of the scheduled job `name`.
    pub fn job(&self, name: &'static str, ok: bool) {
        self.job_runs.get_or_create(&JobLabels { name, outcome: if ok { "ok" } else { "failed" } }).inc();
    }
}

/// The content type of `encode`'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed_with_its_documented_name() {
        let m = Metrics::new();
        m.executions
            .get_or_create(&ExecutionLabels {
                integration: "x".into(),
                tool: "x_y".into(),
                outcome: "succeeded".into(),
            })
            .inc();
        m.provider_responses.get_or_create(&ProviderLabels { integration: "x".into(), status_class: "2xx" }).inc();
        m.retries.get_or_create(&IntegrationLabels { integration: "x".into() }).inc();
        m.http_requests.get_or_create(&HttpLabels { service: "api", route: "/x".into(), status: 200 }).inc();
        m.http_duration.get_or_create(&RouteLabels { service: "api", route: "/x".into() }).observe(0.01);
        m.job("sweep", true);
        let text = m.encode();
        for name in [
            "clawlink_executions_total",
            "clawlink_execution_duration_seconds",
            "clawlink_provider_responses_total",
            "clawlink_retries_total",
            "clawlink_pacing_wait_seconds",
            "clawlink_token_refreshes_total",
            "clawlink_inflight_executions",
            "clawlink_queue_messages",
            "clawlink_queue_consumers",
            "clawlink_queue_oldest_message_age_seconds",
            "clawlink_http_requests_total",
            "clawlink_http_request_duration_seconds",
            "clawlink_job_runs_total",
        ] {
            assert!(text.contains(&format!("# TYPE {}", name.trim_end_matches("_total"))), "{name} missing:\n{text}");
        }
        assert!(
            text.contains(r#"clawlink_executions_total{integration="x",tool="x_y",outcome="succeeded"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"clawlink_job_runs_total{name="sweep",outcome="ok"} 1"#), "{text}");
    }
}
