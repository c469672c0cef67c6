//! What one log row holds, and what the reads give back.

use std::hash::Hasher;

/// Where a prediction was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString)]
#[strum(serialize_all = "kebab-case")]
pub enum Source {
    /// A client of `POST /predict`.
    Api,
    /// The web UI's analyze page.
    Ui,
    /// A file classified in batch (the UI's batch page).
    Batch,
}

/// One served prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub model_version: String,
    pub source: Source,
    /// The text as sent, unless the api runs with `LOG_TEXT=false`.
    pub text: Option<String>,
    pub text_hash: String,
    pub text_chars: i64,
    pub tokens: i64,
    pub unknown_tokens: i64,
    pub over_max_length: bool,
    pub label: String,
    pub confidence: f64,
    /// Every label's probability, as a JSON object.
    pub probabilities: String,
    pub latency_ms: f64,
}

impl Row {
    /// A new time-ordered prediction id (UUIDv7).
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// Whether `id` has the form of a prediction id (a UUID).
    pub fn is_id(id: &str) -> bool {
        uuid::Uuid::try_parse(id).is_ok()
    }

    /// A stable hash of `text` (XXH3, 16 hex digits): finds repeats without keeping the text.
    pub fn hash_text(text: &str) -> String {
        let mut h = twox_hash::XxHash3_64::default();
        h.write(text.as_bytes());
        format!("{:016x}", h.finish())
    }
}

/// A logged prediction, as feedback sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub id: String,
    pub label: String,
    pub model_version: String,
}

/// What a correction did.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedbackOutcome {
    /// Recorded against this prediction.
    Recorded(Logged),
    /// No prediction has this id.
    UnknownId,
}

/// One logged prediction with its correction, for the monitoring series.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorRow {
    pub created_at: i64,
    pub label: String,
    pub confidence: f64,
    pub tokens: i64,
    pub unknown_tokens: i64,
    pub over_max_length: bool,
    pub feedback: Option<String>,
}

/// A corrected prediction as a labelled example.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    pub id: String,
    pub text: String,
    pub label: String,
}

/// Every correction with a logged text, and how many had none (`LOG_TEXT=false`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Corrections {
    pub examples: Vec<Correction>,
    pub without_text: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_sort_by_time() {
        let a = Row::new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Row::new_id();
        assert!(a < b, "{a} {b}");
        assert!(Row::is_id(&a) && !Row::is_id("1; DROP TABLE predictions"));
        assert_eq!(Row::hash_text("x"), Row::hash_text("x"));
        assert_ne!(Row::hash_text("x"), Row::hash_text("y"));
        assert_eq!("ui".parse::<Source>().unwrap(), Source::Ui);
        assert_eq!(Source::Batch.to_string(), "batch");
    }
}
