//! The web UI: server-rendered pages on port 8501 that talk to the api over HTTP only (this
//! crate does not link the model).
//!
//! - [`client`]: calls to the api and readable failures.
//! - [`pages`]: what each page shows (askama templates under `templates/`, escaped).
//! - [`batch`]: CSV uploads classified through the api.
//! - [`charts`]: SVG charts drawn on the server.
//! - [`feedback`]: the user's corrections (Right / Wrong, a corrected CSV) to the api.
//! - [`monitoring`]: the Monitoring page (drift, label shares, feedback accuracy over time).
//! - [`session`]: per-browser history and downloads, in memory.
//!
//! Everything works without JavaScript: plain links and form posts.

#![forbid(unsafe_code)]

pub mod batch;
pub mod charts;
pub mod client;
pub mod feedback;
pub mod monitoring;
pub mod pages;
pub mod session;

use std::future::Future;
use std::sync::Arc;

use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Form, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;

use crate::client::{ApiClient, ApiFailure, ApiStatus};
use crate::pages::{
    AnalyzePage, Banner, BatchPage, BatchView, ColumnPick, EXAMPLES, ModelPage, VersionRow,
};
use crate::session::{COOKIE, Store, new_id, valid_id};

/// Serve the sentiment web UI.
#[derive(Parser, Debug, Clone)]
#[command(version)]
pub struct Args {
    /// Port to listen on.
    #[arg(long, env = "UI_PORT", default_value_t = 8501)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, env = "UI_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Base URL of the api.
    #[arg(long, env = "API_URL", default_value = "http://api:8000")]
    pub api_url: String,

    /// The api's key, when it requires one.
    #[arg(long, env = "API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Largest CSV upload, in megabytes.
    #[arg(long, env = "MAX_UPLOAD_MB", default_value_t = 10)]
    pub max_upload_mb: usize,
}

pub struct AppState {
    pub args: Args,
    pub api: ApiClient,
    pub store: Store,
}

impl AppState {
    pub fn new(args: Args) -> Self {
        Self {
            api: ApiClient::new(&args.api_url, args.api_key.clone()),
            store: Store::default(),
            args,
        }
    }
}

/// A rendered page with its status and, for a new visitor, the session cookie.
pub struct PageResponse {
    pub(crate) status: StatusCode,
    pub(crate) html: Result<String, askama::Error>,
    pub(crate) new_session: Option<String>,
}

impl IntoResponse for PageResponse {
    fn into_response(self) -> Response {
        let mut response = match self.html {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!("template error: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be rendered",
                )
                    .into_response()
            }
        };
        if let Some(id) = self.new_session {
            set_session_cookie(&mut response, &id);
        }
        response
    }
}

fn set_session_cookie(response: &mut Response, id: &str) {
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The visitor's session id, and whether it is new (then it must be set as a cookie).
pub(crate) fn session(headers: &HeaderMap) -> (String, bool) {
    let existing = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().strip_prefix(&format!("{COOKIE}=")))
        .find(|id| valid_id(id));
    match existing {
        Some(id) => (id.to_string(), false),
        None => (new_id(), true),
    }
}

pub(crate) fn status_for(failure: &ApiFailure) -> StatusCode {
    match failure {
        ApiFailure::Unreachable { .. } => StatusCode::BAD_GATEWAY,
        ApiFailure::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        ApiFailure::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        ApiFailure::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

pub(crate) fn analyze_page(state: &AppState, status: &ApiStatus, session: &str) -> AnalyzePage {
    let history = state.store.history(session);
    AnalyzePage {
        page: "analyze",
        banner: Banner::from_status(status),
        api_url: state.args.api_url.clone(),
        error: None,
        text: String::new(),
        latest: history.first().cloned(),
        history,
        examples: EXAMPLES.to_vec(),
    }
}

async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> PageResponse {
    let (session, new) = session(&headers);
    let status = state.api.status().await;
    PageResponse {
        status: StatusCode::OK,
        html: analyze_page(&state, &status, &session).render(),
        new_session: new.then_some(session),
    }
}

#[derive(Deserialize)]
struct AnalyzeForm {
    #[serde(default)]
    text: String,
}

/// Classifies the text, remembers it, and redirects to the result (post/redirect/get, so a
/// reload does not post again). Failures re-render the form with the text kept.
async fn analyze(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<AnalyzeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (session, new) = session(&headers);
    let text = form.map(|f| f.0.text).unwrap_or_default();
    let failure = if text.trim().is_empty() {
        Some((
            StatusCode::UNPROCESSABLE_ENTITY,
            "Please enter some text to analyze.".to_string(),
        ))
    } else {
        match state.api.predict(&text).await {
            Ok(r) => {
                state.store.record(&session, pages::analysis(&text, r));
                None
            }
            Err(e) => Some((status_for(&e), e.to_string())),
        }
    };
    match failure {
        None => {
            let mut r = Redirect::to("/#result").into_response();
            if new {
                set_session_cookie(&mut r, &session);
            }
            r
        }
        Some((code, message)) => {
            let status = state.api.status().await;
            let mut page = analyze_page(&state, &status, &session);
            page.error = Some(message);
            page.text = text;
            page.latest = None;
            PageResponse {
                status: code,
                html: page.render(),
                new_session: new.then_some(session),
            }
            .into_response()
        }
    }
}

pub(crate) fn batch_page(state: &AppState, status: &ApiStatus) -> BatchPage {
    BatchPage {
        page: "batch",
        banner: Banner::from_status(status),
        api_url: state.args.api_url.clone(),
        error: None,
        pick: None,
        result: None,
        max_upload_mb: state.args.max_upload_mb,
        max_rows: batch::MAX_ROWS,
        feedback: None,
    }
}

async fn batch_form(State(state): State<Arc<AppState>>) -> PageResponse {
    let status = state.api.status().await;
    PageResponse {
        status: StatusCode::OK,
        html: batch_page(&state, &status).render(),
        new_session: None,
    }
}

/// Runs an upload against `column`: the result page, or the column picker when the file
/// lacks it.
async fn run_batch(
    state: &AppState,
    file_name: String,
    bytes: Vec<u8>,
    column: String,
) -> (StatusCode, BatchPage) {
    let status = state.api.status().await;
    let mut page = batch_page(state, &status);
    let table = match batch::parse(&bytes) {
        Ok(t) => t,
        Err(e) => {
            page.error = Some(format!("{file_name}: {e}"));
            return (StatusCode::UNPROCESSABLE_ENTITY, page);
        }
    };
    let Some(col) = table.headers.iter().position(|h| *h == column) else {
        page.error = Some(format!(
            "{file_name} has no `{column}` column (columns: {}).",
            table.headers.join(", ")
        ));
        page.pick = Some(ColumnPick {
            upload: state.store.keep_upload(file_name.clone(), bytes),
            file_name,
            wanted: column,
            columns: table.headers,
        });
        return (StatusCode::UNPROCESSABLE_ENTITY, page);
    };
    let chunk = state
        .api
        .info()
        .await
        .map(|i| i.limits.max_inputs)
        .unwrap_or(api_types::DEFAULT_MAX_INPUTS);
    match batch::classify(&state.api, &table, col, chunk).await {
        Ok(done) => {
            let stem = file_name.trim_end_matches(".csv").trim_end_matches(".CSV");
            let out_name = format!("{stem}-predictions.csv");
            let id = state.store.keep_result(out_name.clone(), done.csv.clone());
            page.result = Some(BatchView::new(file_name, &done, id));
            (StatusCode::OK, page)
        }
        Err(e) => {
            page.error = Some(e.to_string());
            (status_for(&e), page)
        }
    }
}

async fn batch_upload(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> PageResponse {
    let (code, page) = match read_upload(multipart, state.args.max_upload_mb).await {
        Ok(upload) => run_batch(&state, upload.file_name, upload.bytes, upload.column).await,
        Err((code, message)) => {
            let status = state.api.status().await;
            let mut page = batch_page(&state, &status);
            page.error = Some(message);
            (code, page)
        }
    };
    PageResponse {
        status: code,
        html: page.render(),
        new_session: None,
    }
}

/// A CSV uploaded on the batch page, with the name of its text column.
pub(crate) struct Upload {
    pub(crate) file_name: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) column: String,
}

/// Reads the batch form's `file` and `column` fields; the error is the status and the
/// message the page shows.
pub(crate) async fn read_upload(
    multipart: Result<Multipart, MultipartRejection>,
    limit_mb: usize,
) -> Result<Upload, (StatusCode, String)> {
    let unreadable = |status: StatusCode, e: &dyn std::fmt::Display| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            (StatusCode::PAYLOAD_TOO_LARGE, too_large(limit_mb))
        } else {
            let message = format!("The upload could not be read: {e}");
            (StatusCode::BAD_REQUEST, message)
        }
    };
    let mut multipart = multipart.map_err(|e| unreadable(e.status(), &e))?;
    let (mut file, mut column) = (None, "text".to_string());
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| unreadable(e.status(), &e))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().unwrap_or("upload.csv").to_string();
        let data = field
            .bytes()
            .await
            .map_err(|e| unreadable(e.status(), &e))?;
        match name.as_str() {
            "file" => file = Some((file_name, data.to_vec())),
            "column" => {
                let c = String::from_utf8_lossy(&data).trim().to_string();
                if !c.is_empty() {
                    column = c;
                }
            }
            _ => {}
        }
    }
    if file
        .as_ref()
        .is_some_and(|(_, d)| d.len() > limit_mb * 1024 * 1024)
    {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, too_large(limit_mb)));
    }
    let (file_name, bytes) = file
        .filter(|(n, d)| !(d.is_empty() && n.is_empty()))
        .ok_or((
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose a CSV file to upload.".to_string(),
        ))?;
    Ok(Upload {
        file_name,
        bytes,
        column,
    })
}

fn too_large(limit_mb: usize) -> String {
    format!(
        "The file is larger than {limit_mb} MB. Split it, or classify it with the batch command: \
         docker compose exec api batch_predict INPUT.csv OUTPUT.csv"
    )
}

#[derive(Deserialize)]
struct ColumnForm {
    upload: String,
    column: String,
}

async fn batch_column(
    State(state): State<Arc<AppState>>,
    Form(f): Form<ColumnForm>,
) -> PageResponse {
    let Some(upload) = state.store.take_upload(&f.upload) else {
        let status = state.api.status().await;
        let mut page = batch_page(&state, &status);
        page.error = Some("That upload has expired: upload the file again.".into());
        return PageResponse {
            status: StatusCode::GONE,
            html: page.render(),
            new_session: None,
        };
    };
    let (code, page) = run_batch(&state, upload.file_name, upload.bytes, f.column).await;
    PageResponse {
        status: code,
        html: page.render(),
        new_session: None,
    }
}

async fn batch_download(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.store.result(&id) {
        Some((name, csv)) => {
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{safe}\""),
                    ),
                ],
                csv,
            )
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Html("This result has expired: classify the file again."),
        )
            .into_response(),
    }
}

async fn model(State(state): State<Arc<AppState>>) -> PageResponse {
    let status = state.api.status().await;
    let (info, log, models) =
        tokio::join!(state.api.info(), state.api.training(), state.api.models());
    let error = match (&info, &status) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(i), _) if !i.ready => {
            Some("The model is not loaded yet; its details appear once it is.".into())
        }
        _ => None,
    };
    let mut page = ModelPage {
        page: "model",
        banner: Banner::from_status(&status),
        api_url: state.args.api_url.clone(),
        error,
        info: None,
        parameters: "–".into(),
        metrics: Vec::new(),
        metrics_note: String::new(),
        confusion: None,
        per_source: Vec::new(),
        loss_chart: None,
        eval_chart: None,
        reliability_chart: None,
        calibration_note: String::new(),
        // An api without GET /models (an older one) shows no versions.
        versions: models.map(|m| VersionRow::rows(&m)).unwrap_or_default(),
    };
    page.build(info.ok().filter(|i| i.ready), log.ok());
    PageResponse {
        status: StatusCode::OK,
        html: page.render(),
        new_session: None,
    }
}

/// The ui's own liveness (for the container healthcheck), with the api's state for humans.
async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let api = match state.api.status().await {
        ApiStatus::Ready => "ready".to_string(),
        ApiStatus::Starting(d) => format!("starting: {d}"),
        ApiStatus::Unreachable(d) => format!("unreachable: {d}"),
    };
    Json(serde_json::json!({"status": "ok", "api": api}))
}

async fn not_found() -> (StatusCode, Html<&'static str>) {
    (
        StatusCode::NOT_FOUND,
        Html(
            "<!doctype html><title>Not found</title><p>No such page. <a href=\"/\">Back to Analyze</a></p>",
        ),
    )
}

pub fn router(state: Arc<AppState>) -> Router {
    // The multipart envelope around the file needs a little room beyond the file itself.
    let body_limit = state.args.max_upload_mb * 1024 * 1024 + 64 * 1024;
    Router::new()
        .route("/", get(index))
        .route("/analyze", post(analyze))
        .route("/batch", get(batch_form).post(batch_upload))
        .route("/batch/column", post(batch_column))
        .route("/batch/download/{id}", get(batch_download))
        .route("/model", get(model))
        .route("/monitoring", get(monitoring::page))
        .route("/feedback", post(feedback::analyze_feedback))
        .route("/batch/feedback", post(feedback::batch_feedback))
        .route("/health", get(health))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    args: Args,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(address = %listener.local_addr()?, api = %args.api_url, "ui listening");
    let state = Arc::new(AppState::new(args));
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Compose passes `${NAME:-}`, so these defaults are the ones in force.
#[cfg(test)]
#[test]
fn env_example_shows_the_defaults() {
    let env_example = include_str!("../../../.env.example");
    service::check_env_example(&<Args as clap::CommandFactory>::command(), env_example);
}
