//! Replacing a folder so that readers never see it half written.
//!
//! The new contents are written into a temporary sibling, synced, and swapped in with one
//! `rename`: Linux's `renameat2(RENAME_EXCHANGE)` when the folder exists (elsewhere, two
//! renames, with a moment where the folder is absent but never partial). A folder that is a
//! mount point (a Docker bind mount of `model_output/`) cannot be renamed; there the files are
//! written into a hidden staging folder inside it and renamed over the old ones one by one,
//! `config.json` last, which keeps every file whole. Either way the folder's hidden files
//! (a `.gitkeep`, a user's own dotfiles) stay.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The file renamed last in the one-by-one fallback: loaders read it first.
const LAST_FILE: &str = super::CONFIG_FILE;

/// Writes `target` through `fill` (which receives an empty folder to fill) and swaps it in.
/// On error, `target` is left as it was.
pub fn replace_dir(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::Input(format!("{} is not a folder path", target.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let mount_point = target.is_dir() && is_mount_point(target, &parent);
    let staging_parent = if mount_point {
        target
    } else {
        parent.as_path()
    };
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempdir_in(staging_parent)
        .map_err(|e| Error::io(staging_parent, e))?;
    fill(staging.path())?;
    if !mount_point {
        keep_hidden_files(target, staging.path())?;
    }
    sync_dir_files(staging.path())?;
    // tempfile creates folders 0700; a model folder is read by other users (the api runs as
    // its own user in its own container).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(staging.path(), e))?;
    }

    if mount_point {
        return replace_files(staging.path(), target);
    }
    if !target.exists() {
        return fs::rename(staging.path(), target).map_err(|e| Error::io(target, e));
    }
    match exchange(staging.path(), target) {
        // `staging` now holds the old contents; dropping it deletes them.
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(EBUSY) => replace_files(staging.path(), target),
        Err(_) => {
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            fs::rename(target, &old).map_err(|e| Error::io(target, e))?;
            fs::rename(staging.path(), target).map_err(|e| Error::io(target, e))?;
            let _ = fs::remove_dir_all(&old);
            Ok(())
        }
    }
}

/// Copies the hidden files of `old` (when it exists) into `new` where `new` has none of
/// that name: a whole-folder swap keeps them, as the one-by-one replacement does.
fn keep_hidden_files(old: &Path, new: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(old) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let hidden = name.to_string_lossy().starts_with('.');
        let to = new.join(&name);
        if hidden && entry.path().is_file() && !to.exists() {
            fs::copy(entry.path(), &to).map_err(|e| Error::io(&to, e))?;
        }
    }
    Ok(())
}

/// Writes `path` through `write`, which receives a temporary path in the same folder; the
/// finished file is renamed into place (mode 0644), so readers see the old file or the new
/// one, never a part.
pub fn write_file<E: From<Error>>(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    write(tmp.path())?;
    // tempfile creates 0600; these files are read by other users (e.g. other containers).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(tmp.path(), e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes `value` as pretty JSON to `path` with [`write_file`].
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    write_file(path, |tmp| {
        let mut bytes = serde_json::to_vec_pretty(value).expect("serializable values");
        bytes.push(b'\n');
        fs::write(tmp, bytes).map_err(|e| Error::io(tmp, e))
    })
}

#[cfg(unix)]
const EBUSY: i32 = libc::EBUSY;
#[cfg(not(unix))]
const EBUSY: i32 = -1;

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let b = CString::new(b.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both paths are NUL-terminated and outlive the call; renameat2 only reads them.
    // Through syscall() because older glibc and musl lack the renameat2 wrapper.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no atomic exchange",
    ))
}

#[cfg(unix)]
fn is_mount_point(dir: &Path, parent: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(dir), fs::metadata(parent)) {
        (Ok(d), Ok(p)) => d.dev() != p.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_mount_point(_dir: &Path, _parent: &Path) -> bool {
    false
}

/// Moves every file of `staging` into `target` (same file system), `config.json` last, then
/// removes files of `target` that the new contents do not have.
fn replace_files(staging: &Path, target: &Path) -> Result<()> {
    tracing::warn!(
        target = %target.display(),
        "cannot swap a mount point in one step: replacing its files one by one"
    );
    let inner = if staging.parent() == Some(target) {
        staging.to_path_buf()
    } else {
        let inner = target.join(format!(".staging-{}", std::process::id()));
        fs::rename(staging, &inner).map_err(|e| Error::io(&inner, e))?;
        inner
    };
    let mut names: Vec<_> = fs::read_dir(&inner)
        .map_err(|e| Error::io(&inner, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort_by_key(|n| (n == LAST_FILE, n.clone()));
    for n in &names {
        let dst = target.join(n);
        if dst.is_dir() {
            fs::remove_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
        }
        fs::rename(inner.join(n), &dst).map_err(|e| Error::io(&dst, e))?;
    }
    let _ = fs::remove_dir_all(&inner);
    for entry in fs::read_dir(target)
        .map_err(|e| Error::io(target, e))?
        .flatten()
    {
        let n = entry.file_name();
        if !names.contains(&n) && !n.to_string_lossy().starts_with('.') {
            let p = entry.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
    Ok(())
}

/// Syncs every file of `dir` to disk and makes it world-readable.
fn sync_dir_files(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
        let path = entry.path();
        if path.is_file() {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&path, e))?;
            // Some writers (safetensors) create 0600; the folder is read by other users.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                    .map_err(|e| Error::io(&path, e))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_existing_folder_whole() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("model");
        replace_dir(&target, |d| {
            fs::write(d.join("a"), "1").unwrap();
            fs::write(d.join("old-only"), "x").unwrap();
            Ok(())
        })
        .unwrap();
        replace_dir(&target, |d| {
            fs::write(d.join("a"), "2").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "2");
        assert!(!target.join("old-only").exists());
        // A hidden file placed in the folder (a committed .gitkeep) survives swaps.
        fs::write(target.join(".gitkeep"), "").unwrap();
        replace_dir(&target, |d| {
            fs::write(d.join("a"), "3").unwrap();
            Ok(())
        })
        .unwrap();
        assert!(target.join(".gitkeep").is_file());
        let leftovers: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary folders must be cleaned up");
    }

    #[test]
    fn failed_fill_leaves_target_untouched() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("model");
        replace_dir(&target, |d| {
            fs::write(d.join("a"), "1").unwrap();
            Ok(())
        })
        .unwrap();
        let err = replace_dir(&target, |d| {
            fs::write(d.join("a"), "half").unwrap();
            Err(Error::Input("disk full".into()))
        });
        assert!(err.is_err());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "1");
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn one_by_one_fallback_replaces_every_file() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("model");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("stale.bin"), "old").unwrap();
        fs::write(target.join("config.json"), "old").unwrap();
        let staging = target.join(".model.tmp-x");
        fs::create_dir(&staging).unwrap();
        fs::write(staging.join("config.json"), "new").unwrap();
        fs::write(staging.join("model.safetensors"), "new").unwrap();
        replace_files(&staging, &target).unwrap();
        assert_eq!(
            fs::read_to_string(target.join("config.json")).unwrap(),
            "new"
        );
        assert!(target.join("model.safetensors").exists());
        assert!(!target.join("stale.bin").exists());
        assert!(!staging.exists());
    }
}
