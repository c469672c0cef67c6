//! The api's errors: each a status code and an `{error, error_type}` body. The layers below
//! have their own typed errors; `From` impls here are the one place that picks their codes.

use api_types::{ErrorResponse, ErrorType};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::infer::InferError;
use crate::monitor::MonitorError;

/// A request that cannot be answered, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Validation, message)
    }

    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorType::InvalidJson => StatusCode::BAD_REQUEST,
            ErrorType::Validation | ErrorType::Tokenizer => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorType::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Backend => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotEnabled => StatusCode::NOT_IMPLEMENTED,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
            ErrorType::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorType::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            Json(ErrorResponse {
                error: self.message,
                error_type: self.kind,
            }),
        )
            .into_response();
        if self.kind == ErrorType::Overloaded {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        if self.kind == ErrorType::Unauthorized {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        let kind = match &e {
            InferError::Tokenizer(_) => ErrorType::Tokenizer,
            InferError::TooLong { .. } | InferError::TooManyWindows { .. } => ErrorType::Validation,
            InferError::Overloaded { .. } => ErrorType::Overloaded,
            InferError::Backend(_) | InferError::Crashed(_) => ErrorType::Backend,
            InferError::Stopped => ErrorType::Unhealthy,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let kind = match r.status() {
            StatusCode::BAD_REQUEST => ErrorType::InvalidJson,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorType::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorType::UnsupportedMediaType,
            _ => ErrorType::Validation,
        };
        Self::new(kind, r.body_text())
    }
}

impl From<MonitorError> for ApiError {
    fn from(e: MonitorError) -> Self {
        let kind = match &e {
            MonitorError::LogOff => ErrorType::NotEnabled,
            MonitorError::Unreachable(_) | MonitorError::Log(_) => ErrorType::Unhealthy,
            MonitorError::UnknownId(_) => ErrorType::NotFound,
            MonitorError::BadId(_)
            | MonitorError::UnknownLabel { .. }
            | MonitorError::BadSource(_) => ErrorType::Validation,
        };
        Self::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::infer::BackendError;

    fn status(e: InferError) -> (StatusCode, ErrorType) {
        let api = ApiError::from(e);
        (api.status(), api.kind)
    }

    #[test]
    fn each_inference_failure_gets_its_own_status() {
        let tokenizer = classifier::Error::Tokenizer("bad input".into());
        assert_eq!(
            status(InferError::Tokenizer(tokenizer)),
            (StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Tokenizer)
        );
        let too_long = InferError::TooLong {
            index: 2,
            tokens: 300,
            max_length: 256,
        };
        assert_eq!(
            status(too_long),
            (StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Validation)
        );
        assert_eq!(
            status(InferError::Overloaded { capacity: 4 }),
            (StatusCode::TOO_MANY_REQUESTS, ErrorType::Overloaded)
        );
        let forward = Arc::new(classifier::Error::Input("shape".into()));
        assert_eq!(
            status(InferError::Backend(BackendError::Forward(forward))),
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Backend)
        );
        assert_eq!(
            status(InferError::Stopped),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorType::Unhealthy)
        );
    }

    #[test]
    fn the_message_says_what_to_do() {
        let e = ApiError::from(InferError::TooManyWindows {
            windows: 90,
            capacity: 64,
        });
        assert!(
            e.message.contains("90 windows") && e.message.contains("(64)"),
            "{e}"
        );
        assert!(e.message.contains("send fewer or shorter texts"), "{e}");
    }
}
