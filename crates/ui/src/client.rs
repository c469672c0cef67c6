//! The ui's only way to the model: HTTP calls to the api, with failures turned into
//! messages a person can act on.

use std::time::Duration;

use api_types::{
    ErrorResponse, Health, Info, InputsResponse, LabelScore, PredictAnswer, PredictResponse,
    TrainingLog,
};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Why the api could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiFailure {
    /// No connection at all.
    #[error("cannot reach the model service at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// 503: loading, or no model yet.
    #[error("the model service is starting: {0}")]
    NotReady(String),
    /// 429.
    #[error("the model service is busy: {0} Try again in a moment.")]
    Busy(String),
    /// Any other error answer, with the api's own message.
    #[error("the model service refused the request: {0}")]
    Refused(String),
}

/// The api's readiness as the ui shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiStatus {
    Ready,
    Starting(String),
    Unreachable(String),
}

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    api_key: Option<String>,
}

/// Per call: the api answers quickly or is in trouble; batches of 64 long texts take longer.
const TIMEOUT: Duration = Duration::from_secs(120);

impl ApiClient {
    pub fn new(base: &str, api_key: Option<String>) -> Self {
        // reqwest is built without a default TLS provider (see the workspace manifest);
        // install ring's once per process. A second install is refused, harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(Duration::from_secs(3))
                .build()
                .expect("a TLS backend is compiled in"),
            api_key,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: reqwest::Error) -> ApiFailure {
        let reason = if e.is_timeout() {
            "it did not answer in time".to_string()
        } else if e.is_connect() {
            "connection refused or host unknown".to_string()
        } else {
            e.to_string()
        };
        ApiFailure::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    async fn decode<T: DeserializeOwned>(&self, r: reqwest::Response) -> Result<T, ApiFailure> {
        let status = r.status();
        if status.is_success() {
            return r.json::<T>().await.map_err(|e| {
                ApiFailure::Refused(format!("unexpected answer from {}: {e}", self.base))
            });
        }
        let text = r.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorResponse>(&text)
            .map(|e| e.error)
            .or_else(|_| serde_json::from_str::<Health>(&text).map(|h| h.error.unwrap_or(h.status)))
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(match status.as_u16() {
            503 => ApiFailure::NotReady(message),
            429 => ApiFailure::Busy(message),
            _ => ApiFailure::Refused(message),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.decode(r).await
    }

    pub async fn status(&self) -> ApiStatus {
        match self
            .http
            .get(format!("{}/health", self.base))
            .timeout(Duration::from_secs(3))
            .send()
            .await
        {
            Err(e) => ApiStatus::Unreachable(self.unreachable(e).to_string()),
            Ok(r) if r.status().is_success() => ApiStatus::Ready,
            Ok(r) => {
                let h = r.json::<Health>().await.ok();
                let detail = h
                    .and_then(|h| h.error.or(Some(h.status)))
                    .unwrap_or_else(|| "not ready".into());
                ApiStatus::Starting(detail)
            }
        }
    }

    pub async fn info(&self) -> Result<Info, ApiFailure> {
        self.get("/info").await
    }

    pub async fn training(&self) -> Result<TrainingLog, ApiFailure> {
        self.get("/training").await
    }

    pub async fn models(&self) -> Result<api_types::ModelVersions, ApiFailure> {
        self.get("/models").await
    }

    async fn post(&self, body: serde_json::Value) -> Result<PredictAnswer, ApiFailure> {
        let mut req = self.http.post(format!("{}/predict", self.base)).json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let r = req.send().await.map_err(|e| self.unreachable(e))?;
        self.decode(r).await
    }

    /// One text: label, confidence and every label's probability.
    pub async fn predict(&self, text: &str) -> Result<PredictResponse, ApiFailure> {
        match self.post(json!({ "text": text })).await? {
            PredictAnswer::Text(r) => Ok(r),
            PredictAnswer::Inputs(_) => Err(ApiFailure::Refused("unexpected answer shape".into())),
        }
    }

    /// Several texts (at most the api's max inputs): each one's label scores.
    pub async fn predict_many(&self, texts: &[String]) -> Result<Vec<Vec<LabelScore>>, ApiFailure> {
        match self.post(json!({ "inputs": texts })).await? {
            PredictAnswer::Inputs(InputsResponse::Many(v)) => Ok(v),
            PredictAnswer::Inputs(InputsResponse::One(v)) => Ok(vec![v]),
            PredictAnswer::Text(r) => Ok(vec![r.scores]),
        }
    }
}
