//! What can go wrong with feedback and the monitoring report, before the HTTP layer picks a
//! status code for it (`From<MonitorError> for ApiError`).

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(
        "the api runs without a prediction log, so there is nothing to correct: start it with PREDICTION_LOG (a SQLite file or a PostgreSQL URL)"
    )]
    LogOff,
    #[error(
        "the prediction log is not reachable yet ({0}): predictions are still served; retry shortly"
    )]
    Unreachable(String),
    #[error(
        "no logged prediction has the id `{0}`: send the `id` of a /predict answer (predictions older than the log's retention are gone)"
    )]
    UnknownId(String),
    #[error("`{0}` is not a prediction id: ids look like 01939d2e-7a4b-7c3e-9f1a-2b3c4d5e6f70")]
    BadId(String),
    #[error("`{label}` is not one of the model's labels: send one of {labels:?}")]
    UnknownLabel { label: String, labels: Vec<String> },
    #[error("`{0}` is not a prediction source: send api, ui or batch")]
    BadSource(String),
    #[error(transparent)]
    Log(#[from] prediction_log::LogError),
}
