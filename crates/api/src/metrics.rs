//! Prometheus metrics of one server (its own registry, so tests can run several servers).

use monitoring::{Reference, WindowSummary};
use prediction_log::LogMetrics;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder, core::Collector,
};

/// Latency buckets in seconds, from 1 ms to 30 s.
const LATENCY: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub queue_duration: HistogramVec,
    pub tokenization_duration: HistogramVec,
    pub inference_duration: HistogramVec,
    pub batch_size: HistogramVec,
    pub queue_depth: IntGauge,
    pub inputs: IntCounterVec,
    /// Model reloads by outcome: swapped, unchanged, rejected.
    pub reloads: IntCounterVec,
    /// Texts dropped from the queue because their request was gone (client disconnected or
    /// timed out) before the model reached them.
    pub abandoned: IntCounter,
    /// The prediction log, feedback, and the live window's figures and drift.
    pub monitor: MonitorMetrics,
}

/// What monitoring shows: the prediction log's writes and drops, corrections received, and
/// the `monitor_*` gauges of the last MONITOR_WINDOW predictions of this replica.
#[derive(Clone)]
pub struct MonitorMetrics {
    pub log: LogMetrics,
    /// Corrections received, by whether the model was right.
    pub feedback: IntCounterVec,
    predictions: IntGauge,
    label_share: GaugeVec,
    confidence_mean: Gauge,
    text_tokens: GaugeVec,
    over_max_length_share: Gauge,
    unknown_token_rate: Gauge,
    drift: GaugeVec,
}

impl MonitorMetrics {
    fn register(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str| register(registry, Gauge::new(name, help));
        let gauges = |name: &str, help: &str, label: &str| {
            register(registry, GaugeVec::new(Opts::new(name, help), &[label]))
        };
        let feedback = IntCounterVec::new(
            Opts::new(
                "feedback_total",
                "Corrections received (POST /feedback), by whether the model was right",
            ),
            &["correct"],
        );
        Self {
            log: LogMetrics::register(registry).expect("unique log metrics"),
            feedback: register(registry, feedback),
            predictions: register(
                registry,
                IntGauge::new(
                    "monitor_window_predictions",
                    "Predictions in the live window",
                ),
            ),
            label_share: gauges(
                "monitor_label_share",
                "Share of each predicted label in the window",
                "label",
            ),
            confidence_mean: gauge("monitor_confidence_mean", "Mean confidence in the window"),
            text_tokens: gauges(
                "monitor_text_tokens",
                "Word pieces per text in the window, at quantiles",
                "quantile",
            ),
            over_max_length_share: gauge(
                "monitor_over_max_length_share",
                "Share of texts in the window longer than the model reads in one pass",
            ),
            unknown_token_rate: gauge(
                "monitor_unknown_token_rate",
                "Share of word pieces in the window that are the unknown token",
            ),
            drift: gauges(
                "monitor_drift_psi",
                "Population stability index of the window against the model's training reference, per feature (0.1: moderate shift, 0.25: significant)",
                "feature",
            ),
        }
    }

    /// Shows `window` (a model with `labels`), and its drift from `reference` if any.
    pub fn set(&self, labels: &[String], window: &WindowSummary, reference: Option<&Reference>) {
        let p = &window.profile;
        self.predictions
            .set(i64::try_from(p.predictions).unwrap_or(i64::MAX));
        // A swapped model may have other labels: no series of old ones lingers.
        self.label_share.reset();
        for (label, share) in labels.iter().zip(p.label_shares()) {
            self.label_share.with_label_values(&[label]).set(share);
        }
        self.confidence_mean.set(p.mean_confidence().unwrap_or(0.0));
        for (q, tokens) in window.length_quantiles {
            self.text_tokens
                .with_label_values(&[&q.to_string()])
                .set(f64::from(tokens));
        }
        self.over_max_length_share
            .set(p.over_max_length_share().unwrap_or(0.0));
        self.unknown_token_rate
            .set(p.unknown_token_rate().unwrap_or(0.0));
        self.drift.reset();
        if let Some(d) = reference.and_then(|r| p.drift_from(&r.profile)) {
            for (feature, value) in [
                ("label", d.label),
                ("confidence", d.confidence),
                ("length", d.length),
                ("max", d.max()),
            ] {
                self.drift.with_label_values(&[feature]).set(value);
            }
        }
    }
}

/// Adds a newly made metric to `registry` and returns it; the names are constants, so a bad
/// or repeated one is a bug, not an input error.
fn register<M: Collector + Clone + 'static>(registry: &Registry, made: prometheus::Result<M>) -> M {
    let metric = made.expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            register(&registry, HistogramVec::new(opts, &[]))
        };
        let counters = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let requests = counters(
            "http_requests_total",
            "HTTP requests by route, method and status",
            &["route", "method", "status"],
        );
        let request_duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "HTTP request latency by route",
                )
                .buckets(LATENCY.to_vec()),
                &["route"],
            ),
        );
        let queue_depth = register(
            &registry,
            IntGauge::new("predict_queue_depth", "Texts waiting for the model"),
        );
        let inputs = counters(
            "predict_inputs_total",
            "Texts classified, by predicted label",
            &["label"],
        );
        let reloads = counters(
            "model_reloads_total",
            "Model reloads (folder change, POST /admin/reload, SIGHUP) by outcome",
            &["outcome"],
        );
        let abandoned = register(
            &registry,
            IntCounter::new(
                "predict_abandoned_texts_total",
                "Queued texts dropped unrun because their request was gone",
            ),
        );
        let monitor = MonitorMetrics::register(&registry);
        Self {
            monitor,
            queue_duration: histogram(
                "predict_queue_duration_seconds",
                "Time a text waited in the queue",
                &LATENCY,
            ),
            tokenization_duration: histogram(
                "predict_tokenization_duration_seconds",
                "Cleaning and tokenizing one request's texts",
                &LATENCY,
            ),
            inference_duration: histogram(
                "predict_inference_duration_seconds",
                "One forward pass of the model over a batch",
                &LATENCY,
            ),
            batch_size: histogram(
                "predict_batch_size",
                "Texts per forward pass",
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            registry,
            requests,
            request_duration,
            queue_depth,
            inputs,
            abandoned,
            reloads,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("the encoder writes UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
