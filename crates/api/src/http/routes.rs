//! The handlers: each reads its request, calls one layer down, and `?`s; no logic of its
//! own beyond choosing the answer's shape.

use std::sync::Arc;

use std::time::Instant;

use api_types::{
    DriftScores, ErrorResponse, ErrorType, FeedbackRequest, FeedbackResponse, FeedbackStats,
    Health, Info, Inputs, InputsRequest, InputsResponse, LabelScore, LongTextMode, ModelVersion,
    ModelVersions, Monitoring, MonitoringBucket, MonitoringRange, PredictAnswer, PredictRequest,
    PredictResponse, ProfileStats, Text, TextRequest, Texts, TrainingLog,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse};
use utoipa::OpenApi;

use super::AppState;
use super::error::ApiError;
use super::predict::Predict;
use super::reload::{self, Reloaded};
use crate::model::{ModelState, limits};
use crate::monitor::{MonitorError, RangeQuery, Served};

/// Names the model that produced a /predict answer: its /info `model_version`.
pub const MODEL_VERSION_HEADER: HeaderName = HeaderName::from_static("x-model-version");
/// The ids of a /predict answer's predictions in the prediction log, comma-separated in
/// input order (for `POST /feedback`); absent without a log.
pub const PREDICTION_IDS_HEADER: HeaderName = HeaderName::from_static("x-prediction-ids");
/// Who asks, recorded in the prediction log: `api` (the default), `ui` or `batch`.
pub const PREDICTION_SOURCE_HEADER: HeaderName = HeaderName::from_static("x-prediction-source");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sentiment-rs api",
        description = "Sentiment classification with a fine-tuned DistilBERT: real softmax probabilities from the model."
    ),
    paths(
        predict,
        feedback,
        monitoring,
        health,
        live,
        ready,
        info,
        training,
        models,
        metrics,
        admin_reload
    ),
    components(schemas(
        PredictRequest,
        TextRequest,
        InputsRequest,
        LongTextMode,
        Inputs,
        Text,
        Texts,
        PredictAnswer,
        PredictResponse,
        InputsResponse,
        LabelScore,
        ErrorResponse,
        ErrorType,
        Health,
        Info,
        TrainingLog,
        ModelVersions,
        ModelVersion,
        Reloaded,
        FeedbackRequest,
        FeedbackResponse,
        Monitoring,
        MonitoringRange,
        MonitoringBucket,
        ProfileStats,
        FeedbackStats,
        DriftScores
    ))
)]
pub struct ApiDoc;

/// Classify text.
///
/// Send `{"text": "..."}` for `{sentiment, confidence, scores}`, or Text Embeddings
/// Inference's `{"inputs": "..." | [...], "truncate": true, "raw_scores": false}` for a
/// list (or list of lists) of `{label, score}` sorted by score. Either form may add
/// `"long_text": "windows"` (a text longer than the model's max length is read in
/// overlapping windows whose logits are averaged) or `"truncate"`; the server's `LONG_TEXT`
/// decides otherwise. Scores are `softmax(logits / temperature)`, calibrated in training.
#[utoipa::path(
    post,
    path = "/predict",
    request_body = PredictRequest,
    responses(
        (status = 200, description = "Predictions", body = PredictAnswer,
            headers(
                ("x-model-version" = String, description = "The model that answered (its /info model_version)"),
                ("x-prediction-ids" = String, description = "The predictions' ids in the prediction log, comma-separated in input order (for POST /feedback); absent without a log")
            )),
        (status = 400, description = "The body is not JSON", body = ErrorResponse),
        (status = 401, description = "Missing or wrong API key", body = ErrorResponse),
        (status = 413, description = "The body is too large", body = ErrorResponse),
        (status = 422, description = "Invalid values: empty text, too many inputs, too long without truncation, an unknown x-prediction-source; or the tokenizer rejected a text", body = ErrorResponse),
        (status = 429, description = "The queue is full: retry later", body = ErrorResponse),
        (status = 500, description = "The model failed on this batch", body = ErrorResponse),
        (status = 503, description = "The model is not loaded", body = ErrorResponse),
    ),
    params(("x-prediction-source" = Option<String>, Header, description = "Who asks, for the prediction log: api (default), ui or batch")),
    security((), ("bearer" = []))
)]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(HeaderMap, Json<PredictAnswer>), ApiError> {
    super::check_api_key(&state.args, &headers)?;
    let started = Instant::now();
    let source = prediction_source(&headers)?;
    let args = &state.args;
    let mut request = Predict::parse(body, args.max_body_bytes, args.max_inputs)?;
    let loaded = state.loaded()?;
    let texts = std::mem::take(&mut request.texts);
    // The log needs the texts after the model has them; without a log nothing is copied.
    let kept = if state.monitor.logging() {
        texts.clone()
    } else {
        Vec::new()
    };
    let results = loaded.infer.classify(texts, request.read).await?;
    let ids = state.monitor.record(&Served {
        texts: &kept,
        results: &results,
        loaded: &loaded,
        source,
        latency: started.elapsed(),
    });
    let preds: Vec<_> = results.into_iter().map(|(p, _)| p).collect();
    let answer = Json(request.answer(&preds, loaded.infer.labels(), &ids));
    let mut out = HeaderMap::new();
    let version = loaded.info.model_version.as_deref().unwrap_or("");
    out.insert(
        MODEL_VERSION_HEADER,
        HeaderValue::from_str(version).unwrap_or(HeaderValue::from_static("")),
    );
    if !ids.is_empty() {
        let joined = HeaderValue::from_str(&ids.join(",")).expect("uuids are header-safe");
        out.insert(PREDICTION_IDS_HEADER, joined);
    }
    Ok((out, answer))
}

fn prediction_source(headers: &HeaderMap) -> Result<prediction_log::Source, ApiError> {
    let Some(value) = headers.get(PREDICTION_SOURCE_HEADER) else {
        return Ok(prediction_log::Source::Api);
    };
    let text = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
    text.parse()
        .map_err(|_| MonitorError::BadSource(text).into())
}

/// Correct a prediction.
///
/// Records the right label for a logged prediction (its id from the /predict answer's `id`
/// or `x-prediction-ids` header). A second correction of the same prediction replaces the
/// first. Corrections become training examples (`preprocess --source` with the log) and
/// the accuracy on /monitoring.
#[utoipa::path(
    post,
    path = "/feedback",
    request_body = FeedbackRequest,
    responses(
        (status = 200, description = "Recorded", body = FeedbackResponse),
        (status = 400, description = "The body is not JSON", body = ErrorResponse),
        (status = 401, description = "Missing or wrong API key", body = ErrorResponse),
        (status = 404, description = "No logged prediction has this id", body = ErrorResponse),
        (status = 422, description = "Not an id, or not one of the model's labels", body = ErrorResponse),
        (status = 501, description = "The api runs without a prediction log", body = ErrorResponse),
        (status = 503, description = "The model or the log is not ready", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn feedback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<FeedbackRequest>, JsonRejection>,
) -> Result<Json<FeedbackResponse>, ApiError> {
    super::check_api_key(&state.args, &headers)?;
    let Json(request) = body?;
    let loaded = state.loaded()?;
    let answer = state
        .monitor
        .feedback(&request, loaded.infer.labels())
        .await?;
    let correct = if answer.correct { "true" } else { "false" };
    state
        .metrics
        .monitor
        .feedback
        .with_label_values(&[correct])
        .inc();
    Ok(Json(answer))
}

/// What the model has been serving.
///
/// The live window of this replica (label shares, confidence, lengths, drift from the
/// model's training reference) and, with a prediction log, the logged history of every
/// replica over `hours` in `buckets`, with accuracy on the corrections received.
#[utoipa::path(
    get,
    path = "/monitoring",
    params(RangeQuery),
    responses(
        (status = 200, description = "The figures", body = Monitoring),
        (status = 422, description = "hours or buckets is not a number", body = ErrorResponse),
        (status = 503, description = "The model is not loaded", body = ErrorResponse),
    )
)]
pub async fn monitoring(
    State(state): State<Arc<AppState>>,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Json<Monitoring>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::validation(e.body_text()))?;
    let loaded = state.loaded()?;
    Ok(Json(state.monitor.report(&loaded, query).await))
}

/// Liveness and readiness: 200 once the model answered a warm-up prediction.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "Ready", body = Health),
    (status = 503, description = "Loading, or no usable model", body = Health),
))]
pub async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    match &*state.model.read().expect("model lock") {
        ModelState::Ready(_) => (
            StatusCode::OK,
            Json(Health {
                status: "ok".into(),
                error: None,
            }),
        ),
        ModelState::Loading => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "loading".into(),
                error: None,
            }),
        ),
        ModelState::Unavailable(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable".into(),
                error: Some(why.clone()),
            }),
        ),
    }
}

/// Liveness: 200 whenever the process answers (a loading or draining server is alive).
#[utoipa::path(get, path = "/health/live", responses(
    (status = 200, description = "The process answers", body = Health),
))]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "live".into(),
        error: None,
    })
}

/// Readiness: as /health, and 503 `draining` once the server is shutting down, so that load
/// balancers stop sending it new requests.
#[utoipa::path(get, path = "/health/ready", responses(
    (status = 200, description = "Ready for requests", body = Health),
    (status = 503, description = "Loading, no usable model, or draining", body = Health),
))]
pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    if state.is_draining() {
        let draining = Health {
            status: "draining".into(),
            error: Some("shutting down: send new requests to another replica".into()),
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(draining));
    }
    health(State(state)).await
}

/// Loads the model folder afresh and serves it if it holds another model (as a change of
/// the folder, or SIGHUP, does); requests already accepted finish on the old one.
#[utoipa::path(post, path = "/admin/reload", responses(
    (status = 200, description = "Serving the folder's model (swapped or already serving)", body = Reloaded),
    (status = 401, description = "Missing or wrong API key", body = ErrorResponse),
    (status = 500, description = "The new model was rejected; the old one keeps serving", body = ErrorResponse),
), security((), ("bearer" = [])))]
pub async fn admin_reload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Reloaded>, ApiError> {
    super::check_api_key(&state.args, &headers)?;
    Ok(Json(reload::reload(&state, "POST /admin/reload").await?))
}

/// The model and its training: labels, limits, base model, metrics.
#[utoipa::path(get, path = "/info", responses((status = 200, description = "Model information", body = Info)))]
pub async fn info(State(state): State<Arc<AppState>>) -> Json<Info> {
    match state.loaded() {
        Ok(l) => Json(l.info.clone()),
        Err(_) => Json(Info {
            version: env!("CARGO_PKG_VERSION").into(),
            model_path: state.args.model_path.display().to_string(),
            ready: false,
            model_version: None,
            labels: vec![],
            max_length: 0,
            truncation: String::new(),
            precision: String::new(),
            pooling: String::new(),
            long_text: String::new(),
            temperature: None,
            base_model: None,
            model_type: None,
            parameters: None,
            cleaning: None,
            training_metrics: None,
            limits: limits(&state.args),
        }),
    }
}

/// The latest training run: its summary and its per-step / per-epoch records, for charts.
#[utoipa::path(get, path = "/training", responses((status = 200, description = "The run log (empty when no run is recorded)", body = TrainingLog)))]
pub async fn training(State(state): State<Arc<AppState>>) -> Json<TrainingLog> {
    let results = state.args.results_dir.clone();
    let log = tokio::task::spawn_blocking(move || crate::training_log::read(&results))
        .await
        .unwrap_or_default();
    Json(log)
}

/// The model versions `train` kept, with their metrics, marking the one being served.
#[utoipa::path(get, path = "/models", responses((status = 200, description = "Kept versions, oldest first (empty without a models folder)", body = ModelVersions)))]
pub async fn models(State(state): State<Arc<AppState>>) -> Json<ModelVersions> {
    let dir = state.args.models_dir();
    let serving = state
        .loaded()
        .ok()
        .and_then(|l| l.info.model_version.clone());
    let versions = tokio::task::spawn_blocking(move || {
        crate::training_log::versions(&dir, serving.as_deref())
    })
    .await
    .unwrap_or_default();
    Json(versions)
}

/// Prometheus metrics: requests by route and status, latencies of queue, tokenization and
/// inference, batch sizes, queue depth.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    state
        .monitor
        .export(state.loaded().ok().as_deref(), &state.metrics);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the spec serializes"),
    )
}

pub async fn docs() -> Html<String> {
    Html(super::docs::render(&ApiDoc::openapi()))
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        ErrorType::NotFound,
        "no such route: see /docs (POST /predict, POST /feedback, GET /health, /health/live, \
         /health/ready, /info, /monitoring, /metrics, /openapi.json)",
    )
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorType::MethodNotAllowed,
        "method not allowed on this route: see /docs",
    )
}
