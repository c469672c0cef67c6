//! What can go wrong between a request's texts and their predictions, one layer at a time:
//! [`BackendError`] from the model thread, widened into [`InferError`] by the facade, which
//! the HTTP layer turns into a status code (`From<InferError> for ApiError`).

use std::sync::Arc;

/// The model thread failed on a batch: every text of that batch gets a clone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("the model failed on this batch: {0}")]
    Forward(#[from] Arc<classifier::Error>),
    #[error("the model panicked on this batch: {0}")]
    Panicked(String),
    #[error("the model returned {got} results for {sent} texts")]
    Count { sent: usize, got: usize },
}

/// Why texts could not be classified.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The tokenizer rejected a text.
    #[error("tokenization failed: {0}")]
    Tokenizer(#[from] classifier::Error),
    /// A text is longer than the model reads and the request forbids truncation.
    #[error(
        "input {index} is {tokens} tokens long; the model takes at most {max_length}: shorten it, send \"truncate\": true, or \"long_text\": \"windows\""
    )]
    TooLong {
        index: usize,
        tokens: usize,
        max_length: usize,
    },
    /// One request needs more model inputs than the whole queue holds.
    #[error(
        "these texts need {windows} windows of the model's max length, more than the queue holds ({capacity}): send fewer or shorter texts, or \"long_text\": \"truncate\""
    )]
    TooManyWindows { windows: usize, capacity: usize },
    /// The queue is full now; a retry later can succeed.
    #[error("the model queue is full ({capacity} texts waiting at most); retry shortly")]
    Overloaded { capacity: usize },
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The model thread ended before answering: the model is being replaced or shut down.
    #[error("the model stopped before answering (shutting down?)")]
    Stopped,
    /// A blocking task (tokenization) crashed.
    #[error("tokenization crashed: {0}")]
    Crashed(String),
}
