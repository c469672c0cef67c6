//! The api's side of the log: a bounded buffer and a background task that writes it in
//! batches, so that `/predict` never waits for the database.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounter, Registry};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::row::Row;
use crate::store::{LogError, Store, check_url};

/// How the log is written and bounded.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Rows waiting to be written; a row that finds the buffer full is dropped and counted.
    pub buffer: usize,
    /// Rows per write, at most.
    pub batch: usize,
    /// The longest a row waits for its batch to fill before it is written.
    pub flush_every: Duration,
    /// A write taking longer than this has failed (its rows are dropped and counted).
    pub write_timeout: Duration,
    /// Keep at most this many predictions (corrected ones are always kept).
    pub max_rows: Option<u64>,
    /// Keep predictions at most this long (corrected ones are always kept).
    pub max_age: Option<Duration>,
    /// How often retention runs, and how long to wait between connection attempts.
    pub housekeeping_every: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            buffer: 10_000,
            batch: 500,
            flush_every: Duration::from_millis(500),
            write_timeout: Duration::from_secs(10),
            max_rows: None,
            max_age: None,
            housekeeping_every: Duration::from_secs(60),
        }
    }
}

/// The log's counters, on the api's /metrics.
#[derive(Clone)]
pub struct LogMetrics {
    pub written: IntCounter,
    pub dropped: IntCounter,
    pub failed_writes: IntCounter,
    pub pruned: IntCounter,
}

impl LogMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(Self {
            written: counter(
                "prediction_log_rows_written_total",
                "Predictions written to the log",
            )?,
            dropped: counter(
                "prediction_log_rows_dropped_total",
                "Predictions not logged: the buffer was full (the database slow or down) or their write failed",
            )?,
            failed_writes: counter(
                "prediction_log_write_errors_total",
                "Batch writes that failed",
            )?,
            pruned: counter(
                "prediction_log_rows_pruned_total",
                "Predictions deleted by retention",
            )?,
        })
    }
}

enum Command {
    Row(Box<Row>),
    Flush(oneshot::Sender<()>),
}

/// The log writer: [`Logger::log`] never waits.
pub struct Logger {
    tx: mpsc::Sender<Command>,
    store: Arc<OnceLock<Store>>,
    metrics: LogMetrics,
    task: JoinHandle<()>,
}

impl Logger {
    /// Starts the writer for the log at `url`. Only a malformed `url` fails here; an
    /// unreachable database is retried in the background while requests are served.
    pub fn start(url: &str, options: LogOptions, metrics: LogMetrics) -> Result<Self, LogError> {
        check_url(url)?;
        let (tx, rx) = mpsc::channel(options.buffer.max(1));
        let store = Arc::new(OnceLock::new());
        let writer = Writer {
            options,
            metrics: metrics.clone(),
            last_housekeeping: Instant::now(),
        };
        let task = tokio::spawn(writer.run(url.to_string(), store.clone(), rx));
        Ok(Self {
            tx,
            store,
            metrics,
            task,
        })
    }

    /// Queues `row` for writing; drops and counts it when the buffer is full.
    pub fn log(&self, row: Row) {
        if self.tx.try_send(Command::Row(Box::new(row))).is_err() {
            self.metrics.dropped.inc();
        }
    }

    /// The database, once connected.
    pub fn store(&self) -> Option<&Store> {
        self.store.get()
    }

    /// The database, waiting up to `wait` for the first connection (a server that has just
    /// started may not have connected yet).
    pub async fn store_within(&self, wait: Duration) -> Option<&Store> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(s) = self.store.get() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every row queued before this call is written (or has failed), then runs
    /// retention. `false` when the writer has stopped.
    pub async fn flush(&self) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).await.is_err() {
            return false;
        }
        wait.await.is_ok()
    }

    /// Writes what is queued and stops, waiting at most `grace`.
    pub async fn close(self, grace: Duration) {
        drop(self.tx);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("the prediction log did not finish writing within {grace:?}");
        }
    }
}

struct Writer {
    options: LogOptions,
    metrics: LogMetrics,
    last_housekeeping: Instant,
}

impl Writer {
    async fn run(
        mut self,
        url: String,
        cell: Arc<OnceLock<Store>>,
        mut rx: mpsc::Receiver<Command>,
    ) {
        let store = loop {
            match Store::connect(&url).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(
                        "{e}; predictions are buffered (then dropped and counted) and the connection is retried in {:?}",
                        self.options.housekeeping_every
                    );
                    tokio::time::sleep(self.options.housekeeping_every).await;
                }
            }
        };
        tracing::info!(log = store.url(), "prediction log connected");
        let store = cell.get_or_init(|| store).clone();
        self.housekeeping(&store).await;
        while let Some(first) = rx.recv().await {
            let (rows, flushes) = self.gather(first, &mut rx).await;
            self.write(&store, rows).await;
            if !flushes.is_empty()
                || self.last_housekeeping.elapsed() >= self.options.housekeeping_every
            {
                self.housekeeping(&store).await;
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
    }

    /// One batch: `first` and what arrives until the batch is full, a flush is asked for,
    /// or `flush_every` has passed.
    async fn gather(
        &self,
        first: Command,
        rx: &mut mpsc::Receiver<Command>,
    ) -> (Vec<Row>, Vec<oneshot::Sender<()>>) {
        let (mut rows, mut flushes) = (Vec::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + self.options.flush_every;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Row(r) => rows.push(*r),
                Command::Flush(f) => flushes.push(f),
            }
            if rows.len() >= self.options.batch || !flushes.is_empty() {
                break;
            }
            next = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten();
        }
        (rows, flushes)
    }

    async fn write(&self, store: &Store, rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        let n = rows.len() as u64;
        let failure =
            match tokio::time::timeout(self.options.write_timeout, store.insert(&rows)).await {
                Ok(Ok(())) => {
                    self.metrics.written.inc_by(n);
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("the write took over {:?}", self.options.write_timeout),
            };
        self.metrics.failed_writes.inc();
        self.metrics.dropped.inc_by(n);
        tracing::warn!("{n} predictions not logged: {failure}");
    }

    async fn housekeeping(&mut self, store: &Store) {
        self.last_housekeeping = Instant::now();
        let (max_rows, max_age) = (self.options.max_rows, self.options.max_age);
        if max_rows.is_none() && max_age.is_none() {
            return;
        }
        let oldest =
            max_age.map(|age| now_ms() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        match store.prune(max_rows, oldest).await {
            Ok(n) => self.metrics.pruned.inc_by(n),
            Err(e) => tracing::warn!("prediction log retention failed: {e}"),
        }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
