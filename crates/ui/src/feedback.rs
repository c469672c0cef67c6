//! Corrections from users: the Right / Wrong buttons under a result, and a corrected CSV
//! uploaded on the batch page; both go to the api's `POST /feedback`.

use std::sync::Arc;

use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Form, Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::batch;
use crate::{AppState, PageResponse, analyze_page, batch_page, read_upload, session, status_for};

#[derive(Deserialize)]
pub struct FeedbackForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    label: String,
}

/// Sends the user's verdict on one of their results, then shows the result again.
pub async fn analyze_feedback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<FeedbackForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (session, new) = session(&headers);
    let Ok(Form(f)) = form else {
        return analyze_error(
            &state,
            session,
            new,
            StatusCode::BAD_REQUEST,
            "The form was incomplete: use the buttons under a result.".into(),
        )
        .await;
    };
    match state.api.feedback(&f.id, &f.label).await {
        Ok(_) => {
            state.store.mark_feedback(&session, &f.id, &f.label);
            Redirect::to("/#result").into_response()
        }
        Err(e) => {
            let message = format!("Your feedback was not recorded: {e}");
            analyze_error(&state, session, new, status_for(&e), message).await
        }
    }
}

async fn analyze_error(
    state: &AppState,
    session: String,
    new: bool,
    code: StatusCode,
    message: String,
) -> Response {
    let status = state.api.status().await;
    let mut page = analyze_page(state, &status, &session);
    page.error = Some(message);
    PageResponse {
        status: code,
        html: page.render(),
        new_session: new.then_some(session),
    }
    .into_response()
}

/// Sends the corrections of an uploaded CSV (`prediction_id` and `label` columns).
pub async fn batch_feedback(
    State(state): State<Arc<AppState>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> PageResponse {
    let status = state.api.status().await;
    let mut page = batch_page(&state, &status);
    let outcome = match read_upload(multipart, state.args.max_upload_mb).await {
        Err((code, message)) => Err((code, message)),
        Ok(upload) => {
            let rows = batch::parse(&upload.bytes).and_then(|t| batch::corrections(&t));
            match rows {
                Err(e) => Err((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("{}: {e}", upload.file_name),
                )),
                Ok(rows) => batch::send_corrections(&state.api, upload.file_name, &rows)
                    .await
                    .map_err(|e| (status_for(&e), e.to_string())),
            }
        }
    };
    let code = match outcome {
        Ok(summary) => {
            page.feedback = Some(summary);
            StatusCode::OK
        }
        Err((code, message)) => {
            page.error = Some(message);
            code
        }
    };
    PageResponse {
        status: code,
        html: page.render(),
        new_session: None,
    }
}
