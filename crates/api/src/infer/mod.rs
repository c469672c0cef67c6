//! The inference facade: a loaded model with its queue and model thread. It owns everything
//! between a request's texts and their predictions (tokenising off the async runtime,
//! windows for long texts, queueing, waiting, averaging windows) so that the HTTP layer only
//! translates requests and errors.

mod error;
mod queue;

use std::sync::Arc;
use std::time::Instant;

use classifier::{Classifier, Encoded, LongText, Prediction};
use tokio::sync::oneshot;

pub use error::{BackendError, InferError};
use queue::{Entry, Full, Queue};

use crate::metrics::Metrics;

/// How one request's long texts are read.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// `false`: a text the model would have to truncate is refused.
    pub truncate: bool,
    /// The request's own long-text mode, else the server's.
    pub mode: Option<LongText>,
}

/// What the model read of one text, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextShape {
    /// Word pieces after cleaning, before truncation or windows.
    pub word_pieces: usize,
    /// Of those, how many are the tokenizer's unknown token.
    pub unknown: usize,
    /// Longer than the model reads in one pass (truncated, or read in several windows).
    pub over_max_length: bool,
}

/// A loaded model serving through its own queue and thread; dropping it closes the queue and
/// joins the thread once queued work is done.
pub struct Infer {
    classifier: Arc<Classifier>,
    queue: Arc<Queue>,
    metrics: Metrics,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Infer {
    fn drop(&mut self) {
        self.queue.close();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Infer {
    /// Starts the model thread for `classifier` behind a queue of `max_queue` texts.
    pub fn start(classifier: Classifier, max_queue: usize, metrics: Metrics) -> Self {
        let classifier = Arc::new(classifier);
        let queue = Arc::new(Queue::new(max_queue, metrics.clone()));
        let worker = queue::spawn_worker(classifier.clone(), queue.clone(), metrics.clone());
        Self {
            classifier,
            queue,
            metrics,
            worker: Some(worker),
        }
    }

    pub fn labels(&self) -> &[String] {
        self.classifier.labels()
    }

    /// Classifies `texts`: every window of every text is queued, answered by the model
    /// thread, and each text's windows are averaged. Counts the predicted labels. Each
    /// prediction comes with the shape of its text.
    pub async fn classify(
        &self,
        texts: Vec<String>,
        read: Reading,
    ) -> Result<Vec<(Prediction, TextShape)>, InferError> {
        let started = Instant::now();
        let encoded = self.encode(texts, read).await?;
        self.metrics
            .tokenization_duration
            .with_label_values::<&str>(&[])
            .observe(started.elapsed().as_secs_f64());
        let max_length = self.classifier.pipeline().max_length;
        let shapes: Vec<TextShape> = encoded
            .iter()
            .map(|e| TextShape {
                word_pieces: e.word_pieces,
                unknown: e.unknown,
                over_max_length: e.word_pieces + 2 > max_length,
            })
            .collect();
        let counts: Vec<usize> = encoded.iter().map(|e| e.windows.len()).collect();
        let windows = encoded.into_iter().flat_map(|e| e.windows).collect();
        let answers = self.enqueue(windows)?;
        let mut window_preds = Vec::with_capacity(answers.len());
        for rx in answers {
            window_preds.push(rx.await.map_err(|_| InferError::Stopped)??);
        }
        let mut window_preds = window_preds.into_iter();
        let preds: Vec<Prediction> = counts
            .into_iter()
            .map(|n| {
                self.classifier
                    .aggregate(window_preds.by_ref().take(n).collect())
            })
            .collect();
        self.count_labels(&preds);
        Ok(preds.into_iter().zip(shapes).collect())
    }

    /// Checks one prediction end to end through the real path: tokenizer, queue, thread.
    pub fn warm_up(&self) -> Result<(), InferError> {
        let ids = self.classifier.encode(&["warm-up"])?;
        let answers = self.enqueue(ids)?;
        for rx in answers {
            rx.blocking_recv().map_err(|_| InferError::Stopped)??;
        }
        Ok(())
    }

    /// Puts all `inputs` on the queue (or none of them), returning where each answer arrives.
    fn enqueue(
        &self,
        inputs: Vec<Vec<u32>>,
    ) -> Result<Vec<oneshot::Receiver<Result<Prediction, BackendError>>>, InferError> {
        let capacity = self.queue.capacity();
        if inputs.len() > capacity {
            return Err(InferError::TooManyWindows {
                windows: inputs.len(),
                capacity,
            });
        }
        let now = Instant::now();
        let (entries, answers): (Vec<Entry>, Vec<_>) = inputs
            .into_iter()
            .map(|ids| {
                let (respond, rx) = oneshot::channel();
                let enqueued = now;
                (
                    Entry {
                        ids,
                        enqueued,
                        respond,
                    },
                    rx,
                )
            })
            .unzip();
        self.queue
            .push_all(entries)
            .map_err(|Full| InferError::Overloaded { capacity })?;
        Ok(answers)
    }

    /// Tokenizes every text into the windows it is read in, off the runtime.
    async fn encode(&self, texts: Vec<String>, read: Reading) -> Result<Vec<Encoded>, InferError> {
        let clf = self.classifier.clone();
        tokio::task::spawn_blocking(move || encode_blocking(&clf, &texts, read))
            .await
            .map_err(|e| InferError::Crashed(e.to_string()))?
    }

    fn count_labels(&self, preds: &[Prediction]) {
        let labels = self.labels();
        for p in preds {
            let label = labels[p.class].as_str();
            self.metrics.inputs.with_label_values(&[label]).inc();
        }
    }
}

fn encode_blocking(
    clf: &Classifier,
    texts: &[String],
    read: Reading,
) -> Result<Vec<Encoded>, InferError> {
    let mut policy = clf.long_text();
    policy.mode = read.mode.unwrap_or(policy.mode);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let encoded = clf.encode_read(&refs, policy)?;
    let max_length = clf.pipeline().max_length;
    if policy.mode == LongText::Truncate
        && !read.truncate
        && let Some((index, e)) = encoded
            .iter()
            .enumerate()
            .find(|(_, e)| e.word_pieces + 2 > max_length)
    {
        return Err(InferError::TooLong {
            index,
            tokens: e.word_pieces + 2,
            max_length,
        });
    }
    Ok(encoded)
}
