//! The database behind the log: one sqlx pool (SQLite or PostgreSQL) and the log's queries,
//! written in SQL both databases run.

use std::borrow::Cow;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, Row as _};

use crate::row::{Correction, Corrections, FeedbackOutcome, Logged, MonitorRow, Row};

/// The log's columns, in the order [`Store::insert`] binds them.
const COLUMNS: [&str; 14] = [
    "id",
    "created_at",
    "model_version",
    "source",
    "text",
    "text_hash",
    "text_chars",
    "tokens",
    "unknown_tokens",
    "over_max_length",
    "label",
    "confidence",
    "probabilities",
    "latency_ms",
];
/// Rows per INSERT statement. Few: binding a parameter makes SQLite scan the statement's
/// parameter names (`sqlite3_bind_parameter_name`, which sqlx-sqlite calls per parameter), so
/// a statement's binding grows with the square of its rows; at 200 rows that scan was the
/// log's largest cost under load. Full chunks also share one cached prepared statement.
const ROWS_PER_STATEMENT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "PREDICTION_LOG `{0}` is neither a SQLite file (a path, or sqlite:///app/results/predictions.db) nor a PostgreSQL URL (postgres://user:password@host:5432/database)"
    )]
    BadUrl(String),
    #[error("the prediction log {url} is unreachable or failed: {source}")]
    Database {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot set up the prediction log's tables in {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("no prediction log at {0}: give the file the api writes (PREDICTION_LOG)")]
    Missing(String),
}

/// The prediction log's database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// The URL without its password, for messages.
    shown: String,
}

/// The migrations, compiled in: the binary needs no migrations folder at run time.
#[derive(Debug)]
struct Embedded;

type Resolved = Result<Vec<Migration>, sqlx::error::BoxDynError>;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Resolved> + Send>> {
        Box::pin(async {
            Ok(vec![Migration::new(
                1,
                Cow::Borrowed("predictions"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("../migrations/0001_predictions.sql")),
                false,
            )])
        })
    }
}

/// `url` as sqlx takes it: a bare path or a `sqlite:` URL becomes a SQLite URL that creates
/// the file; a PostgreSQL URL stays as it is.
fn normalize(url: &str) -> Result<String, LogError> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url.to_string());
    }
    let path = match url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))
    {
        Some(p) => p,
        None if !url.contains("://") && !url.is_empty() => url,
        None => return Err(LogError::BadUrl(hide_password(url))),
    };
    let (file, query) = path.split_once('?').unwrap_or((path, ""));
    if file.is_empty() {
        return Err(LogError::BadUrl(hide_password(url)));
    }
    let mode = if query.contains("mode=") {
        String::new()
    } else {
        format!("{}mode=rwc", if query.is_empty() { "" } else { "&" })
    };
    Ok(format!("sqlite://{file}?{query}{mode}"))
}

/// The SQLite file a normalized URL names.
fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url.strip_prefix("sqlite://")?;
    Some(Path::new(rest.split_once('?').map_or(rest, |(f, _)| f)))
}

/// `url` with any password replaced by `***`: what messages and reports may show.
pub fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or("");
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// Checks `url`'s form without connecting: a malformed setting fails at start-up.
pub fn check_url(url: &str) -> Result<(), LogError> {
    normalize(url).map(|_| ())
}

impl Store {
    /// Connects to the log at `url` and brings its tables up to date (PostgreSQL replicas
    /// starting together take turns: sqlx's migrator holds an advisory lock).
    pub async fn connect(url: &str) -> Result<Self, LogError> {
        sqlx::any::install_default_drivers();
        let full = normalize(url)?;
        let shown = hide_password(&full);
        let db = |source| LogError::Database {
            url: shown.clone(),
            source,
        };
        if let Some(parent) = sqlite_file(&full).and_then(Path::parent) {
            std::fs::create_dir_all(parent).map_err(|e| db(sqlx::Error::Io(e)))?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(&full)
            .await
            .map_err(db)?;
        if sqlite_file(&full).is_some() {
            // Readers (monitoring, feedback) then never wait for the writer, nor it for them.
            if let Err(e) = sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await {
                tracing::warn!("the prediction log stays in rollback-journal mode: {e}");
            }
        }
        let migrator = Migrator::new(Embedded)
            .await
            .map_err(|source| LogError::Migrate {
                url: shown.clone(),
                source,
            })?;
        migrator
            .run(&pool)
            .await
            .map_err(|source| LogError::Migrate {
                url: shown.clone(),
                source,
            })?;
        Ok(Self { pool, shown })
    }

    /// The URL without its password.
    pub fn url(&self) -> &str {
        &self.shown
    }

    fn error(&self, source: sqlx::Error) -> LogError {
        LogError::Database {
            url: self.shown.clone(),
            source,
        }
    }

    /// Inserts `rows` in one transaction.
    pub async fn insert(&self, rows: &[Row]) -> Result<(), LogError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.error(e))?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = insert_sql(chunk.len());
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.id.clone())
                    .bind(r.created_at)
                    .bind(r.model_version.clone())
                    .bind(r.source.to_string())
                    .bind(r.text.clone())
                    .bind(r.text_hash.clone())
                    .bind(r.text_chars)
                    .bind(r.tokens)
                    .bind(r.unknown_tokens)
                    .bind(i64::from(r.over_max_length))
                    .bind(r.label.clone())
                    .bind(r.confidence)
                    .bind(r.probabilities.clone())
                    .bind(r.latency_ms);
            }
            q.execute(&mut *tx).await.map_err(|e| self.error(e))?;
        }
        tx.commit().await.map_err(|e| self.error(e))
    }

    /// The logged prediction `id`, if any.
    pub async fn prediction(&self, id: &str) -> Result<Option<Logged>, LogError> {
        let row = sqlx::query("SELECT id, label, model_version FROM predictions WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        row.map(|r| {
            Ok(Logged {
                id: r.try_get(0)?,
                label: r.try_get(1)?,
                model_version: r.try_get(2)?,
            })
        })
        .transpose()
        .map_err(|e| self.error(e))
    }

    /// Records `label` as the right answer for prediction `id` (replacing an earlier one).
    pub async fn add_feedback(
        &self,
        id: &str,
        label: &str,
        now_ms: i64,
    ) -> Result<FeedbackOutcome, LogError> {
        let Some(logged) = self.prediction(id).await? else {
            return Ok(FeedbackOutcome::UnknownId);
        };
        sqlx::query(
            "INSERT INTO feedback (prediction_id, label, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (prediction_id) DO UPDATE SET label = excluded.label, created_at = excluded.created_at",
        )
        .bind(id.to_string())
        .bind(label.to_string())
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        Ok(FeedbackOutcome::Recorded(logged))
    }

    /// Deletes predictions beyond the newest `max_rows` and older than `min_created_at`,
    /// except corrected ones; returns how many went.
    pub async fn prune(
        &self,
        max_rows: Option<u64>,
        min_created_at: Option<i64>,
    ) -> Result<u64, LogError> {
        let mut cutoff = min_created_at;
        if let Some(max) = max_rows.filter(|&m| m > 0) {
            let nth: Option<i64> = sqlx::query_scalar(
                "SELECT created_at FROM predictions ORDER BY created_at DESC LIMIT 1 OFFSET $1",
            )
            .bind(i64::try_from(max - 1).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
            cutoff = cutoff.max(nth);
        }
        let Some(cutoff) = cutoff else {
            return Ok(0);
        };
        let done = sqlx::query(
            "DELETE FROM predictions WHERE created_at < $1 \
             AND id NOT IN (SELECT prediction_id FROM feedback)",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        Ok(done.rows_affected())
    }

    /// Predictions logged.
    pub async fn count(&self) -> Result<u64, LogError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM predictions")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The newest `limit` predictions since `since_ms`, oldest first, with their corrections.
    pub async fn monitor_rows(
        &self,
        since_ms: i64,
        limit: u64,
    ) -> Result<Vec<MonitorRow>, LogError> {
        let rows = sqlx::query(
            "SELECT p.created_at, p.label, p.confidence, p.tokens, p.unknown_tokens, \
             p.over_max_length, f.label FROM predictions p \
             LEFT JOIN feedback f ON f.prediction_id = p.id \
             WHERE p.created_at >= $1 ORDER BY p.created_at DESC LIMIT $2",
        )
        .bind(since_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        let mut out = rows
            .iter()
            .map(monitor_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(e))?;
        out.reverse();
        Ok(out)
    }

    /// Every correction, oldest first, with its logged text.
    pub async fn corrections(&self) -> Result<Corrections, LogError> {
        let rows = sqlx::query(
            "SELECT p.id, p.text, f.label FROM feedback f \
             JOIN predictions p ON p.id = f.prediction_id ORDER BY f.created_at, p.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        let mut out = Corrections::default();
        for r in rows {
            let text: Option<String> = r.try_get(1).map_err(|e| self.error(e))?;
            match text {
                Some(text) => out.examples.push(Correction {
                    id: r.try_get(0).map_err(|e| self.error(e))?,
                    text,
                    label: r.try_get(2).map_err(|e| self.error(e))?,
                }),
                None => out.without_text += 1,
            }
        }
        Ok(out)
    }
}

fn monitor_row(r: &AnyRow) -> Result<MonitorRow, sqlx::Error> {
    Ok(MonitorRow {
        created_at: r.try_get(0)?,
        label: r.try_get(1)?,
        confidence: r.try_get(2)?,
        tokens: r.try_get(3)?,
        unknown_tokens: r.try_get(4)?,
        over_max_length: r.try_get::<i64, _>(5)? != 0,
        feedback: r.try_get(6)?,
    })
}

/// `INSERT INTO predictions (...) VALUES ($1, ...), ...` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let n = COLUMNS.len();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=n).map(|c| format!("${}", r * n + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO predictions ({}) VALUES {}",
        COLUMNS.join(", "),
        values.join(", ")
    )
}

/// The corrections in the log at `url` (a SQLite file or a PostgreSQL URL), for callers
/// without an async runtime (`preprocess`).
pub fn read_corrections(url: &str) -> Result<Corrections, LogError> {
    let full = normalize(url)?;
    if let Some(file) = sqlite_file(&full).filter(|f| !f.is_file()) {
        return Err(LogError::Missing(file.display().to_string()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LogError::Database {
            url: hide_password(&full),
            source: sqlx::Error::Io(e),
        })?;
    runtime.block_on(async { Store::connect(url).await?.corrections().await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_sqlx_urls() {
        let n = |u: &str| normalize(u).unwrap();
        assert_eq!(n("results/p.db"), "sqlite://results/p.db?mode=rwc");
        assert_eq!(n("sqlite:///app/p.db"), "sqlite:///app/p.db?mode=rwc");
        assert_eq!(n("sqlite:p.db?mode=ro"), "sqlite://p.db?mode=ro");
        assert_eq!(n("postgres://u:p@h/db"), "postgres://u:p@h/db");
        let e = normalize("mysql://u:secret@h/db").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        for bad in ["mysql://h/db", "", "sqlite://"] {
            let e = normalize(bad).unwrap_err().to_string();
            assert!(e.contains("neither a SQLite file"), "{e}");
        }
        assert_eq!(
            hide_password("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            sqlite_file("sqlite:///a/b.db?mode=rwc"),
            Some(Path::new("/a/b.db"))
        );
    }

    #[test]
    fn one_statement_binds_every_row() {
        let sql = insert_sql(2);
        assert!(sql.contains("($1, $2,") && sql.ends_with("$28)"), "{sql}");
    }
}
