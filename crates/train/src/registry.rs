//! Model versions. Every run's model lives in `models/<run-id>/` (Hugging Face layout, with
//! its `version.json`: metrics, base model, labels, data hashes; and the run's metrics.json,
//! run_summary.json and the data report). Promoting a version copies it into the served
//! folder (`model_output/`, what the api, batch_predict, compose and transformers read) with
//! one atomic folder swap, or file by file with `config.json` last where that folder is a
//! bind mount; `models/registry.json` names the serving version and every promotion in
//! order, so a rollback is one command. A lock file serialises trainers and `train models`
//! commands on one registry.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::ValueEnum;
use classifier::model_dir::atomic;
use serde::{Deserialize, Serialize};

pub use classifier::results::versions::{REGISTRY_FILE, VERSION_FILE};
const LOCK_FILE: &str = ".lock";

/// When a finished run replaces the served model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Promote {
    /// When its validation macro F1 beats the serving model's on the same validation split.
    IfBetter,
    Always,
    Never,
}

/// What a version is, written beside its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub id: String,
    pub created_at: String,
    pub base_model: String,
    pub labels: Vec<String>,
    pub validation_macro_f1: f64,
    pub test_macro_f1: Option<f64>,
    pub test_accuracy: Option<f64>,
    /// The model's content version, as the api reports it (/info, x-model-version).
    pub model_version: String,
    /// XXH3 of each data file the run read (train.csv, validation.csv, test.csv).
    pub data_hashes: BTreeMap<String, String>,
}

/// One promotion: which version, when, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub id: String,
    pub at: String,
    pub reason: String,
}

/// `registry.json`: the serving version and the promotions, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub serving: Option<String>,
    pub promotions: Vec<Promotion>,
}

/// A registry folder held under its lock, and the served folder it promotes into.
pub struct Models {
    dir: PathBuf,
    serve: PathBuf,
    _lock: File,
}

impl Models {
    /// Opens (creating) `dir`, waiting for any other trainer or command holding its lock.
    pub fn open(dir: &Path, serve: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock = File::create(dir.join(LOCK_FILE))
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            serve: serve.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn version_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn registry(&self) -> Result<Registry> {
        let path = self.dir.join(REGISTRY_FILE);
        if !path.exists() {
            return Ok(Registry::default());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))
    }

    fn save(&self, registry: &Registry) -> Result<()> {
        Ok(atomic::write_json(&self.dir.join(REGISTRY_FILE), registry)?)
    }

    /// Every version with a `version.json`, oldest first (run ids sort by time).
    pub fn list(&self) -> Result<Vec<VersionInfo>> {
        let mut versions = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path().join(VERSION_FILE);
            if path.is_file() {
                let text = std::fs::read_to_string(&path)?;
                versions.push(
                    serde_json::from_str::<VersionInfo>(&text)
                        .with_context(|| format!("{} is corrupt", path.display()))?,
                );
            }
        }
        versions.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(versions)
    }

    /// Records a finished version whose model is already in its folder.
    pub fn add(&self, info: &VersionInfo) -> Result<()> {
        let dir = self.version_dir(&info.id);
        ensure!(
            dir.join(classifier::model_dir::CONFIG_FILE).is_file(),
            "{} holds no model",
            dir.display()
        );
        Ok(atomic::write_json(&dir.join(VERSION_FILE), info)?)
    }

    /// Copies version `id` into the served folder (atomically) and records it as serving.
    pub fn promote(&self, id: &str, reason: &str) -> Result<()> {
        let source = self.version_dir(id);
        ensure!(
            source.join(VERSION_FILE).is_file(),
            "no version `{id}` in {} (`train models list` shows them)",
            self.dir.display()
        );
        atomic::replace_dir(&self.serve, |staging| {
            copy_files(&source, staging).map_err(|e| classifier::Error::Input(format!("{e:#}")))
        })
        .with_context(|| format!("promoting {id} into {}", self.serve.display()))?;
        let mut registry = self.registry()?;
        registry.serving = Some(id.to_string());
        registry.promotions.push(Promotion {
            id: id.to_string(),
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            reason: reason.to_string(),
        });
        self.save(&registry)
    }

    /// Promotes the version served before the current one; returns its id.
    pub fn rollback(&self) -> Result<String> {
        let registry = self.registry()?;
        let serving = registry.serving.clone();
        let previous = registry
            .promotions
            .iter()
            .rev()
            .map(|p| &p.id)
            .find(|id| Some(*id) != serving.as_ref() && self.version_dir(id).is_dir())
            .cloned();
        let Some(id) = previous else {
            bail!("nothing to roll back to: no earlier promoted version is kept");
        };
        self.promote(
            &id,
            &format!("rollback from {}", serving.unwrap_or_default()),
        )?;
        Ok(id)
    }

    /// Removes the oldest never-promoted versions (but `newest`, the one just made) while
    /// more than `keep` are kept; returns the ids removed. Promoted versions stay: they are
    /// what a rollback goes back to.
    pub fn prune(&self, keep: usize, newest: &str) -> Result<Vec<String>> {
        let registry = self.registry()?;
        let versions = self.list()?;
        let promoted = |id: &str| registry.promotions.iter().any(|p| p.id == id);
        let mut excess = versions.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for v in versions
            .iter()
            .filter(|v| !promoted(&v.id) && v.id != newest)
        {
            if excess == 0 {
                break;
            }
            std::fs::remove_dir_all(self.version_dir(&v.id))
                .with_context(|| format!("cannot remove version {}", v.id))?;
            removed.push(v.id.clone());
            excess -= 1;
        }
        Ok(removed)
    }
}

/// Whether a new version is promoted, and why. `serving_f1` is the serving model's macro F1
/// on the new run's validation split (`None`: no serving model, or one with other labels).
pub fn decide(policy: Promote, new_f1: f64, serving_f1: Option<f64>) -> (bool, String) {
    match (policy, serving_f1) {
        (Promote::Never, _) => (false, "--promote never".into()),
        (Promote::Always, _) => (true, "--promote always".into()),
        (Promote::IfBetter, None) => (true, "no comparable model was serving".into()),
        (Promote::IfBetter, Some(old)) if new_f1 > old => (
            true,
            format!("validation macro F1 {new_f1:.4} beats the serving model's {old:.4}"),
        ),
        (Promote::IfBetter, Some(old)) => (
            false,
            format!("validation macro F1 {new_f1:.4} does not beat the serving model's {old:.4}"),
        ),
    }
}

fn copy_files(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// XXH3 of a file's bytes, as 16 hex digits.
pub fn file_hash(path: &Path) -> Result<String> {
    use std::hash::Hasher;
    let mut hasher = twox_hash::XxHash3_64::default();
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// `train models`: list the versions, promote one, or roll back.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "train models")]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,

    /// The served model folder.
    #[arg(
        long,
        env = "MODEL_PATH",
        default_value = "model_output",
        global = true
    )]
    pub output_dir: PathBuf,

    /// The model versions (default: `models` beside the served folder).
    #[arg(long, env = "MODELS_DIR", global = true)]
    pub models_dir: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ModelsCommand {
    /// Every version with its metrics; `*` marks the serving one.
    List,
    /// Serve version ID (a run id from `list`).
    Promote { id: String },
    /// Serve the version promoted before the serving one.
    Rollback,
}

impl ModelsArgs {
    /// Runs the command; returns what to print.
    pub fn run(&self) -> Result<String> {
        let dir =
            classifier::results::versions::models_dir(self.models_dir.as_deref(), &self.output_dir);
        let models = Models::open(&dir, &self.output_dir)?;
        match &self.command {
            ModelsCommand::List => listing(&models),
            ModelsCommand::Promote { id } => {
                models.promote(id, "promoted by hand")?;
                Ok(format!("serving {id} from {}", self.output_dir.display()))
            }
            ModelsCommand::Rollback => {
                let id = models.rollback()?;
                Ok(format!(
                    "rolled back: serving {id} from {}",
                    self.output_dir.display()
                ))
            }
        }
    }
}

/// One line per version: id, validation and test macro F1, test accuracy, base model.
fn listing(models: &Models) -> Result<String> {
    let serving = models.registry()?.serving;
    let mut out = format!(
        "  {:<22} {:>8} {:>8} {:>8}  {:<16} base model\n",
        "version", "val F1", "test F1", "test acc", "model_version"
    );
    let num = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.4}"));
    for v in models.list()? {
        let mark = if serving.as_deref() == Some(v.id.as_str()) {
            '*'
        } else {
            ' '
        };
        out += &format!(
            "{mark} {:<22} {:>8.4} {:>8} {:>8}  {:<16} {}\n",
            v.id,
            v.validation_macro_f1,
            num(v.test_macro_f1),
            num(v.test_accuracy),
            v.model_version,
            v.base_model
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake version `id`: a config.json with `marker`, and its version.json.
    fn version(models: &Models, id: &str, f1: f64) {
        let dir = models.version_dir(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), format!("{{\"id\": \"{id}\"}}")).unwrap();
        std::fs::write(dir.join("model.safetensors"), id.as_bytes()).unwrap();
        models
            .add(&VersionInfo {
                id: id.into(),
                created_at: String::new(),
                base_model: "tiny".into(),
                labels: vec!["negative".into(), "positive".into()],
                validation_macro_f1: f1,
                test_macro_f1: None,
                test_accuracy: None,
                model_version: id.into(),
                data_hashes: BTreeMap::new(),
            })
            .unwrap();
    }

    fn served(root: &Path) -> String {
        std::fs::read_to_string(root.join("model_output/model.safetensors")).unwrap()
    }

    #[test]
    fn promote_rollback_and_the_keep_bound() {
        let root = tempfile::tempdir().unwrap();
        let models = Models::open(
            &root.path().join("models"),
            &root.path().join("model_output"),
        )
        .unwrap();
        for (id, f1) in [("r1", 0.8), ("r2", 0.7), ("r3", 0.9), ("r4", 0.6)] {
            version(&models, id, f1);
        }
        models.promote("r1", "first").unwrap();
        models.promote("r3", "better").unwrap();
        assert_eq!(served(root.path()), "r3");
        assert_eq!(models.registry().unwrap().serving.as_deref(), Some("r3"));

        assert_eq!(models.rollback().unwrap(), "r1");
        assert_eq!(served(root.path()), "r1");
        assert_eq!(models.rollback().unwrap(), "r3", "a rollback of a rollback");

        // Four versions, keep two: only never-promoted ones go, the newest never.
        assert_eq!(models.prune(2, "r4").unwrap(), ["r2"]);
        let left: Vec<String> = models.list().unwrap().into_iter().map(|v| v.id).collect();
        assert_eq!(left, ["r1", "r3", "r4"]);
        let err = models.promote("r2", "gone").unwrap_err().to_string();
        assert!(err.contains("no version `r2`"), "{err}");
    }

    #[test]
    fn if_better_promotes_only_a_better_model() {
        assert!(decide(Promote::IfBetter, 0.9, Some(0.8)).0);
        assert!(
            !decide(Promote::IfBetter, 0.8, Some(0.8)).0,
            "a tie keeps the old"
        );
        assert!(!decide(Promote::IfBetter, 0.7, Some(0.8)).0);
        assert!(
            decide(Promote::IfBetter, 0.1, None).0,
            "nothing to compare with"
        );
        assert!(decide(Promote::Always, 0.1, Some(0.9)).0);
        assert!(!decide(Promote::Never, 0.99, None).0);
    }

    /// Two trainers promoting at once: the lock serialises them, so no promotion is lost
    /// from registry.json and the served folder is whole.
    #[test]
    fn concurrent_promotions_lose_nothing() {
        let root = tempfile::tempdir().unwrap();
        let (dir, serve) = (root.path().join("models"), root.path().join("model_output"));
        {
            let models = Models::open(&dir, &serve).unwrap();
            version(&models, "a", 0.5);
            version(&models, "b", 0.5);
        }
        let threads: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|id| {
                let (dir, serve) = (dir.clone(), serve.clone());
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        Models::open(&dir, &serve)
                            .unwrap()
                            .promote(id, "race")
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let models = Models::open(&dir, &serve).unwrap();
        let registry = models.registry().unwrap();
        assert_eq!(registry.promotions.len(), 20);
        let serving = registry.serving.unwrap();
        assert_eq!(
            served(root.path()),
            serving,
            "the served files are the serving version's"
        );
    }
}
