//! Watching what the model serves: every prediction into the prediction log (when
//! `PREDICTION_LOG` is set) and into a live window of this replica; corrections from users
//! (`POST /feedback`); and the figures behind /metrics' `monitor_*` gauges and
//! `GET /monitoring`, with drift scores against the model's training reference.

mod error;
mod report;

use std::sync::Mutex;
use std::time::Duration;

use api_types::{FeedbackRequest, FeedbackResponse, Monitoring};
use classifier::Prediction;
use monitoring::{Observation, Reference, Window};
use prediction_log::{FeedbackOutcome, LogOptions, Logger, Row, Source};

pub use error::MonitorError;
pub use report::RangeQuery;

use crate::config::MonitorArgs;
use crate::infer::TextShape;
use crate::metrics::Metrics;
use crate::model::Loaded;

/// How long a request that needs the log's database waits for its first connection.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

/// One answered request, as the log records it.
pub struct Served<'a> {
    pub texts: &'a [String],
    pub results: &'a [(Prediction, TextShape)],
    pub loaded: &'a Loaded,
    pub source: Source,
    pub latency: Duration,
}

/// The prediction log's writer (if any) and this replica's live window.
pub struct Monitor {
    logger: Option<Logger>,
    log_text: bool,
    flush_every: Duration,
    /// The window, and the model version whose predictions it holds.
    window: Mutex<(Option<String>, Window)>,
}

impl Monitor {
    /// Starts the log writer when `PREDICTION_LOG` is set. Must run inside the runtime.
    pub fn start(args: &MonitorArgs, metrics: &Metrics) -> Result<Self, MonitorError> {
        let options = LogOptions {
            buffer: args.prediction_log_buffer,
            max_rows: Some(args.prediction_log_max_rows).filter(|&n| n > 0),
            max_age: Some(args.prediction_log_max_days)
                .filter(|&d| d > 0)
                .map(|d| Duration::from_secs(d * 86_400)),
            ..LogOptions::default()
        };
        let flush_every = options.flush_every;
        let logger = match args.log_url() {
            Some(url) => Some(Logger::start(url, options, metrics.monitor.log.clone())?),
            None => None,
        };
        Ok(Self {
            logger,
            log_text: args.log_text,
            flush_every,
            window: Mutex::new((None, Window::new(args.monitor_window))),
        })
    }

    pub fn logging(&self) -> bool {
        self.logger.is_some()
    }

    /// Records one answered request: into the window, and into the log with new ids, which
    /// it returns (none without a log).
    pub fn record(&self, served: &Served<'_>) -> Vec<String> {
        let version = served.loaded.info.model_version.clone();
        {
            let mut guard = self.window.lock().expect("window lock");
            let (seen, window) = &mut *guard;
            if *seen != version {
                window.clear();
                seen.clone_from(&version);
            }
            for (p, shape) in served.results {
                window.push(observation(p, shape));
            }
        }
        let Some(logger) = &self.logger else {
            return Vec::new();
        };
        let now = prediction_log::now_ms();
        let labels = served.loaded.infer.labels();
        let version = version.unwrap_or_default();
        let latency_ms = served.latency.as_secs_f64() * 1e3;
        served
            .texts
            .iter()
            .zip(served.results)
            .map(|(text, (p, shape))| {
                let row = Row {
                    id: Row::new_id(),
                    created_at: now,
                    model_version: version.clone(),
                    source: served.source,
                    text: self.log_text.then(|| text.clone()),
                    text_hash: Row::hash_text(text),
                    text_chars: i64::try_from(text.chars().count()).unwrap_or(i64::MAX),
                    tokens: i64::try_from(shape.word_pieces).unwrap_or(i64::MAX),
                    unknown_tokens: i64::try_from(shape.unknown).unwrap_or(i64::MAX),
                    over_max_length: shape.over_max_length,
                    label: labels[p.class].clone(),
                    confidence: f64::from(p.confidence()),
                    probabilities: probabilities_json(labels, &p.probabilities),
                    latency_ms,
                };
                let id = row.id.clone();
                logger.log(row);
                id
            })
            .collect()
    }

    /// Records `request.label` as the right answer for a logged prediction. A prediction
    /// still in a write buffer (this replica's, or another's) is waited for briefly.
    pub async fn feedback(
        &self,
        request: &FeedbackRequest,
        labels: &[String],
    ) -> Result<FeedbackResponse, MonitorError> {
        let logger = self.logger.as_ref().ok_or(MonitorError::LogOff)?;
        if !Row::is_id(&request.id) {
            return Err(MonitorError::BadId(request.id.clone()));
        }
        if !labels.contains(&request.label) {
            return Err(MonitorError::UnknownLabel {
                label: request.label.clone(),
                labels: labels.to_vec(),
            });
        }
        let store = logger
            .store_within(CONNECT_WAIT)
            .await
            .ok_or_else(|| MonitorError::Unreachable("not connected".into()))?;
        let record = || store.add_feedback(&request.id, &request.label, prediction_log::now_ms());
        let mut outcome = record().await?;
        if outcome == FeedbackOutcome::UnknownId {
            let _ = tokio::time::timeout(self.flush_every * 4, logger.flush()).await;
            outcome = record().await?;
        }
        if outcome == FeedbackOutcome::UnknownId {
            tokio::time::sleep(self.flush_every * 2).await;
            outcome = record().await?;
        }
        match outcome {
            FeedbackOutcome::UnknownId => Err(MonitorError::UnknownId(request.id.clone())),
            FeedbackOutcome::Recorded(logged) => Ok(FeedbackResponse {
                id: logged.id,
                correct: logged.label == request.label,
                label: request.label.clone(),
                predicted: logged.label,
                model_version: logged.model_version,
            }),
        }
    }

    /// The live window's figures and, with a log, the history of `query`'s range.
    pub async fn report(&self, loaded: &Loaded, query: RangeQuery) -> Monitoring {
        let labels = loaded.infer.labels().to_vec();
        let summary = {
            let guard = self.window.lock().expect("window lock");
            guard.1.summary(labels.len())
        };
        let mut out = report::live(&labels, loaded, &summary);
        let Some(logger) = &self.logger else {
            return out;
        };
        out.logging = true;
        let Some(store) = logger.store_within(CONNECT_WAIT).await else {
            out.log_error = Some("the prediction log is not reachable yet".into());
            return out;
        };
        match report::range(store, &labels, loaded.reference.as_ref(), query).await {
            Ok(range) => out.range = Some(range),
            Err(e) => out.log_error = Some(e.to_string()),
        }
        out
    }

    /// Sets /metrics' monitor_* gauges from the window.
    pub fn export(&self, loaded: Option<&Loaded>, metrics: &Metrics) {
        let Some(loaded) = loaded else {
            return;
        };
        let labels = loaded.infer.labels();
        let summary = self
            .window
            .lock()
            .expect("window lock")
            .1
            .summary(labels.len());
        metrics
            .monitor
            .set(labels, &summary, loaded.reference.as_ref());
    }

    /// Writes what is buffered (at shut-down), waiting at most `grace`.
    pub async fn flush(&self, grace: Duration) {
        if let Some(logger) = &self.logger
            && tokio::time::timeout(grace, logger.flush()).await.is_err()
        {
            tracing::warn!("the prediction log did not finish writing within {grace:?}");
        }
    }
}

fn observation(p: &Prediction, shape: &TextShape) -> Observation {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Observation {
        label: p.class,
        confidence: p.confidence(),
        tokens: count(shape.word_pieces),
        unknown: count(shape.unknown),
        over_max_length: shape.over_max_length,
    }
}

fn probabilities_json(labels: &[String], probabilities: &[f32]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .zip(probabilities)
        .map(|(l, p)| (l.clone(), serde_json::json!(p)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// The reference's label order must be the model's for its shares to compare.
pub fn usable_reference(reference: Option<Reference>, labels: &[String]) -> Option<Reference> {
    let r = reference?;
    if r.labels == labels {
        Some(r)
    } else {
        tracing::warn!(
            "the drift reference's labels {:?} are not the model's {:?}: no drift scores",
            r.labels,
            labels
        );
        None
    }
}
