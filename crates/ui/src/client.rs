//! The ui's only way to the model: HTTP calls to the api, with failures turned into
//! messages a person can act on.

use std::time::Duration;

use api_types::{
    ErrorResponse, FeedbackRequest, FeedbackResponse, Health, Info, InputsResponse, LabelScore,
    Monitoring, PredictAnswer, PredictResponse, TrainingLog,
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

    /// Sends `req` with the API key, if any.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiFailure> {
        let req = match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        };
        req.send().await.map_err(|e| self.unreachable(e))
    }

    /// POST /predict, recorded in the api's prediction log as coming from `source` (`ui` or
    /// `batch`); with the answer, the predictions' log ids (none without a log).
    async fn post(
        &self,
        body: serde_json::Value,
        source: &str,
    ) -> Result<(PredictAnswer, Vec<String>), ApiFailure> {
        let req = self
            .http
            .post(format!("{}/predict", self.base))
            .header("x-prediction-source", source)
            .json(&body);
        let r = self.send(req).await?;
        let ids: Vec<String> = r
            .headers()
            .get("x-prediction-ids")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        Ok((self.decode(r).await?, ids))
    }

    /// One text: label, confidence, every label's probability, and its log id.
    pub async fn predict(&self, text: &str) -> Result<PredictResponse, ApiFailure> {
        match self.post(json!({ "text": text }), "ui").await? {
            (PredictAnswer::Text(r), _) => Ok(r),
            (PredictAnswer::Inputs(_), _) => {
                Err(ApiFailure::Refused("unexpected answer shape".into()))
            }
        }
    }

    /// Several texts (at most the api's max inputs): each one's label scores, and their log
    /// ids (empty without a log).
    pub async fn predict_many(
        &self,
        texts: &[String],
    ) -> Result<(Vec<Vec<LabelScore>>, Vec<String>), ApiFailure> {
        let (answer, ids) = self.post(json!({ "inputs": texts }), "batch").await?;
        let scores = match answer {
            PredictAnswer::Inputs(InputsResponse::Many(v)) => v,
            PredictAnswer::Inputs(InputsResponse::One(v)) => vec![v],
            PredictAnswer::Text(r) => vec![r.scores],
        };
        Ok((scores, ids))
    }

    /// POST /feedback: `label` is the right answer for prediction `id`.
    pub async fn feedback(&self, id: &str, label: &str) -> Result<FeedbackResponse, ApiFailure> {
        let body = FeedbackRequest {
            id: id.to_string(),
            label: label.to_string(),
        };
        let req = self
            .http
            .post(format!("{}/feedback", self.base))
            .json(&body);
        let r = self.send(req).await?;
        self.decode(r).await
    }

    /// GET /monitoring over the last `hours` in `buckets`.
    pub async fn monitoring(&self, hours: u32, buckets: u32) -> Result<Monitoring, ApiFailure> {
        self.get(&format!("/monitoring?hours={hours}&buckets={buckets}"))
            .await
    }
}
