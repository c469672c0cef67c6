//! The log against real SQLite files: rows, corrections, retention, and a database that is
//! down or slow.

use std::time::{Duration, Instant};

use prediction_log::{
    FeedbackOutcome, LogMetrics, LogOptions, Logger, Row, Source, Store, read_corrections,
};

fn row(i: i64, label: &str) -> Row {
    let text = format!("text number {i}");
    Row {
        id: Row::new_id(),
        created_at: 1_000 + i,
        model_version: "v1".into(),
        source: Source::Api,
        text_hash: Row::hash_text(&text),
        text_chars: text.chars().count() as i64,
        text: Some(text),
        tokens: 5,
        unknown_tokens: 0,
        over_max_length: false,
        label: label.into(),
        confidence: 0.9,
        probabilities: r#"{"negative":0.1,"positive":0.9}"#.into(),
        latency_ms: 3.5,
    }
}

fn metrics() -> LogMetrics {
    LogMetrics::register(&prometheus::Registry::new()).unwrap()
}

#[tokio::test]
async fn rows_and_corrections_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sub/log.db").display());
    let store = Store::connect(&url).await.unwrap();
    let rows: Vec<Row> = (0..450).map(|i| row(i, "positive")).collect();
    store.insert(&rows).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 450);
    let FeedbackOutcome::Recorded(logged) = store
        .add_feedback(&rows[3].id, "negative", 5)
        .await
        .unwrap()
    else {
        panic!("a logged id is known")
    };
    assert_eq!(logged.label, "positive");
    // A second correction of the same prediction replaces the first.
    store.add_feedback(&rows[3].id, "neutral", 6).await.unwrap();
    assert_eq!(
        store
            .add_feedback("no-such-id", "negative", 7)
            .await
            .unwrap(),
        FeedbackOutcome::UnknownId
    );
    let c = store.corrections().await.unwrap();
    assert_eq!(c.examples.len(), 1);
    assert_eq!(
        (c.examples[0].text.as_str(), c.examples[0].label.as_str()),
        ("text number 3", "neutral")
    );
    let m = store.monitor_rows(0, 10).await.unwrap();
    assert_eq!(m.len(), 10);
    assert!(m[0].created_at < m[9].created_at, "oldest first");
    assert_eq!(m[9].created_at, 1_449, "the newest rows");
    // Reconnecting finds the tables (migrations run once) and the rows, as preprocess does
    // from outside any runtime.
    drop(store);
    let again = tokio::task::spawn_blocking(move || read_corrections(&url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, c);
}

#[tokio::test]
async fn retention_keeps_the_newest_and_every_corrected_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(dir.path().join("log.db").to_str().unwrap())
        .await
        .unwrap();
    let rows: Vec<Row> = (0..20).map(|i| row(i, "positive")).collect();
    store.insert(&rows).await.unwrap();
    store
        .add_feedback(&rows[0].id, "negative", 1)
        .await
        .unwrap();
    assert_eq!(store.prune(Some(5), None).await.unwrap(), 14);
    let left = store.monitor_rows(0, 100).await.unwrap();
    let times: Vec<i64> = left.iter().map(|r| r.created_at).collect();
    assert_eq!(times, vec![1_000, 1_015, 1_016, 1_017, 1_018, 1_019]);
    assert_eq!(store.prune(None, Some(1_018)).await.unwrap(), 3);
    assert_eq!(
        store.count().await.unwrap(),
        3,
        "the corrected row and the two newest"
    );
    assert_eq!(store.prune(None, None).await.unwrap(), 0);
}

#[tokio::test]
async fn the_logger_writes_in_batches_and_applies_retention() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("log.db").display().to_string();
    let options = LogOptions {
        max_rows: Some(30),
        ..LogOptions::default()
    };
    let m = metrics();
    let logger = Logger::start(&url, options, m.clone()).unwrap();
    for i in 0..100 {
        logger.log(row(i, "positive"));
    }
    assert!(logger.flush().await);
    assert_eq!(m.written.get(), 100);
    assert_eq!(m.dropped.get(), 0);
    assert_eq!(logger.store().unwrap().count().await.unwrap(), 30);
    assert_eq!(m.pruned.get(), 70);
    logger.close(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_database_that_is_down_drops_and_counts_rows_without_blocking() {
    // Nothing listens on port 1: every connection attempt is refused.
    let options = LogOptions {
        buffer: 8,
        housekeeping_every: Duration::from_secs(3600),
        ..LogOptions::default()
    };
    let m = metrics();
    let logger = Logger::start("postgres://u:secret@127.0.0.1:1/log", options, m.clone()).unwrap();
    let started = Instant::now();
    for i in 0..50 {
        logger.log(row(i, "positive"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "log() never waits"
    );
    assert_eq!(m.dropped.get(), 42, "the buffer holds 8");
    assert!(logger.store().is_none());
    logger.close(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_slow_database_drops_and_counts_rows_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("log.db").display().to_string();
    let holder = Store::connect(&url).await.unwrap();
    // Another connection holds the write lock, as a long-running writer would.
    let mut lock = sqlx::AnyConnection::connect_with_url(&url).await;
    let options = LogOptions {
        buffer: 4,
        batch: 2,
        flush_every: Duration::from_millis(10),
        write_timeout: Duration::from_millis(300),
        ..LogOptions::default()
    };
    let m = metrics();
    let logger = Logger::start(&url, options, m.clone()).unwrap();
    while logger.store().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lock.begin_exclusive().await;
    let started = Instant::now();
    for i in 0..40 {
        logger.log(row(i, "positive"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "log() never waits"
    );
    lock.rollback().await;
    assert!(logger.flush().await);
    assert!(
        m.dropped.get() > 0,
        "rows were dropped while the database was locked"
    );
    assert!(m.failed_writes.get() > 0);
    let written = holder.count().await.unwrap();
    assert_eq!(written, m.written.get());
    assert_eq!(
        written + m.dropped.get(),
        40,
        "every row is written or counted"
    );
    logger.close(Duration::from_secs(5)).await;
}

/// A raw SQLite connection that can hold the database's write lock.
trait Locker {
    async fn connect_with_url(url: &str) -> Self;
    async fn begin_exclusive(&mut self);
    async fn rollback(&mut self);
}

impl Locker for sqlx::AnyConnection {
    async fn connect_with_url(path: &str) -> Self {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&format!("sqlite://{path}"))
            .await
            .unwrap()
    }
    async fn begin_exclusive(&mut self) {
        sqlx::query("BEGIN EXCLUSIVE").execute(self).await.unwrap();
    }
    async fn rollback(&mut self) {
        sqlx::query("ROLLBACK").execute(self).await.unwrap();
    }
}
