//! Resolving a model argument to a folder on disk: a local folder as is, anything else as a
//! Hugging Face Hub id fetched into the Hub cache by `hf-hub`.
//!
//! Honours `HF_HOME` (cache location), `HF_ENDPOINT`, `HF_TOKEN` (or the cached login token)
//! and `HF_HUB_OFFLINE=1` (cache only, no network).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use serde::{Deserialize, Serialize};

use super::{CONFIG_FILE, OPTIONAL_FILES, TOKENIZER_FILES, WEIGHT_FILES};
use crate::error::{Error, Result};

/// Where a model came from: recorded in run summaries and shown by the api's /info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSource {
    /// What the user passed: a Hub id or a folder.
    pub id: String,
    /// The Hub commit the files came from; `None` for a local folder.
    pub revision: Option<String>,
    /// The folder the files were read from.
    pub path: PathBuf,
}

/// How to reach the Hub; [`HubSettings::from_env`] reads the standard variables.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// The `hub` folder of the cache (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE`: read the cache only.
    pub offline: bool,
    /// `HF_TOKEN`, else the token saved by `huggingface-cli login`.
    pub token: Option<String>,
    /// `HF_ENDPOINT`: a Hub mirror, e.g. a company's proxy; `None` for huggingface.co.
    pub endpoint: Option<String>,
}

impl HubSettings {
    pub fn from_env() -> Self {
        let cache = Cache::from_env();
        let offline = matches!(
            std::env::var("HF_HUB_OFFLINE").as_deref(),
            Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes") | Ok("ON") | Ok("on")
        );
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| cache.token());
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .map(|e| e.trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty());
        Self {
            cache_dir: cache.path().clone(),
            offline,
            token,
            endpoint,
        }
    }

    /// The hf-hub client for these settings (cache, endpoint, token, progress bars).
    pub fn api(&self) -> std::result::Result<hf_hub::api::sync::Api, String> {
        let mut builder = ApiBuilder::from_cache(Cache::new(self.cache_dir.clone()));
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        builder
            .with_token(self.token.clone())
            .with_progress(true)
            .build()
            .map_err(|e| e.to_string())
    }

    /// The files of `repo` at `revision` already in the cache (relative names), for offline
    /// use: empty when the cache has no snapshot of that revision.
    pub fn cached_files(&self, repo: &Repo) -> Vec<String> {
        let folder = self.cache_dir.join(repo.folder_name());
        let commit = std::fs::read_to_string(folder.join("refs").join(repo.revision()))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| repo.revision().to_string());
        let snapshot = folder.join("snapshots").join(commit);
        let mut out = Vec::new();
        list_files(&snapshot, &snapshot, &mut out);
        out.sort();
        out
    }
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            list_files(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// What a failed Hub request means for the user: the HTTP status spelled out, with what to
/// do, where there is one.
pub fn describe(e: &hf_hub::api::sync::ApiError) -> String {
    if let hf_hub::api::sync::ApiError::RequestError(inner) = e
        && let ureq::Error::StatusCode(code) = **inner
    {
        return match code {
            401 | 403 => format!(
                "the Hub refused access (HTTP {code}): set HF_TOKEN to a token that can read \
                 this repository (gated and private ones need one)"
            ),
            404 => "not found (HTTP 404): check the id, the revision and the endpoint".into(),
            500.. => format!("the Hub failed (HTTP {code}): try again later"),
            _ => format!("the Hub answered HTTP {code}"),
        };
    }
    e.to_string()
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with('.') || s.starts_with('/') || s.starts_with('~') || s.contains('\\')
}

/// Whether a model setting that is not an existing folder names a Hub repository with its
/// owner (`cardiffnlp/twitter-roberta-base-sentiment-latest`). Services treat a bare name
/// such as `model_output` as a folder still to be written, not as a Hub id.
pub fn is_owned_hub_id(s: &str) -> bool {
    !looks_like_path(s)
        && s.split('/').count() == 2
        && s.split('/').all(|part| !part.is_empty())
        && !s.contains(char::is_whitespace)
}

/// What of a model repository to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// Config, weights and tokenizer.
    Model,
    /// Only the tokenizer files.
    Tokenizer,
}

/// Resolves `model` (folder or Hub id, at `revision` or `main`) to a local folder.
pub fn resolve_model(model: &str, revision: Option<&str>) -> Result<ModelSource> {
    resolve_model_with(&HubSettings::from_env(), model, revision, Files::Model)
}

/// Resolves `model` to a local folder that has at least its tokenizer.
pub fn resolve_tokenizer(model: &str, revision: Option<&str>) -> Result<ModelSource> {
    resolve_model_with(&HubSettings::from_env(), model, revision, Files::Tokenizer)
}

/// [`resolve_model`] with explicit Hub settings and file selection.
pub fn resolve_model_with(
    hub: &HubSettings,
    model: &str,
    revision: Option<&str>,
    files: Files,
) -> Result<ModelSource> {
    let path = Path::new(model);
    if path.is_dir() {
        return Ok(ModelSource {
            id: model.to_string(),
            revision: None,
            path: path.to_path_buf(),
        });
    }
    if path.exists() {
        return Err(Error::Input(format!(
            "model `{model}` is a file: pass the folder that holds config.json and the weights"
        )));
    }
    if looks_like_path(model) || model.is_empty() {
        return Err(Error::Input(format!(
            "model folder `{model}` does not exist: pass an existing folder or a Hugging Face Hub id \
             such as distilbert-base-uncased"
        )));
    }
    fetch(hub, model, revision.unwrap_or("main"), files)
}

/// Fetches one file of the repository into the cache, or says why it could not.
type FileGetter = dyn Fn(&str) -> std::result::Result<PathBuf, String>;

fn fetch(hub: &HubSettings, id: &str, revision: &str, files: Files) -> Result<ModelSource> {
    let cache = Cache::new(hub.cache_dir.clone());
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string());
    let hub_error = |reason: String| Error::Hub {
        id: id.to_string(),
        cache: cache.path().clone(),
        reason,
    };
    let get: Box<FileGetter> = if hub.offline {
        let cached = cache.repo(repo.clone());
        Box::new(move |f: &str| {
            cached
                .get(f)
                .ok_or_else(|| format!("{f} is not in the cache and HF_HUB_OFFLINE is set"))
        })
    } else {
        let api = hub.api().map_err(hub_error)?;
        let api_repo: ApiRepo = api.repo(repo.clone());
        Box::new(move |f: &str| api_repo.get(f).map_err(|e| describe(&e)))
    };

    let first_of = |files: &[&str]| -> std::result::Result<PathBuf, String> {
        let mut reasons = Vec::new();
        for f in files {
            match get(f) {
                Ok(p) => return Ok(p),
                Err(e) => reasons.push(format!("{f}: {e}")),
            }
        }
        Err(reasons.join("; "))
    };
    let anchor = match files {
        Files::Model => {
            let config = get(CONFIG_FILE).map_err(hub_error)?;
            first_of(&WEIGHT_FILES).map_err(|e| hub_error(format!("no weights ({e})")))?;
            first_of(&TOKENIZER_FILES).map_err(|e| hub_error(format!("no tokenizer ({e})")))?;
            config
        }
        Files::Tokenizer => {
            first_of(&TOKENIZER_FILES).map_err(|e| hub_error(format!("no tokenizer ({e})")))?
        }
    };
    for f in OPTIONAL_FILES {
        let _ = get(f);
    }
    let dir = anchor
        .parent()
        .expect("a cached file lives in a snapshot folder")
        .to_path_buf();
    let commit = dir.file_name().map(|c| c.to_string_lossy().into_owned());
    Ok(ModelSource {
        id: id.to_string(),
        revision: commit,
        path: dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_local_folder_is_named() {
        let err = resolve_model("./no/such/model", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("./no/such/model") && err.contains("does not exist"),
            "{err}"
        );
    }

    #[test]
    fn offline_hub_id_names_id_cache_and_local_alternative() {
        let cache = tempfile::tempdir().unwrap();
        let hub = HubSettings {
            cache_dir: cache.path().to_path_buf(),
            offline: true,
            token: None,
            endpoint: None,
        };
        let err = resolve_model_with(&hub, "someone/some-model", None, Files::Model)
            .unwrap_err()
            .to_string();
        assert!(err.contains("someone/some-model"), "{err}");
        assert!(err.contains(&cache.path().display().to_string()), "{err}");
        assert!(err.contains("local model folder"), "{err}");
    }
}
