//! The handlers: each reads its request, calls one layer down, and `?`s; no logic of its
//! own beyond choosing the answer's shape.

use std::sync::Arc;

use api_types::{
    ErrorResponse, ErrorType, Health, Info, Inputs, InputsRequest, InputsResponse, LabelScore,
    LongTextMode, ModelVersion, ModelVersions, PredictAnswer, PredictRequest, PredictResponse,
    Text, TextRequest, Texts, TrainingLog,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse};
use utoipa::OpenApi;

use super::AppState;
use super::error::ApiError;
use super::predict::Predict;
use super::reload::{self, Reloaded};
use crate::model::{ModelState, limits};

/// Names the model that produced a /predict answer: its /info `model_version`.
pub const MODEL_VERSION_HEADER: HeaderName = HeaderName::from_static("x-model-version");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sentiment-rs api",
        description = "Sentiment classification with a fine-tuned DistilBERT: real softmax probabilities from the model."
    ),
    paths(
        predict,
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
        Reloaded
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
            headers(("x-model-version" = String, description = "The model that answered (its /info model_version)"))),
        (status = 400, description = "The body is not JSON", body = ErrorResponse),
        (status = 401, description = "Missing or wrong API key", body = ErrorResponse),
        (status = 413, description = "The body is too large", body = ErrorResponse),
        (status = 422, description = "Invalid values: empty text, too many inputs, too long without truncation; or the tokenizer rejected a text", body = ErrorResponse),
        (status = 429, description = "The queue is full: retry later", body = ErrorResponse),
        (status = 500, description = "The model failed on this batch", body = ErrorResponse),
        (status = 503, description = "The model is not loaded", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn predict(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<([(HeaderName, HeaderValue); 1], Json<PredictAnswer>), ApiError> {
    super::check_api_key(&state.args, &headers)?;
    let args = &state.args;
    let mut request = Predict::parse(body, args.max_body_bytes, args.max_inputs)?;
    let loaded = state.loaded()?;
    let texts = std::mem::take(&mut request.texts);
    let preds = loaded.infer.classify(texts, request.read).await?;
    let version = HeaderValue::from_str(loaded.info.model_version.as_deref().unwrap_or(""))
        .unwrap_or(HeaderValue::from_static(""));
    let answer = Json(request.answer(&preds, loaded.infer.labels()));
    Ok(([(MODEL_VERSION_HEADER, version)], answer))
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
        "no such route: see /docs (POST /predict, GET /health, /health/live, /health/ready, \
         /info, /metrics, /openapi.json)",
    )
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorType::MethodNotAllowed,
        "method not allowed on this route: see /docs",
    )
}
