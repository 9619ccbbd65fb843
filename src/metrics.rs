//! Prometheus metrics: requests by route and status, latency, sign-ins, refreshes, Redis, log
//! lines dropped.
//!
//! One registry per application (tests run many apps in one process), kept in `AppState`.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::directory::AuditMetrics;

/// Buckets for fast answers: /auth is sub-millisecond, sign-ins take tens of milliseconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    signins_started: IntCounterVec,
    signins_completed: IntCounterVec,
    signins_failed: IntCounterVec,
    refreshes: IntCounterVec,
    redis_errors: IntCounter,
    redis_latency: Histogram,
    audit: AuditMetrics,
}

const LOG_LINES_DROPPED: &str = "gatehouse_log_lines_dropped_total";
const LOG_LINES_DROPPED_HELP: &str =
    "Log lines dropped because stdout's reader fell behind (the log says so too)";

/// The log writer's count, kept process-wide (one log per process), read at each scrape.
struct LogLinesDropped(IntCounter);

impl Collector for LogLinesDropped {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        match IntCounter::new(LOG_LINES_DROPPED, LOG_LINES_DROPPED_HELP) {
            Ok(now) => {
                now.inc_by(crate::log_writer::dropped_lines());
                now.collect()
            }
            Err(_) => Vec::new(),
        }
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gatehouse_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_http_request_duration_seconds",
                "Time to answer, by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let signins_started = IntCounterVec::new(
            Opts::new(
                "gatehouse_signins_started_total",
                "Sign-ins started, by provider",
            ),
            &["provider"],
        )?;
        let signins_completed = IntCounterVec::new(
            Opts::new(
                "gatehouse_signins_completed_total",
                "Sign-ins completed, by provider",
            ),
            &["provider"],
        )?;
        let signins_failed = IntCounterVec::new(
            Opts::new(
                "gatehouse_signins_failed_total",
                "Callbacks that did not sign anyone in, by error code and provider (empty when \
                 the sign-in was unknown)",
            ),
            &["reason", "provider"],
        )?;
        let refreshes = IntCounterVec::new(
            Opts::new(
                "gatehouse_token_refreshes_total",
                "Token refreshes by outcome and provider",
            ),
            &["outcome", "provider"],
        )?;
        let redis_errors =
            IntCounter::new("gatehouse_redis_errors_total", "Redis commands that failed")?;
        let redis_latency = Histogram::with_opts(
            HistogramOpts::new(
                "gatehouse_redis_command_duration_seconds",
                "Time per Redis command",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let log_lines_dropped =
            LogLinesDropped(IntCounter::new(LOG_LINES_DROPPED, LOG_LINES_DROPPED_HELP)?);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(signins_started.clone()))?;
        registry.register(Box::new(signins_completed.clone()))?;
        registry.register(Box::new(signins_failed.clone()))?;
        registry.register(Box::new(refreshes.clone()))?;
        registry.register(Box::new(redis_errors.clone()))?;
        registry.register(Box::new(redis_latency.clone()))?;
        let audit = AuditMetrics {
            dropped: IntCounter::new(
                "gatehouse_audit_dropped_total",
                "Audit events dropped because the queue was full (database slow or down)",
            )?,
            pending: IntGauge::new(
                "gatehouse_audit_pending",
                "Audit events accepted and not yet written to the database",
            )?,
            written: IntCounter::new(
                "gatehouse_audit_written_total",
                "Audit events written to the database",
            )?,
            degraded: IntGauge::new(
                "gatehouse_directory_degraded",
                "1 while the directory's database cannot be written or does not answer",
            )?,
        };
        registry.register(Box::new(audit.dropped.clone()))?;
        registry.register(Box::new(audit.pending.clone()))?;
        registry.register(Box::new(audit.written.clone()))?;
        registry.register(Box::new(audit.degraded.clone()))?;
        registry.register(Box::new(log_lines_dropped))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            signins_started,
            signins_completed,
            signins_failed,
            refreshes,
            redis_errors,
            redis_latency,
            audit,
        })
    }

    /// The audit writer's counters and gauges (registered here, updated by the writer).
    pub fn audit(&self) -> AuditMetrics {
        self.audit.clone()
    }

    /// Shows every configured provider's sign-in counters from the start (at 0).
    ///
    /// The `provider` label of every series is one of the configured names (or empty, for a
    /// callback whose sign-in is unknown): callers pass a name they looked up, never request
    /// input, so the series stay bounded.
    pub fn know_providers<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            self.signins_started.with_label_values(&[name]);
            self.signins_completed.with_label_values(&[name]);
        }
    }

    pub fn signin_started(&self, provider: &str) {
        self.signins_started.with_label_values(&[provider]).inc();
    }

    pub fn signin_completed(&self, provider: &str) {
        self.signins_completed.with_label_values(&[provider]).inc();
    }

    /// `provider`: `None` when the callback's sign-in was unknown (no provider to name).
    pub fn signin_failed(&self, reason: &str, provider: Option<&str>) {
        self.signins_failed
            .with_label_values(&[reason, provider.unwrap_or_default()])
            .inc();
    }

    pub fn refreshed(&self, outcome: &str, provider: &str) {
        self.refreshes.with_label_values(&[outcome, provider]).inc();
    }

    pub fn redis_call(&self, took: Duration, ok: bool) {
        self.redis_latency.observe(took.as_secs_f64());
        if !ok {
            self.redis_errors.inc();
        }
    }

    fn observe(&self, route: &str, status: u16, took: Duration) {
        let status = status.to_string();
        self.requests
            .with_label_values(&[route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Counts every answer by matched route (never the raw path: unbounded label values).
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let started = Instant::now();
    let res = next.call(req).await;
    if let Some(metrics) = metrics {
        let (route, status) = match &res {
            Ok(res) => (res.request().match_pattern(), res.status().as_u16()),
            Err(e) => (None, e.as_response_error().status_code().as_u16()),
        };
        let route = route.unwrap_or_else(|| "unmatched".to_owned());
        let route = if route.is_empty() {
            "/".to_owned()
        } else {
            route
        };
        metrics.observe(&route, status, started.elapsed());
    }
    res
}

/// GET /metrics
pub async fn serve(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
