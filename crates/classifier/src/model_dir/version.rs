//! A model folder's version: a short hash of what decides its answers (config.json, the
//! weights, pipeline.json, the tokenizer files), so that replicas serving the same files
//! report the same version and any change of model shows as a new one.

use std::hash::Hasher;
use std::io::Read;
use std::path::Path;

use twox_hash::XxHash3_64;

use super::{CONFIG_FILE, PIPELINE_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILES, WEIGHT_FILES};
use crate::error::{Error, Result};

/// 16 hex digits of XXH3 over the files of `dir` that decide predictions, each with its
/// name (a file that is absent counts as absent).
pub fn content_version(dir: &Path) -> Result<String> {
    let mut hasher = XxHash3_64::default();
    let files = [CONFIG_FILE, PIPELINE_FILE, TOKENIZER_CONFIG_FILE]
        .into_iter()
        .chain(WEIGHT_FILES)
        .chain(TOKENIZER_FILES);
    let mut buf = vec![0u8; 1 << 20];
    for name in files {
        let path = dir.join(name);
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        hasher.write(name.as_bytes());
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.write(&buf[..n]);
        }
    }
    Ok(format!("{:016x}", hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_files_give_the_same_version_and_a_changed_one_another() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [a.path(), b.path()] {
            std::fs::write(dir.join(CONFIG_FILE), "{}").unwrap();
            std::fs::write(dir.join(WEIGHT_FILES[0]), [1u8, 2, 3]).unwrap();
        }
        let v = content_version(a.path()).unwrap();
        assert_eq!(v.len(), 16);
        assert_eq!(v, content_version(b.path()).unwrap());
        std::fs::write(b.path().join(WEIGHT_FILES[0]), [1u8, 2, 4]).unwrap();
        assert_ne!(v, content_version(b.path()).unwrap());
        std::fs::write(b.path().join(WEIGHT_FILES[0]), [1u8, 2, 3]).unwrap();
        std::fs::write(b.path().join(PIPELINE_FILE), "{}").unwrap();
        assert_ne!(v, content_version(b.path()).unwrap());
    }
}
