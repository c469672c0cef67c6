//! The HTTP bodies of the sentiment api: what clients send and receive. Shared by the api and
//! the ui, so the ui talks to the api in the same types without linking the model.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};

/// One label with its score (a softmax probability, or a raw logit when asked for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LabelScore {
    #[schema(example = "positive")]
    pub label: String,
    #[schema(example = 0.97)]
    pub score: f32,
}

/// `POST /predict` in the original form: one text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextRequest {
    /// The text to classify (at least one non-blank character).
    #[schema(
        example = "A wonderful, heart-warming film.",
        min_length = 1,
        pattern = r"\S"
    )]
    pub text: String,
    /// How a text longer than the model's max length is read; the server's `LONG_TEXT` when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_text: Option<LongTextMode>,
}

/// How a text longer than the model's max length is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LongTextMode {
    /// Keep the model's max length of tokens (one forward pass).
    Truncate,
    /// Overlapping windows over the whole text, their logits averaged.
    Windows,
}

/// The most texts one request may carry unless the server says otherwise (`--max-inputs`).
pub const DEFAULT_MAX_INPUTS: usize = 64;

/// A text with at least one non-blank character.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(pub String);

/// A list of 1 to [`DEFAULT_MAX_INPUTS`] texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Texts(pub Vec<Text>);

// utoipa's derive takes no length or pattern limits on newtypes: the schemas are written
// out, so that fuzzers (schemathesis) generate what the server accepts.
impl utoipa::PartialSchema for Text {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .pattern(Some(r"\S"))
            .description(Some("A text with at least one non-blank character."))
            .examples([serde_json::json!("A wonderful, heart-warming film.")])
            .into()
    }
}

impl ToSchema for Text {}

impl utoipa::PartialSchema for Texts {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("Text"))
            .min_items(Some(1))
            .max_items(Some(DEFAULT_MAX_INPUTS))
            .description(Some("1 to 64 texts (the server's --max-inputs)."))
            .into()
    }
}

impl ToSchema for Texts {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("Text".into(), <Text as utoipa::PartialSchema>::schema()));
    }
}

/// Text Embeddings Inference's input: one text or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Inputs {
    One(Text),
    Many(Texts),
}

/// `POST /predict` in Text Embeddings Inference's form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputsRequest {
    pub inputs: Inputs,
    /// Cut texts longer than the model's max length (true) or refuse them with 422 (false).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub truncate: bool,
    /// Return raw logits instead of probabilities.
    #[serde(default)]
    #[schema(default = false)]
    pub raw_scores: bool,
    /// How a text longer than the model's max length is read; the server's `LONG_TEXT` when
    /// absent. Windows never truncate, so `truncate: false` refuses nothing with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_text: Option<LongTextMode>,
}

fn yes() -> bool {
    true
}

/// Either form of `POST /predict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PredictRequest {
    Text(TextRequest),
    Inputs(InputsRequest),
}

/// The answer to `{"text": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PredictResponse {
    /// The most probable label.
    #[schema(example = "positive")]
    pub sentiment: String,
    /// Its softmax probability.
    #[schema(example = 0.97)]
    pub confidence: f32,
    /// Every label's probability, in the model's label order.
    pub scores: Vec<LabelScore>,
    /// The prediction's id in the prediction log (for `POST /feedback`); absent when the
    /// api runs without one (`PREDICTION_LOG` unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "01939d2e-7a4b-7c3e-9f1a-2b3c4d5e6f70")]
    pub id: Option<String>,
}

/// The answer to `{"inputs": ...}`: labels sorted by score, per input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum InputsResponse {
    One(Vec<LabelScore>),
    Many(Vec<Vec<LabelScore>>),
}

/// Either answer of `POST /predict`, matching the request's form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PredictAnswer {
    Text(PredictResponse),
    Inputs(InputsResponse),
}

/// What went wrong; `error_type` is stable, `error` says what and how to fix it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    #[schema(example = "text is empty: send at least one non-blank character")]
    pub error: String,
    #[schema(example = "validation")]
    pub error_type: ErrorType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The body is not JSON, or not JSON of the expected shape.
    InvalidJson,
    /// The body parses but its values are not acceptable (empty text, too many inputs, ...).
    Validation,
    /// The tokenizer rejected a text (as Text Embeddings Inference's `tokenizer` error).
    Tokenizer,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// Missing or wrong API key.
    Unauthorized,
    /// The queue is full: retry later.
    Overloaded,
    /// The model is not loaded (yet).
    Unhealthy,
    /// The model failed on this batch.
    Backend,
    /// The server runs without what the request needs (feedback without a prediction log).
    NotEnabled,
    NotFound,
    MethodNotAllowed,
    UnsupportedMediaType,
}

/// `GET /health`, `/health/live` and `/health/ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` once the model answered a warm-up prediction; otherwise `loading` or
    /// `unavailable`; `draining` (readiness while shutting down); `live` (liveness).
    #[schema(example = "ok")]
    pub status: String,
    /// Why the model is not ready, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Info {
    pub version: String,
    pub model_path: String,
    /// Whether the model is loaded; the fields below are empty until it is.
    pub ready: bool,
    /// The served model's content (config, weights, pipeline) as a short hash: the same
    /// files give the same version on every replica; every /predict answer carries it in
    /// its `x-model-version` header.
    #[serde(default)]
    pub model_version: Option<String>,
    pub labels: Vec<String>,
    pub max_length: usize,
    pub truncation: String,
    /// Precision of the encoder's matrix products: `f32` or `int8`.
    #[serde(default)]
    pub precision: String,
    /// What the classification head reads: `cls` (first token) or `mean` (of the tokens).
    #[serde(default)]
    pub pooling: String,
    /// How texts longer than `max_length` are read by default: `windows` or `truncate`.
    #[serde(default)]
    pub long_text: String,
    /// Probabilities are `softmax(logits / temperature)` (fitted on validation data).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// The model the classifier was fine-tuned from, when recorded.
    pub base_model: Option<String>,
    pub model_type: Option<String>,
    pub parameters: Option<usize>,
    /// The text cleaning applied before tokenization (as trained).
    pub cleaning: Option<serde_json::Value>,
    /// results/metrics.json of the training run, when present.
    pub training_metrics: Option<serde_json::Value>,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    pub max_inputs: usize,
    pub max_body_bytes: usize,
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_queue: usize,
}

/// `GET /training`: the latest training run's summary and its metrics.jsonl records (one
/// per logging step, `"type": "train"`, and per evaluation, `"type": "eval"`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct TrainingLog {
    /// results/run_summary.json, when present.
    pub summary: Option<serde_json::Value>,
    pub records: Vec<serde_json::Value>,
}

/// `GET /models`: the model versions `train` kept (models/<run-id>/version.json) and which
/// one the api is serving (matched by its model_version).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct ModelVersions {
    /// The models folder read.
    pub models_dir: String,
    /// The version registry.json names as promoted last.
    pub promoted: Option<String>,
    /// The model_version the api is serving now.
    pub serving_model_version: Option<String>,
    /// Oldest first.
    pub versions: Vec<ModelVersion>,
}

/// One kept version and its metrics.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct ModelVersion {
    pub id: String,
    pub created_at: String,
    pub base_model: String,
    pub labels: Vec<String>,
    pub validation_macro_f1: f64,
    pub test_macro_f1: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub model_version: String,
    /// Whether it was ever promoted (a rollback target).
    pub was_promoted: bool,
    /// Whether the api is serving it now.
    pub serving: bool,
}

/// `POST /feedback`: the right label for a logged prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The prediction's id, from its /predict answer (`id`, or the `x-prediction-ids` header).
    #[schema(example = "01939d2e-7a4b-7c3e-9f1a-2b3c4d5e6f70")]
    pub id: String,
    /// The right label: one of the model's labels (GET /info).
    #[schema(example = "negative")]
    pub label: String,
}

/// The answer to `POST /feedback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FeedbackResponse {
    pub id: String,
    pub label: String,
    /// What the model predicted.
    pub predicted: String,
    /// Whether the model was right.
    pub correct: bool,
    /// The model that made the prediction.
    pub model_version: String,
}

/// The drift of traffic from the model's training reference: the population stability
/// index of each feature (0 = the same; above `psi_alert` a significant shift).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriftScores {
    pub label: f64,
    pub confidence: f64,
    pub length: f64,
    pub max: f64,
}

/// Figures of a set of predictions.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct ProfileStats {
    pub predictions: u64,
    /// Each label's share, in the model's label order.
    pub label_shares: Vec<f64>,
    pub mean_confidence: Option<f64>,
    /// Share of texts longer than the model reads in one pass.
    pub over_max_length_share: Option<f64>,
    /// Share of word pieces that are the unknown token.
    pub unknown_token_rate: Option<f64>,
    /// Against the model's reference; absent without one or without predictions.
    pub drift: Option<DriftScores>,
}

/// Corrections received for a set of predictions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct FeedbackStats {
    pub received: u64,
    /// How many confirmed the model's label.
    pub correct: u64,
    /// `correct / received`: accuracy on the predictions users checked.
    pub accuracy: Option<f64>,
}

/// One time bucket of the logged predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonitoringBucket {
    /// Start, Unix milliseconds.
    pub start_ms: i64,
    pub stats: ProfileStats,
    pub feedback: FeedbackStats,
}

/// The logged predictions of a time range (every replica's, from the shared log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonitoringRange {
    pub since_ms: i64,
    pub bucket_seconds: u64,
    /// Rows read; the newest `row_limit` when there were more.
    pub rows: u64,
    pub row_limit: u64,
    pub overall: ProfileStats,
    pub feedback: FeedbackStats,
    pub buckets: Vec<MonitoringBucket>,
}

/// `GET /monitoring`: live figures of this replica and the logged history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Monitoring {
    pub labels: Vec<String>,
    pub model_version: Option<String>,
    /// What the model's drift reference was made from; absent when the model has none.
    pub reference: Option<String>,
    /// PSI above this: a moderate shift.
    pub psi_warn: f64,
    /// PSI above this: a significant shift (the shipped alert fires).
    pub psi_alert: f64,
    /// The last predictions of this replica (`MONITOR_WINDOW`).
    pub window: ProfileStats,
    /// Word pieces per text in the window at the 50th, 90th and 99th percentiles.
    pub window_length_quantiles: Vec<u32>,
    /// Whether predictions are logged (`PREDICTION_LOG`).
    pub logging: bool,
    /// Why the log could not be read, when it could not.
    pub log_error: Option<String>,
    pub range: Option<MonitoringRange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_request_forms_parse() {
        let r: PredictRequest = serde_json::from_str(r#"{"text": "hi"}"#).unwrap();
        assert_eq!(
            r,
            PredictRequest::Text(TextRequest {
                text: "hi".into(),
                long_text: None
            })
        );
        let r: PredictRequest =
            serde_json::from_str(r#"{"inputs": ["a", "b"], "raw_scores": true}"#).unwrap();
        let PredictRequest::Inputs(r) = r else {
            panic!()
        };
        assert_eq!(
            r.inputs,
            Inputs::Many(Texts(vec![Text("a".into()), Text("b".into())]))
        );
        assert!(r.truncate && r.raw_scores);
        assert!(serde_json::from_str::<PredictRequest>(r#"{"text": 3}"#).is_err());
        assert!(serde_json::from_str::<PredictRequest>(r#"{"text": "a", "inputs": "b"}"#).is_err());
    }
}
