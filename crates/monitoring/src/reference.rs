//! The reference a model ships with: the profile of its calibrated predictions on its own
//! validation split, written by `train` as `drift_reference.json` in the model folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::profile::{Observation, Profile};

/// The reference's file name in a model folder.
pub const REFERENCE_FILE: &str = "drift_reference.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The model's labels, in its order (the profile's label counts follow it).
    pub labels: Vec<String>,
    /// What the profile was made from, e.g. `validation split (2000 rows)`.
    pub source: String,
    pub profile: Profile,
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read the drift reference {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the drift reference {path} is not valid ({source}): retrain to write it again, or delete it to serve without drift scores"
    )]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Reference {
    pub fn new(labels: Vec<String>, source: String, observations: &[Observation]) -> Self {
        let profile = Profile::of(labels.len(), observations);
        Self {
            labels,
            source,
            profile,
        }
    }

    /// The reference in model folder `dir`: `None` when the folder has none (a model from
    /// the Hub, or trained before references existed).
    pub fn load(dir: &Path) -> Result<Option<Self>, ReferenceError> {
        let path = dir.join(REFERENCE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ReferenceError::Read { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| ReferenceError::Parse { path, source })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a reference serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Reference::load(dir.path()).unwrap().is_none());
        let o = Observation {
            label: 1,
            confidence: 0.8,
            tokens: 30,
            unknown: 1,
            over_max_length: false,
        };
        let r = Reference::new(vec!["neg".into(), "pos".into()], "test".into(), &[o]);
        std::fs::write(dir.path().join(REFERENCE_FILE), r.to_json()).unwrap();
        assert_eq!(Reference::load(dir.path()).unwrap(), Some(r));
        std::fs::write(dir.path().join(REFERENCE_FILE), "{").unwrap();
        let e = Reference::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not valid") && e.contains("retrain"), "{e}");
    }
}
