//! Hot swap: a new model in the model folder (a finished `train` run, `docker compose up
//! trainer`) is loaded and warmed up beside the serving one, then takes the new requests;
//! requests that already hold the old model finish on it, and it is freed after the last one
//! (at most two models resident, during the swap). A model that fails to load or warm up is
//! rejected with a log line and the old one keeps serving.
//!
//! Triggers: the folder's `config.json` changing (a promotion writes it last), seen at once
//! through file events (inotify, via the `notify` crate) and, where those do not arrive (bind
//! mounts from another machine or VM, network file systems), by a stat every
//! `MODEL_POLL_SECONDS`; `POST /admin/reload`; and SIGHUP.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api_types::ErrorType;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use crate::model::{LoadError, ModelState, load};

/// What identifies a written `config.json`: a new one (renamed in) differs in one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

/// The stamp of the model folder's `config.json`, `None` when there is none (a Hub id, or
/// a folder not written yet).
pub fn stamp(dir: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(dir.join(classifier::model_dir::CONFIG_FILE)).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        inode,
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// The answer of `POST /admin/reload`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Reloaded {
    /// Whether another model now serves (false: the folder holds the one already serving).
    pub swapped: bool,
    /// The version serving now.
    pub model_version: Option<String>,
}

/// Loads the model folder afresh and, when it is another model, swaps it in. One reload at
/// a time; a failed one leaves the serving model in place.
pub async fn reload(state: &Arc<AppState>, why: &str) -> Result<Reloaded, ApiError> {
    let mut seen = state.reload_lock.lock().await;
    let current = state
        .loaded()
        .ok()
        .and_then(|l| l.info.model_version.clone());
    let (args, metrics) = (state.args.clone(), state.metrics.clone());
    let candidate_stamp = stamp(&args.model_path);
    let loaded = tokio::task::spawn_blocking(move || load(&args, &metrics))
        .await
        .unwrap_or_else(|e| Err(LoadError::Crashed(e.to_string())));
    *seen = candidate_stamp;
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            state.metrics.reloads.with_label_values(&["rejected"]).inc();
            tracing::error!(
                trigger = why,
                "new model rejected, the old one keeps serving: {e}"
            );
            return Err(ApiError::new(
                ErrorType::Backend,
                format!("the new model was rejected and the old one keeps serving: {e}"),
            ));
        }
    };
    let version = loaded.info.model_version.clone();
    if version.is_some() && version == current {
        state
            .metrics
            .reloads
            .with_label_values(&["unchanged"])
            .inc();
        return Ok(Reloaded {
            swapped: false,
            model_version: version,
        });
    }
    state.set_model(ModelState::Ready(Arc::new(loaded)));
    state.metrics.reloads.with_label_values(&["swapped"]).inc();
    tracing::info!(trigger = why, from = ?current, to = ?version, "model swapped");
    Ok(Reloaded {
        swapped: true,
        model_version: version,
    })
}

/// Watches the model folder and reloads when its `config.json` changes: woken by file
/// events, and checked every `MODEL_POLL_SECONDS` besides; returns at once when that is 0
/// (reloads only on request).
pub async fn watch(state: Arc<AppState>) {
    let every = Duration::from_secs(state.args.model_poll_seconds);
    if every.is_zero() {
        return;
    }
    let dir = state.args.model_path.clone();
    *state.reload_lock.lock().await = stamp(&dir);
    let (tx, mut events) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher = FolderEvents::new(&dir, tx);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            Some(()) = events.recv() => {
                // A promotion writes several files: let it finish before looking.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while events.try_recv().is_ok() {}
            }
        }
        let now = stamp(&dir);
        let changed = now.is_some() && *state.reload_lock.lock().await != now;
        if changed {
            // A failure is logged and counted by `reload`; the watch goes on.
            let _ = reload(&state, "the model folder changed").await;
        }
        if let Some(w) = watcher.as_mut() {
            w.rewatch();
        }
    }
}

/// File events of the model folder and of its parent (an atomic folder swap replaces the
/// folder itself, which only the parent sees); `None` where events are unavailable, and
/// polling alone serves.
struct FolderEvents {
    watcher: notify::RecommendedWatcher,
    dir: std::path::PathBuf,
    /// The folder the watch is on (by inode): a folder swap puts another one in its place.
    watched: Option<u64>,
}

impl FolderEvents {
    fn new(dir: &Path, tx: tokio::sync::mpsc::Sender<()>) -> Option<Self> {
        use notify::Watcher;
        let handler = move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                // Full: a wake-up is already pending, which is all that is needed.
                let _ = tx.try_send(());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::info!("no file events for the model folder ({e}): polling only");
                return None;
            }
        };
        if let Some(parent) = dir.parent().filter(|p| p.is_dir()) {
            let _ = watcher.watch(parent, notify::RecursiveMode::NonRecursive);
        }
        let mut events = Self {
            watcher,
            dir: dir.to_path_buf(),
            watched: None,
        };
        events.rewatch();
        Some(events)
    }

    /// Watches the folder now at the path when it is not the one watched (after a folder
    /// swap the old watch is on the replaced folder, which the kernel drops with it).
    fn rewatch(&mut self) {
        use notify::Watcher;
        let Ok(meta) = std::fs::metadata(&self.dir) else {
            return;
        };
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = {
            let _ = meta;
            0
        };
        if self.watched != Some(inode)
            && self
                .watcher
                .watch(&self.dir, notify::RecursiveMode::NonRecursive)
                .is_ok()
        {
            self.watched = Some(inode);
        }
    }
}

/// Reloads on every SIGHUP (unix), as daemons reread their configuration.
pub async fn on_hangup(state: Arc<AppState>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            let _ = reload(&state, "SIGHUP").await;
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}
