//! `POST /predict`'s two request forms (ours and TEI's) in, predictions out: parsing,
//! validation, and the answer in the form that was asked.

use api_types::{
    ErrorType, Inputs, InputsResponse, LabelScore, LongTextMode, PredictAnswer, PredictRequest,
    PredictResponse,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use classifier::{LongText, Prediction};

use super::error::ApiError;
use crate::infer::Reading;

/// A valid request: its texts, how to read them, and how to answer.
pub struct Predict {
    pub texts: Vec<String>,
    pub read: Reading,
    raw_scores: bool,
    form: Form,
}

/// Which shape the answer takes: ours for `text`, TEI's for `inputs`.
enum Form {
    Text,
    One,
    Many,
}

impl Predict {
    /// Reads and checks a request body (at most `max_inputs` texts).
    pub fn parse(
        body: Result<Bytes, BytesRejection>,
        max_body_bytes: usize,
        max_inputs: usize,
    ) -> Result<Self, ApiError> {
        let body = body.map_err(|r| body_error(r, max_body_bytes))?;
        let predict = match parse_request(&body)? {
            PredictRequest::Text(r) => Self {
                texts: vec![r.text],
                read: reading(true, r.long_text),
                raw_scores: false,
                form: Form::Text,
            },
            PredictRequest::Inputs(r) => {
                let (texts, form) = match r.inputs {
                    Inputs::One(t) => (vec![t.0], Form::One),
                    Inputs::Many(ts) => (ts.0.into_iter().map(|t| t.0).collect(), Form::Many),
                };
                let read = reading(r.truncate, r.long_text);
                let raw_scores = r.raw_scores;
                Self {
                    texts,
                    read,
                    raw_scores,
                    form,
                }
            }
        };
        validate(&predict.texts, max_inputs)?;
        Ok(predict)
    }

    /// The answer to this request from its texts' predictions (and their log ids, if any).
    pub fn answer(&self, preds: &[Prediction], labels: &[String], ids: &[String]) -> PredictAnswer {
        let sorted = |p: &Prediction| {
            let mut s = scores(p, labels, self.raw_scores);
            s.sort_by(|a, b| b.score.total_cmp(&a.score));
            s
        };
        match self.form {
            Form::Text => PredictAnswer::Text(PredictResponse {
                sentiment: labels[preds[0].class].clone(),
                confidence: preds[0].confidence(),
                scores: scores(&preds[0], labels, false),
                id: ids.first().cloned(),
            }),
            Form::One => PredictAnswer::Inputs(InputsResponse::One(sorted(&preds[0]))),
            Form::Many => {
                PredictAnswer::Inputs(InputsResponse::Many(preds.iter().map(sorted).collect()))
            }
        }
    }
}

/// Every label's probability (or logit, `raw`), in the model's label order.
fn scores(p: &Prediction, labels: &[String], raw: bool) -> Vec<LabelScore> {
    let values = if raw { &p.logits } else { &p.probabilities };
    labels
        .iter()
        .zip(values)
        .map(|(l, s)| LabelScore {
            label: l.clone(),
            score: *s,
        })
        .collect()
}

fn reading(truncate: bool, mode: Option<LongTextMode>) -> Reading {
    let mode = mode.map(|m| match m {
        LongTextMode::Truncate => LongText::Truncate,
        LongTextMode::Windows => LongText::Windows,
    });
    Reading { truncate, mode }
}

fn body_error(rejection: BytesRejection, max_body_bytes: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorType::PayloadTooLarge,
            format!("the body is larger than {max_body_bytes} bytes: send fewer or shorter texts"),
        )
    } else {
        ApiError::new(
            ErrorType::InvalidJson,
            format!("cannot read the body: {rejection}"),
        )
    }
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
