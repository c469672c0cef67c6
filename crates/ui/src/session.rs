//! Per-browser state kept in memory behind a random cookie: the history of analyses, and
//! batch results waiting to be downloaded. Bounded: old sessions and results are evicted.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use api_types::LabelScore;

pub const COOKIE: &str = "sentiment_session";
/// Analyses remembered per session.
const HISTORY: usize = 10;
/// Sessions kept; the least recently used goes first.
const MAX_SESSIONS: usize = 10_000;
/// Batch results kept for download, and for how long.
const MAX_RESULTS: usize = 32;
const RESULT_TTL: Duration = Duration::from_secs(3600);

/// One analysis the user ran.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub text: String,
    pub label: String,
    pub confidence: f32,
    pub scores: Vec<LabelScore>,
    /// Its id in the api's prediction log, when the api keeps one (then it can be corrected).
    pub id: Option<String>,
    /// The label the user confirmed or corrected it to.
    pub feedback: Option<String>,
}

impl Analysis {
    /// Whether the user said the model was right.
    pub fn confirmed(&self) -> bool {
        self.feedback.as_deref() == Some(self.label.as_str())
    }

    /// The labels the user can correct it to.
    pub fn other_labels(&self) -> Vec<String> {
        self.scores
            .iter()
            .map(|s| s.label.clone())
            .filter(|l| *l != self.label)
            .collect()
    }
}

/// A classified CSV ready to download.
pub struct BatchResult {
    pub file_name: String,
    pub csv: Vec<u8>,
    created: Instant,
}

/// A CSV uploaded but not yet classified, waiting for the user to pick its text column.
pub struct PendingUpload {
    pub file_name: String,
    pub bytes: Vec<u8>,
    created: Instant,
}

#[derive(Default)]
struct Session {
    history: VecDeque<Analysis>,
    last_seen: Option<Instant>,
}

#[derive(Default)]
pub struct Store {
    sessions: Mutex<HashMap<String, Session>>,
    results: Mutex<HashMap<String, BatchResult>>,
    uploads: Mutex<HashMap<String, PendingUpload>>,
}

/// A fresh unguessable id (128 random bits, hex).
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether `id` looks like one of ours (so a forged cookie cannot be anything else).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Store {
    pub fn history(&self, session: &str) -> Vec<Analysis> {
        let mut sessions = self.sessions.lock().expect("session lock");
        match sessions.get_mut(session) {
            Some(s) => {
                s.last_seen = Some(Instant::now());
                s.history.iter().cloned().collect()
            }
            None => Vec::new(),
        }
    }

    pub fn record(&self, session: &str, analysis: Analysis) {
        let mut sessions = self.sessions.lock().expect("session lock");
        if !sessions.contains_key(session) && sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                sessions.remove(&k);
            }
        }
        let s = sessions.entry(session.to_string()).or_default();
        s.last_seen = Some(Instant::now());
        s.history.push_front(analysis);
        s.history.truncate(HISTORY);
    }

    /// Marks the analysis with log id `id` in `session` as checked by the user: `label` is
    /// right. `false` when the session has no such analysis.
    pub fn mark_feedback(&self, session: &str, id: &str, label: &str) -> bool {
        let mut sessions = self.sessions.lock().expect("session lock");
        let found = sessions
            .get_mut(session)
            .and_then(|s| s.history.iter_mut().find(|a| a.id.as_deref() == Some(id)));
        match found {
            Some(a) => {
                a.feedback = Some(label.to_string());
                true
            }
            None => false,
        }
    }

    pub fn keep_result(&self, file_name: String, csv: Vec<u8>) -> String {
        let id = new_id();
        let mut results = self.results.lock().expect("results lock");
        results.retain(|_, r| r.created.elapsed() < RESULT_TTL);
        while results.len() >= MAX_RESULTS {
            let oldest = results
                .iter()
                .min_by_key(|(_, r)| r.created)
                .map(|(k, _)| k.clone())
                .expect("not empty");
            results.remove(&oldest);
        }
        results.insert(
            id.clone(),
            BatchResult {
                file_name,
                csv,
                created: Instant::now(),
            },
        );
        id
    }

    pub fn result(&self, id: &str) -> Option<(String, Vec<u8>)> {
        let results = self.results.lock().expect("results lock");
        results
            .get(id)
            .filter(|r| r.created.elapsed() < RESULT_TTL)
            .map(|r| (r.file_name.clone(), r.csv.clone()))
    }

    pub fn keep_upload(&self, file_name: String, bytes: Vec<u8>) -> String {
        let id = new_id();
        let mut uploads = self.uploads.lock().expect("uploads lock");
        uploads.retain(|_, u| u.created.elapsed() < RESULT_TTL);
        while uploads.len() >= MAX_RESULTS {
            let oldest = uploads
                .iter()
                .min_by_key(|(_, u)| u.created)
                .map(|(k, _)| k.clone())
                .expect("not empty");
            uploads.remove(&oldest);
        }
        uploads.insert(
            id.clone(),
            PendingUpload {
                file_name,
                bytes,
                created: Instant::now(),
            },
        );
        id
    }

    pub fn take_upload(&self, id: &str) -> Option<PendingUpload> {
        self.uploads.lock().expect("uploads lock").remove(id)
    }
}
