//! The HTTP layer (axum): routes, auth, per-request logs and metrics, OpenAPI, graceful
//! shutdown. It only translates: requests into calls on the [`crate::infer`] facade, typed
//! errors into status codes ([`error`]).

mod docs;
pub mod error;
mod predict;
mod reload;
mod routes;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use api_types::ErrorType;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use routes::ApiDoc;

use crate::config::Args;
use crate::metrics::Metrics;
use crate::model::{Loaded, ModelState, load_until_ready};
use crate::monitor::Monitor;
use error::ApiError;

/// Shared by every request.
pub struct AppState {
    pub args: Args,
    pub metrics: Metrics,
    /// The prediction log and the live window.
    pub monitor: Monitor,
    model: RwLock<ModelState>,
    /// Set on the shutdown signal: /health/ready answers 503 from then on.
    draining: AtomicBool,
    /// One reload at a time; holds the stamp of the model folder last loaded.
    reload_lock: tokio::sync::Mutex<Option<reload::Stamp>>,
}

impl AppState {
    /// The state of a new server; starts the prediction log's writer, so it must run inside
    /// the runtime.
    pub fn new(args: Args) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let monitor = Monitor::start(&args.monitor, &metrics)?;
        Ok(Self {
            args,
            metrics,
            monitor,
            model: RwLock::new(ModelState::Loading),
            draining: AtomicBool::new(false),
            reload_lock: tokio::sync::Mutex::new(None),
        })
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
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
        .route("/predict", post(routes::predict))
        .route("/feedback", post(routes::feedback))
        .route("/monitoring", get(routes::monitoring))
        .route("/admin/reload", post(routes::admin_reload))
        .route("/health", get(routes::health))
        .route("/health/live", get(routes::live))
        .route("/health/ready", get(routes::ready))
        .route("/info", get(routes::info))
        .route("/training", get(routes::training))
        .route("/models", get(routes::models))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi_json))
        .route("/docs", get(routes::docs))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.args.max_body_bytes,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_to_json,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves; then drains: unready for the grace
/// period while still serving, then no new connections, in-flight requests and queued texts
/// finished.
pub async fn serve(
    args: Args,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    args.validate()?;
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let state = Arc::new(AppState::new(args.clone())?);
    let loader = {
        let state = state.clone();
        tokio::spawn(async move {
            let publish = {
                let state = state.clone();
                move |m| state.set_model(m)
            };
            load_until_ready(args, state.metrics.clone(), publish).await;
            reload::watch(state).await;
        })
    };
    let hangups = tokio::spawn(reload::on_hangup(state.clone()));
    tracing::info!(address = %listener.local_addr()?, "listening");
    let drain = {
        let state = state.clone();
        async move {
            shutdown.await;
            state.draining.store(true, Ordering::Relaxed);
            tracing::info!(
                grace_seconds = grace.as_secs(),
                "draining: /health/ready answers 503; serving until the grace period ends"
            );
            tokio::time::sleep(grace).await;
        }
    };
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(drain)
        .await?;
    loader.abort();
    hangups.abort();
    // Not the grace period (0 in tests): rows already answered are written unless the
    // database is gone.
    state.monitor.flush(Duration::from_secs(10)).await;
    // Dropping the model closes its queue and joins its thread once queued work is done.
    state.set_model(ModelState::Loading);
    tracing::info!("shut down");
    Ok(())
}
