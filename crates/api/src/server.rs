//! The HTTP layer: routes, request validation, auth, per-request logs and metrics, OpenAPI,
//! and graceful shutdown. Inference itself happens in [`crate::batching`].

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use api_types::{
    ErrorResponse, ErrorType, Health, Info, Inputs, InputsRequest, InputsResponse, LabelScore,
    LongTextMode, PredictAnswer, PredictRequest, PredictResponse, Text, TextRequest, Texts,
    TrainingLog,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use classifier::{LongText, Prediction};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use utoipa::OpenApi;

use crate::batching::Entry;
use crate::config::Args;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::model::{Loaded, ModelState, limits, load_until_ready};

/// Shared by every request.
pub struct AppState {
    pub args: Args,
    pub metrics: Metrics,
    model: RwLock<ModelState>,
}

impl AppState {
    pub fn new(args: Args) -> Self {
        Self {
            args,
            metrics: Metrics::new(),
            model: RwLock::new(ModelState::Loading),
        }
    }

    fn set_model(&self, state: ModelState) {
        *self.model.write().expect("model lock") = state;
    }

    fn loaded(&self) -> Result<Arc<Loaded>, ApiError> {
        match &*self.model.read().expect("model lock") {
            ModelState::Ready(l) => Ok(l.clone()),
            ModelState::Loading => Err(ApiError::new(
                ErrorType::Unhealthy,
                "the model service is starting: the model is still loading, retry shortly",
            )),
            ModelState::Unavailable(why) => Err(ApiError::new(ErrorType::Unhealthy, why.clone())),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sentiment-rs api",
        description = "Sentiment classification with a fine-tuned DistilBERT: real softmax probabilities from the model."
    ),
    paths(predict, health, info, training, metrics),
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
        TrainingLog
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
        (status = 200, description = "Predictions", body = PredictAnswer),
        (status = 400, description = "The body is not JSON", body = ErrorResponse),
        (status = 401, description = "Missing or wrong API key", body = ErrorResponse),
        (status = 413, description = "The body is too large", body = ErrorResponse),
        (status = 422, description = "Invalid values: empty text, too many inputs, too long without truncation", body = ErrorResponse),
        (status = 429, description = "The queue is full: retry later", body = ErrorResponse),
        (status = 500, description = "The model failed on this batch", body = ErrorResponse),
        (status = 503, description = "The model is not loaded", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
async fn predict(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PredictAnswer>, ApiError> {
    check_api_key(&state.args, &headers)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorType::PayloadTooLarge,
                format!(
                    "the body is larger than {} bytes: send fewer or shorter texts",
                    state.args.max_body_bytes
                ),
            )
        } else {
            ApiError::new(
                ErrorType::InvalidJson,
                format!("cannot read the body: {rejection}"),
            )
        }
    })?;
    let request = parse_request(&body)?;
    let (texts, read, raw_scores, form) = match request {
        PredictRequest::Text(r) => (
            vec![r.text],
            Reading::new(true, r.long_text),
            false,
            Form::Text,
        ),
        PredictRequest::Inputs(r) => {
            let read = Reading::new(r.truncate, r.long_text);
            match r.inputs {
                Inputs::One(t) => (vec![t.0], read, r.raw_scores, Form::One),
                Inputs::Many(ts) => (
                    ts.0.into_iter().map(|t| t.0).collect(),
                    read,
                    r.raw_scores,
                    Form::Many,
                ),
            }
        }
    };
    validate(&texts, state.args.max_inputs)?;
    let loaded = state.loaded()?;
    let preds = classify(&state, &loaded, texts, read).await?;
    let labels = &loaded.info.labels;
    for p in &preds {
        state
            .metrics
            .inputs
            .with_label_values(&[labels[p.class].as_str()])
            .inc();
    }
    let scored = |p: &Prediction, raw: bool| -> Vec<LabelScore> {
        let values = if raw { &p.logits } else { &p.probabilities };
        labels
            .iter()
            .zip(values)
            .map(|(l, s)| LabelScore {
                label: l.clone(),
                score: *s,
            })
            .collect()
    };
    let sorted = |p: &Prediction| {
        let mut s = scored(p, raw_scores);
        s.sort_by(|a, b| b.score.total_cmp(&a.score));
        s
    };
    Ok(Json(match form {
        Form::Text => {
            let p = &preds[0];
            PredictAnswer::Text(PredictResponse {
                sentiment: labels[p.class].clone(),
                confidence: p.confidence(),
                scores: scored(p, false),
            })
        }
        Form::One => PredictAnswer::Inputs(InputsResponse::One(sorted(&preds[0]))),
        Form::Many => {
            PredictAnswer::Inputs(InputsResponse::Many(preds.iter().map(sorted).collect()))
        }
    }))
}

enum Form {
    Text,
    One,
    Many,
}

/// Syntax errors are 400; JSON of the wrong shape or types is 422, saying what was expected.
fn parse_request(body: &[u8]) -> Result<PredictRequest, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorType::InvalidJson,
            format!("the body is not valid JSON ({e}): send {{\"text\": \"...\"}}"),
        )
    })?;
    let Some(obj) = value.as_object() else {
        return Err(ApiError::validation(
            "expected a JSON object: {\"text\": \"...\"} or {\"inputs\": \"...\" | [\"...\"]}",
        ));
    };
    let shape_error = |e: serde_json::Error| ApiError::validation(e.to_string());
    match (obj.contains_key("text"), obj.contains_key("inputs")) {
        (true, false) => Ok(PredictRequest::Text(
            serde_json::from_value(value).map_err(|e| {
                ApiError::validation(format!("{e}: `text` must be a string and the only field"))
            })?,
        )),
        (false, true) => Ok(PredictRequest::Inputs(
            serde_json::from_value(value).map_err(shape_error)?,
        )),
        (true, true) => Err(ApiError::validation(
            "send either `text` or `inputs`, not both",
        )),
        (false, false) => Err(ApiError::validation(
            "missing field: expected {\"text\": \"...\"} or {\"inputs\": \"...\" | [\"...\"]}",
        )),
    }
}

fn validate(texts: &[String], max_inputs: usize) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::validation(
            "`inputs` is empty: send at least one text",
        ));
    }
    if texts.len() > max_inputs {
        return Err(ApiError::validation(format!(
            "{} inputs in one request; at most {max_inputs} are accepted: split the request",
            texts.len()
        )));
    }
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(ApiError::validation(if texts.len() == 1 {
            "the text is empty: send at least one non-blank character".to_string()
        } else {
            format!("input {i} is empty: every text needs a non-blank character")
        }));
    }
    Ok(())
}

fn check_api_key(args: &Args, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &args.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time in the key's length: no early exit on the first differing byte.
    let same = given.len() == key.len()
        && given
            .bytes()
            .zip(key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorType::Unauthorized,
            "missing or wrong API key: send `Authorization: Bearer <API_KEY>`",
        ))
    }
}

/// How one request's long texts are read.
#[derive(Debug, Clone, Copy)]
struct Reading {
    /// `false`: a text the model would have to truncate is refused.
    truncate: bool,
    /// The request's own long-text mode, else the server's.
    mode: Option<LongText>,
}

impl Reading {
    fn new(truncate: bool, mode: Option<LongTextMode>) -> Self {
        let mode = mode.map(|m| match m {
            LongTextMode::Truncate => LongText::Truncate,
            LongTextMode::Windows => LongText::Windows,
        });
        Self { truncate, mode }
    }
}

/// Tokenizes every text into the windows it is read in, off the runtime.
async fn encode(
    loaded: &Arc<Loaded>,
    texts: Vec<String>,
    read: Reading,
) -> Result<Vec<Vec<Vec<u32>>>, ApiError> {
    let clf = loaded.classifier.clone();
    let mut policy = clf.long_text();
    policy.mode = read.mode.unwrap_or(policy.mode);
    let max_length = loaded.info.max_length;
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        if policy.mode == LongText::Windows {
            return clf.encode_windows_with(&refs, policy).map_err(tokenizer_error);
        }
        let encoded = clf.encode_with_lengths(&refs).map_err(tokenizer_error)?;
        if !read.truncate
            && let Some((i, (_, len))) = encoded.iter().enumerate().find(|(_, (_, len))| *len > max_length)
        {
            return Err(ApiError::validation(format!(
                "input {i} is {len} tokens long; the model takes at most {max_length}: shorten it, send \"truncate\": true, or \"long_text\": \"windows\""
            )));
        }
        Ok(encoded.into_iter().map(|(ids, _)| vec![ids]).collect())
    })
    .await
    .map_err(|e| ApiError::new(ErrorType::Backend, format!("tokenization crashed: {e}")))?
}

fn tokenizer_error(e: classifier::Error) -> ApiError {
    ApiError::new(ErrorType::Backend, format!("tokenization failed: {e}"))
}

/// Queues every window of every text, waits for the model thread's answers, and averages
/// each text's windows.
async fn classify(
    state: &AppState,
    loaded: &Arc<Loaded>,
    texts: Vec<String>,
    read: Reading,
) -> Result<Vec<Prediction>, ApiError> {
    let started = Instant::now();
    let windows = encode(loaded, texts, read).await?;
    state
        .metrics
        .tokenization_duration
        .with_label_values::<&str>(&[])
        .observe(started.elapsed().as_secs_f64());
    let counts: Vec<usize> = windows.iter().map(Vec::len).collect();
    let total: usize = counts.iter().sum();
    if total > state.args.max_queue {
        return Err(ApiError::validation(format!(
            "these texts need {total} windows of the model's max length, more than the queue holds ({}): send fewer or shorter texts, or \"long_text\": \"truncate\"",
            state.args.max_queue
        )));
    }
    let now = Instant::now();
    let (entries, answers): (Vec<Entry>, Vec<_>) = windows
        .into_iter()
        .flatten()
        .map(|ids| {
            let (tx, rx) = oneshot::channel();
            (
                Entry {
                    ids,
                    enqueued: now,
                    respond: tx,
                },
                rx,
            )
        })
        .unzip();
    loaded.queue.push_all(entries).map_err(|_| {
        ApiError::new(
            ErrorType::Overloaded,
            format!(
                "the model queue is full ({} texts waiting at most); retry shortly",
                state.args.max_queue
            ),
        )
    })?;
    let mut window_preds = Vec::with_capacity(total);
    for rx in answers {
        match rx.await {
            Ok(Ok(p)) => window_preds.push(p),
            Ok(Err(e)) => return Err(ApiError::new(ErrorType::Backend, e)),
            Err(_) => {
                return Err(ApiError::new(
                    ErrorType::Unhealthy,
                    "the model stopped before answering (shutting down?)",
                ));
            }
        }
    }
    let mut window_preds = window_preds.into_iter();
    Ok(counts
        .into_iter()
        .map(|n| {
            loaded
                .classifier
                .aggregate(window_preds.by_ref().take(n).collect())
        })
        .collect())
}

/// Liveness and readiness: 200 once the model answered a warm-up prediction.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "Ready", body = Health),
    (status = 503, description = "Loading, or no usable model", body = Health),
))]
async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
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

/// The model and its training: labels, limits, base model, metrics.
#[utoipa::path(get, path = "/info", responses((status = 200, description = "Model information", body = Info)))]
async fn info(State(state): State<Arc<AppState>>) -> Json<Info> {
    match state.loaded() {
        Ok(l) => Json(l.info.clone()),
        Err(_) => Json(Info {
            version: env!("CARGO_PKG_VERSION").into(),
            model_path: state.args.model_path.display().to_string(),
            ready: false,
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
async fn training(State(state): State<Arc<AppState>>) -> Json<TrainingLog> {
    let results = state.args.results_dir.clone();
    let log = tokio::task::spawn_blocking(move || crate::model::training_log(&results))
        .await
        .unwrap_or_default();
    Json(log)
}

/// Prometheus metrics: requests by route and status, latencies of queue, tokenization and
/// inference, batch sizes, queue depth.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the spec serializes"),
    )
}

async fn docs() -> Html<String> {
    Html(crate::docs::render(&ApiDoc::openapi()))
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorType::NotFound,
        "no such route: see /docs (POST /predict, GET /health, /info, /metrics, /openapi.json)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorType::MethodNotAllowed,
        "method not allowed on this route: see /docs",
    )
}

/// One log line and the metrics of every request.
async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // The route's own pattern, so that every route gets its label without a list to keep in
    // step with the router; unknown paths share one label (a label per path would let any
    // client grow the metrics without bound).
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |m| m.as_str().to_string());
    let route = route.as_str();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let latency = started.elapsed();
    state
        .metrics
        .requests
        .with_label_values(&[route, method.as_str(), &status.to_string()])
        .inc();
    state
        .metrics
        .request_duration
        .with_label_values(&[route])
        .observe(latency.as_secs_f64());
    tracing::info!(
        method = %method,
        path,
        status,
        latency_ms = latency.as_secs_f64() * 1e3,
        "request"
    );
    response
}

/// The application's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let panic_to_json = |_| {
        ApiError::new(
            ErrorType::Backend,
            "internal error while handling the request",
        )
        .into_response()
    };
    Router::new()
        .route("/predict", post(predict))
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/training", get(training))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.args.max_body_bytes,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_to_json,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    args: Args,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    args.validate()?;
    let state = Arc::new(AppState::new(args.clone()));
    let loader = {
        let state = state.clone();
        tokio::spawn(load_until_ready(args, state.metrics.clone(), move |m| {
            state.set_model(m)
        }))
    };
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    loader.abort();
    // Dropping the model closes its queue and joins its thread once queued work is done.
    state.set_model(ModelState::Loading);
    tracing::info!("shut down");
    Ok(())
}
