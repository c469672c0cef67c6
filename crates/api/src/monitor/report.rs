//! `GET /monitoring`'s figures: the live window, and the logged predictions of a time range
//! in buckets, each with its drift from the model's reference and its feedback accuracy.

use api_types::{
    DriftScores, FeedbackStats, Monitoring, MonitoringBucket, MonitoringRange, ProfileStats,
};
use monitoring::{Drift, Observation, PSI_ALERT, PSI_WARN, Profile, Reference, WindowSummary};
use prediction_log::{LogError, MonitorRow, Store};
use serde::Deserialize;

use crate::model::Loaded;

/// At most this many logged rows are read for one report (the newest).
pub const ROW_LIMIT: u64 = 200_000;

/// `GET /monitoring?hours=24&buckets=24`.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::IntoParams)]
#[serde(default)]
pub struct RangeQuery {
    /// How far back, in hours (at most 24 x 90).
    pub hours: u32,
    /// Time buckets in the range (1 to 500).
    pub buckets: u32,
}

impl Default for RangeQuery {
    fn default() -> Self {
        Self {
            hours: 24,
            buckets: 24,
        }
    }
}

/// The figures of `profile`, with its drift from `reference`.
pub fn stats(profile: &Profile, reference: Option<&Reference>) -> ProfileStats {
    ProfileStats {
        predictions: profile.predictions,
        label_shares: profile.label_shares(),
        mean_confidence: profile.mean_confidence(),
        over_max_length_share: profile.over_max_length_share(),
        unknown_token_rate: profile.unknown_token_rate(),
        drift: reference
            .and_then(|r| profile.drift_from(&r.profile))
            .map(scores),
    }
}

pub fn scores(d: Drift) -> DriftScores {
    DriftScores {
        label: d.label,
        confidence: d.confidence,
        length: d.length,
        max: d.max(),
    }
}

/// The report without the log's history.
pub fn live(labels: &[String], loaded: &Loaded, window: &WindowSummary) -> Monitoring {
    let reference = loaded.reference.as_ref();
    Monitoring {
        labels: labels.to_vec(),
        model_version: loaded.info.model_version.clone(),
        reference: reference.map(|r| r.source.clone()),
        psi_warn: PSI_WARN,
        psi_alert: PSI_ALERT,
        window: stats(&window.profile, reference),
        window_length_quantiles: window.length_quantiles.iter().map(|q| q.1).collect(),
        logging: false,
        log_error: None,
        range: None,
    }
}

/// The logged predictions of `query`'s range, bucketed.
pub async fn range(
    store: &Store,
    labels: &[String],
    reference: Option<&Reference>,
    query: RangeQuery,
) -> Result<MonitoringRange, LogError> {
    let hours = query.hours.clamp(1, 24 * 90);
    let buckets = query.buckets.clamp(1, 500);
    let now = prediction_log::now_ms();
    let span_ms = i64::from(hours) * 3_600_000;
    let since = now - span_ms;
    let rows = store.monitor_rows(since, ROW_LIMIT).await?;
    let width = (span_ms / i64::from(buckets)).max(1);
    Ok(bucketed(
        &rows,
        labels,
        reference,
        since,
        width,
        buckets as usize,
    ))
}

/// `rows` (oldest first) in `count` buckets of `width_ms` from `since`.
pub fn bucketed(
    rows: &[MonitorRow],
    labels: &[String],
    reference: Option<&Reference>,
    since: i64,
    width_ms: i64,
    count: usize,
) -> MonitoringRange {
    let mut profiles = vec![Profile::new(labels.len()); count];
    let mut feedback = vec![FeedbackStats::default(); count];
    let mut overall = Profile::new(labels.len());
    let mut all_feedback = FeedbackStats::default();
    for r in rows {
        let b = usize::try_from((r.created_at - since) / width_ms)
            .unwrap_or(0)
            .min(count - 1);
        if let Some(o) = observation(r, labels) {
            profiles[b].add(&o);
            overall.add(&o);
        }
        if let Some(f) = &r.feedback {
            for s in [&mut feedback[b], &mut all_feedback] {
                s.received += 1;
                s.correct += u64::from(*f == r.label);
            }
        }
    }
    let with_accuracy = |mut f: FeedbackStats| {
        f.accuracy = (f.received > 0).then(|| f.correct as f64 / f.received as f64);
        f
    };
    MonitoringRange {
        since_ms: since,
        bucket_seconds: u64::try_from(width_ms / 1000).unwrap_or(0),
        rows: rows.len() as u64,
        row_limit: ROW_LIMIT,
        overall: stats(&overall, reference),
        feedback: with_accuracy(all_feedback),
        buckets: profiles
            .iter()
            .zip(feedback)
            .enumerate()
            .map(|(i, (p, f))| MonitoringBucket {
                start_ms: since + width_ms * i as i64,
                stats: stats(p, reference),
                feedback: with_accuracy(f),
            })
            .collect(),
    }
}

/// A logged row as monitoring sees it; `None` for a label the model does not have (a row of
/// an earlier model with other labels).
fn observation(r: &MonitorRow, labels: &[String]) -> Option<Observation> {
    let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    Some(Observation {
        label: labels.iter().position(|l| *l == r.label)?,
        confidence: r.confidence as f32,
        tokens: count(r.tokens),
        unknown: count(r.unknown_tokens),
        over_max_length: r.over_max_length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: i64, label: &str, feedback: Option<&str>) -> MonitorRow {
        MonitorRow {
            created_at: t,
            label: label.into(),
            confidence: 0.9,
            tokens: 20,
            unknown_tokens: 0,
            over_max_length: false,
            feedback: feedback.map(str::to_string),
        }
    }

    #[test]
    fn rows_fall_in_their_buckets_with_their_feedback() {
        let labels = vec!["negative".to_string(), "positive".to_string()];
        let rows = [
            row(0, "negative", Some("negative")),
            row(5, "positive", Some("negative")),
            row(10, "positive", None),
            row(29, "other", Some("other")),
        ];
        let r = bucketed(&rows, &labels, None, 0, 10, 3);
        assert_eq!(r.rows, 4);
        assert_eq!(
            r.overall.predictions, 3,
            "a row with a label the model lacks is skipped"
        );
        assert_eq!(r.buckets[0].stats.label_shares, vec![0.5, 0.5]);
        assert_eq!(r.buckets[0].feedback.accuracy, Some(0.5));
        assert_eq!(r.buckets[1].stats.predictions, 1);
        assert_eq!(r.buckets[2].feedback.received, 1);
        assert_eq!(r.feedback.received, 3);
        assert_eq!(r.feedback.correct, 2);
        assert!(r.overall.drift.is_none(), "no reference, no drift");
    }
}
