//! The Monitoring page: `GET /monitoring` of the api as figures and charts over time.

use std::sync::Arc;

use api_types::{DriftScores, Monitoring, MonitoringRange};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::charts::{Bounds, Series, line_chart_within};
use crate::pages::Banner;
use crate::{AppState, PageResponse};

/// The ranges offered: (link text, hours).
pub const RANGES: [(&str, u32); 4] = [
    ("1 hour", 1),
    ("24 hours", 24),
    ("7 days", 168),
    ("30 days", 720),
];
/// Buckets per range.
pub const BUCKETS: u32 = 24;

const COLORS: [&str; 6] = [
    "#cf222e", "#1a7f37", "#8c959f", "#0969da", "#9a6700", "#8250df",
];

/// One headline figure; `level` colours it (ok, warn, alert or empty).
pub struct Stat {
    pub name: String,
    pub value: String,
    pub detail: String,
    pub level: &'static str,
}

#[derive(Template)]
#[template(path = "monitoring.html")]
pub struct MonitoringPage {
    pub page: &'static str,
    pub banner: Option<Banner>,
    pub api_url: String,
    pub error: Option<String>,
    pub ranges: Vec<(&'static str, u32)>,
    pub selected_hours: u32,
    pub psi_warn: f64,
    pub psi_alert: f64,
    pub notes: Vec<String>,
    pub stats: Vec<Stat>,
    /// (title, SVG markup built by [`crate::charts`], which escapes every label).
    pub charts: Vec<(String, String)>,
    pub window: Vec<(String, String)>,
}

impl MonitoringPage {
    pub fn new(banner: Option<Banner>, api_url: String, hours: u32) -> Self {
        Self {
            page: "monitoring",
            banner,
            api_url,
            error: None,
            ranges: RANGES.to_vec(),
            selected_hours: hours,
            psi_warn: monitoring_defaults::WARN,
            psi_alert: monitoring_defaults::ALERT,
            notes: Vec::new(),
            stats: Vec::new(),
            charts: Vec::new(),
            window: Vec::new(),
        }
    }

    /// Fills the page from the api's report.
    pub fn show(&mut self, m: &Monitoring) {
        (self.psi_warn, self.psi_alert) = (m.psi_warn, m.psi_alert);
        self.notes = notes(m);
        self.window = window_rows(m);
        if let Some(range) = &m.range {
            self.stats = headline(m, range);
            self.charts = charts(m, range);
        }
    }
}

/// The customary PSI readings, shown before the api has answered.
mod monitoring_defaults {
    pub const WARN: f64 = 0.1;
    pub const ALERT: f64 = 0.25;
}

fn notes(m: &Monitoring) -> Vec<String> {
    let mut notes = Vec::new();
    if m.reference.is_none() {
        notes.push("This model has no drift reference (drift_reference.json, written by train since this version): no drift scores. Retrain to get them.".to_string());
    }
    if !m.logging {
        notes.push("The api keeps no prediction log, so there is no history and no feedback: start it with PREDICTION_LOG (docker compose does, into results/predictions.db).".to_string());
    }
    if let Some(e) = &m.log_error {
        notes.push(format!("The prediction log could not be read: {e}"));
    }
    if let Some(r) = m.range.as_ref().filter(|r| r.rows >= r.row_limit) {
        notes.push(format!(
            "Only the newest {} predictions of the range are shown.",
            r.row_limit
        ));
    }
    notes
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |x| format!("{:.1}%", x * 100.0))
}

fn level(d: Option<&DriftScores>, m: &Monitoring) -> &'static str {
    match d.map(|d| d.max) {
        Some(v) if v > m.psi_alert => "alert",
        Some(v) if v > m.psi_warn => "warn",
        Some(_) => "ok",
        None => "",
    }
}

fn headline(m: &Monitoring, r: &MonitoringRange) -> Vec<Stat> {
    let drift = r.overall.drift.as_ref();
    let shares: Vec<String> = m
        .labels
        .iter()
        .zip(&r.overall.label_shares)
        .map(|(l, s)| format!("{l} {:.0}%", s * 100.0))
        .collect();
    vec![
        Stat {
            name: "Predictions".into(),
            value: r.rows.to_string(),
            detail: shares.join(", "),
            level: "",
        },
        Stat {
            name: "Mean confidence".into(),
            value: pct(r.overall.mean_confidence),
            detail: String::new(),
            level: "",
        },
        Stat {
            name: "Drift (largest PSI)".into(),
            value: drift.map_or_else(|| "–".into(), |d| format!("{:.3}", d.max)),
            detail: drift.map_or_else(String::new, |d| {
                format!(
                    "label {:.3}, confidence {:.3}, length {:.3}",
                    d.label, d.confidence, d.length
                )
            }),
            level: level(drift, m),
        },
        Stat {
            name: "Accuracy on feedback".into(),
            value: pct(r.feedback.accuracy),
            detail: format!(
                "{} corrections received, {} confirmed right",
                r.feedback.received, r.feedback.correct
            ),
            level: "",
        },
    ]
}

/// Each bucket's middle, in hours before now (negative), with a value.
fn over_time(
    r: &MonitoringRange,
    value: impl Fn(&api_types::MonitoringBucket) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let now = r.since_ms as f64 + r.bucket_seconds as f64 * 1000.0 * r.buckets.len() as f64;
    let half = r.bucket_seconds as f64 * 500.0;
    r.buckets
        .iter()
        .filter_map(|b| value(b).map(|v| ((b.start_ms as f64 + half - now) / 3.6e6, v)))
        .collect()
}

fn series(name: &str, color: &'static str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_string(),
        color,
        points,
    }
}

fn charts(m: &Monitoring, r: &MonitoringRange) -> Vec<(String, String)> {
    let x = "hours before now";
    let labels: Vec<Series> = m
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let points = over_time(r, |b| {
                (b.stats.predictions > 0).then(|| b.stats.label_shares[i] * 100.0)
            });
            series(l, COLORS[i % COLORS.len()], points)
        })
        .collect();
    let confidence = [series(
        "mean confidence (%)",
        "#0969da",
        over_time(r, |b| b.stats.mean_confidence.map(|c| c * 100.0)),
    )];
    let drift = |name: &str, color, f: fn(&DriftScores) -> f64| {
        series(name, color, over_time(r, |b| b.stats.drift.as_ref().map(f)))
    };
    let drifts = [
        drift("label", "#cf222e", |d| d.label),
        drift("confidence", "#0969da", |d| d.confidence),
        drift("length", "#9a6700", |d| d.length),
        series(
            "alert threshold",
            "#8c959f",
            over_time(r, |b| b.stats.drift.as_ref().map(|_| m.psi_alert)),
        ),
    ];
    let accuracy = [series(
        "accuracy on feedback (%)",
        "#1a7f37",
        over_time(r, |b| b.feedback.accuracy.map(|a| a * 100.0)),
    )];
    let hours = (r.bucket_seconds * r.buckets.len() as u64) as f64 / 3600.0;
    let time = Some((-hours, 0.0));
    let percent = Bounds {
        x: time,
        y: Some((0.0, 100.0)),
    };
    let psi = Bounds {
        x: time,
        y: Some((0.0, m.psi_alert * 1.2)),
    };
    let chart = |title, series: &[Series], bounds| line_chart_within(title, x, series, bounds);
    [
        (
            "Predicted labels (% of predictions)",
            chart("Label shares", &labels, percent),
        ),
        (
            "Mean confidence",
            chart("Mean confidence", &confidence, percent),
        ),
        (
            "Drift from the training reference (PSI)",
            chart("Drift", &drifts, psi),
        ),
        (
            "Accuracy on the feedback received",
            chart("Feedback accuracy", &accuracy, percent),
        ),
    ]
    .into_iter()
    .filter_map(|(t, svg)| svg.map(|svg| (t.to_string(), svg)))
    .collect()
}

fn window_rows(m: &Monitoring) -> Vec<(String, String)> {
    let w = &m.window;
    if w.predictions == 0 {
        return Vec::new();
    }
    let mut rows = vec![("Predictions".to_string(), w.predictions.to_string())];
    for (l, s) in m.labels.iter().zip(&w.label_shares) {
        rows.push((format!("Share {l}"), pct(Some(*s))));
    }
    rows.push(("Mean confidence".into(), pct(w.mean_confidence)));
    let q = &m.window_length_quantiles;
    if q.len() == 3 {
        rows.push((
            "Word pieces p50 / p90 / p99".into(),
            format!("{} / {} / {}", q[0], q[1], q[2]),
        ));
    }
    rows.push((
        "Longer than the model's max length".into(),
        pct(w.over_max_length_share),
    ));
    rows.push(("Unknown-token rate".into(), pct(w.unknown_token_rate)));
    if let Some(d) = &w.drift {
        rows.push((
            "Drift PSI (label / confidence / length)".into(),
            format!("{:.3} / {:.3} / {:.3}", d.label, d.confidence, d.length),
        ));
    }
    rows
}

#[derive(Deserialize)]
pub struct RangeForm {
    hours: Option<u32>,
}

/// The Monitoring page over the chosen range (24 hours unless `?hours=` says otherwise).
pub async fn page(
    State(state): State<Arc<AppState>>,
    query: Result<Query<RangeForm>, axum::extract::rejection::QueryRejection>,
) -> PageResponse {
    let hours = query
        .ok()
        .and_then(|q| q.0.hours)
        .unwrap_or(24)
        .clamp(1, 24 * 90);
    let (status, report) = tokio::join!(state.api.status(), state.api.monitoring(hours, BUCKETS));
    let mut page = MonitoringPage::new(
        Banner::from_status(&status),
        state.args.api_url.clone(),
        hours,
    );
    match report {
        Ok(m) => page.show(&m),
        Err(e) => page.error = Some(e.to_string()),
    }
    PageResponse {
        status: StatusCode::OK,
        html: page.render(),
        new_session: None,
    }
}
