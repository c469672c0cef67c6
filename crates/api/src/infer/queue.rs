//! Dynamic batching: requests put their tokenized texts on one bounded queue; a model thread
//! takes whatever is waiting (up to the batch limits) whenever it is free, runs one forward
//! pass, and answers each text. Under load, concurrent requests share forward passes; idle,
//! a lone request waits for nothing.
//!
//! The model runs on its own OS thread (and rayon's pool), never on the async runtime. A
//! batch that fails or panics fails only its own texts.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use classifier::{BatchLimits, Classifier, Prediction};
use tokio::sync::oneshot;

use super::error::BackendError;
use crate::metrics::Metrics;

/// One text waiting for the model.
pub struct Entry {
    pub ids: Vec<u32>,
    pub enqueued: Instant,
    pub respond: oneshot::Sender<Result<Prediction, BackendError>>,
}

struct State {
    entries: VecDeque<Entry>,
    closed: bool,
}

/// A bounded FIFO of texts, filled by requests and drained by the model thread.
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    metrics: Metrics,
}

/// The queue cannot take a request's texts now.
#[derive(Debug)]
pub struct Full;

impl Queue {
    pub fn new(capacity: usize, metrics: Metrics) -> Self {
        Self {
            state: Mutex::new(State {
                entries: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
            metrics,
        }
    }

    /// How many texts the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds all of a request's texts, or none of them when they do not fit.
    pub fn push_all(&self, entries: Vec<Entry>) -> Result<(), Full> {
        let mut state = self.state.lock().expect("queue lock");
        if state.closed || state.entries.len() + entries.len() > self.capacity {
            return Err(Full);
        }
        state.entries.extend(entries);
        self.metrics.queue_depth.set(state.entries.len() as i64);
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    /// Waits for texts and takes the next batch within `limits`, in arrival order, leaving
    /// out the texts of requests that are gone; `None` once the queue is closed and empty.
    /// The batch may be empty when every waiting text was abandoned.
    fn pop_batch(&self, limits: BatchLimits) -> Option<Vec<Entry>> {
        let mut state = self.state.lock().expect("queue lock");
        while state.entries.is_empty() {
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).expect("queue lock");
        }
        let mut batch: Vec<Entry> = Vec::new();
        let mut longest = 0;
        while let Some(next) = state.entries.front() {
            // A request that is gone (its client disconnected or timed out) dropped its
            // receiver: computing its texts would only delay the live ones, and doubles the
            // load behind a load balancer that retries.
            if next.respond.is_closed() {
                state.entries.pop_front();
                self.metrics.abandoned.inc();
                continue;
            }
            let len = next.ids.len().max(1);
            let fits = batch.len() < limits.max_batch_size
                && longest.max(len) * (batch.len() + 1) <= limits.max_batch_tokens;
            if !fits && !batch.is_empty() {
                break;
            }
            longest = longest.max(len);
            batch.push(state.entries.pop_front().expect("front exists"));
        }
        self.metrics.queue_depth.set(state.entries.len() as i64);
        Some(batch)
    }

    /// Stops accepting texts; the model thread finishes what is queued, then exits.
    pub fn close(&self) {
        self.state.lock().expect("queue lock").closed = true;
        self.ready.notify_all();
    }
}

/// Starts the model thread draining `queue` through `classifier`.
pub fn spawn_worker(
    classifier: Arc<Classifier>,
    queue: Arc<Queue>,
    metrics: Metrics,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("model".into())
        .spawn(move || {
            let limits = classifier.limits();
            while let Some(batch) = queue.pop_batch(limits) {
                if !batch.is_empty() {
                    run_batch(&classifier, batch, &metrics);
                }
            }
            tracing::debug!("model thread: queue closed, exiting");
        })
        .expect("can spawn the model thread")
}

fn run_batch(classifier: &Classifier, batch: Vec<Entry>, metrics: &Metrics) {
    let started = Instant::now();
    for e in &batch {
        metrics
            .queue_duration
            .with_label_values::<&str>(&[])
            .observe((started - e.enqueued).as_secs_f64());
    }
    metrics
        .batch_size
        .with_label_values::<&str>(&[])
        .observe(batch.len() as f64);
    let seqs: Vec<&[u32]> = batch.iter().map(|e| e.ids.as_slice()).collect();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| classifier.forward(&seqs)));
    metrics
        .inference_duration
        .with_label_values::<&str>(&[])
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(Ok(preds)) if preds.len() == batch.len() => {
            for (entry, p) in batch.into_iter().zip(preds) {
                let _ = entry.respond.send(Ok(p));
            }
        }
        Ok(Ok(preds)) => {
            let (sent, got) = (batch.len(), preds.len());
            fail(batch, BackendError::Count { sent, got })
        }
        Ok(Err(e)) => fail(batch, BackendError::Forward(Arc::new(e))),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            fail(batch, BackendError::Panicked(what));
        }
    }
}

fn fail(batch: Vec<Entry>, error: BackendError) {
    tracing::error!("batch of {} failed: {error}", batch.len());
    for entry in batch {
        let _ = entry.respond.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(len: usize) -> (Entry, oneshot::Receiver<Result<Prediction, BackendError>>) {
        let (respond, answer) = oneshot::channel();
        let ids = vec![1; len];
        let enqueued = Instant::now();
        (
            Entry {
                ids,
                enqueued,
                respond,
            },
            answer,
        )
    }

    /// The texts of a request whose client went away are dropped, not computed, and counted.
    #[test]
    fn texts_of_a_request_that_is_gone_are_not_run() {
        let metrics = Metrics::new();
        let queue = Queue::new(16, metrics.clone());
        let (gone, live) = ((0..3).map(|_| entry(4)), (0..2).map(|_| entry(5)));
        let (gone, receivers): (Vec<Entry>, Vec<_>) = gone.unzip();
        drop(receivers);
        let (live, _answers): (Vec<Entry>, Vec<_>) = live.unzip();
        queue.push_all(gone).unwrap();
        queue.push_all(live).unwrap();
        let limits = BatchLimits {
            max_batch_size: 16,
            max_batch_tokens: 1024,
        };
        let batch = queue.pop_batch(limits).unwrap();
        assert_eq!(
            batch.iter().map(|e| e.ids.len()).collect::<Vec<_>>(),
            [5, 5]
        );
        assert_eq!(metrics.abandoned.get(), 3);
        assert_eq!(metrics.queue_depth.get(), 0);
    }
}
