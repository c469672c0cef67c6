//! Prometheus metrics of one server (its own registry, so tests can run several servers).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder, core::Collector,
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
        Self {
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
