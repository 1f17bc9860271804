//! Crash- and reader-safe file replacement.
//!
//! A file is written to a temporary name in the SAME directory (rename(2) is only atomic within
//! one filesystem), fsynced, given its final mode, then renamed over the target; the directory
//! is fsynced afterwards so the rename itself survives a crash. A reader therefore sees either
//! the whole old file or the whole new one, never a prefix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{CertsError, Result};

/// Mode of private keys: owner read/write only.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and bundles: public material.
pub const CERT_MODE: u32 = 0o644;
/// Mode of directories we create.
pub const DIR_MODE: u32 = 0o755;

/// Name of the lock file certs-tool keeps in each directory it rewrites.
pub const LOCK_FILE: &str = ".certs-tool.lock";

/// Atomically replaces `path` with `contents`, leaving it with exactly `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| CertsError::Usage(format!("{} is not a file path", path.display())))?;
    let tmp = TempPath(dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        random_suffix()?
    )));
    {
        // Create with the final mode (and O_EXCL) so a key is never readable by others, not
        // even for the instant before a chmod; then chmod anyway because umask may have
        // narrowed a certificate's 0644.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp.0)
            .map_err(|e| CertsError::write(&tmp.0, e))?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| CertsError::write(&tmp.0, e))?;
        file.write_all(contents)
            .map_err(|e| CertsError::write(&tmp.0, e))?;
        file.sync_all().map_err(|e| CertsError::write(&tmp.0, e))?;
    }
    fs::rename(&tmp.0, path).map_err(|e| CertsError::write(path, e))?;
    tmp.disarm();
    sync_dir(&dir)
}

/// Atomically points `link` at `target` (a relative target stays relative): a temporary
/// symlink is created beside it and renamed over it, so `link` always resolves to something.
pub fn replace_symlink(link: &Path, target: &Path) -> Result<()> {
    let dir = parent_dir(link);
    let name = link.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = TempPath(dir.join(format!(
        "{}_tmp.{}",
        name.unwrap_or_default(),
        random_suffix()?
    )));
    std::os::unix::fs::symlink(target, &tmp.0).map_err(|e| CertsError::write(&tmp.0, e))?;
    fs::rename(&tmp.0, link).map_err(|e| CertsError::write(link, e))?;
    tmp.disarm();
    Ok(())
}

/// fsyncs a directory so renames and new entries in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CertsError::write(dir, e))
}

/// Creates `dir` (and parents) if missing, with [`DIR_MODE`] for what we create.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| CertsError::write(dir, e))
}

/// An exclusive flock(2) on `<dir>/.certs-tool.lock`, held until dropped, so two certs-tool
/// runs never interleave their writes to one directory (a rotation from cron racing one by
/// hand). Waits for the other run rather than failing: runs take milliseconds.
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        ensure_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(CERT_MODE)
            .open(&path)
            .map_err(|e| CertsError::write(&path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, source)| CertsError::Lock { path, source })?;
        Ok(DirLock { _lock: lock })
    }
}

/// Locks several existing directories in a fixed (sorted, de-duplicated) order so two runs
/// that need the same pair of directories cannot deadlock.
pub fn lock_dirs(dirs: &[&Path]) -> Result<Vec<DirLock>> {
    let mut keys: Vec<PathBuf> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let canonical = fs::canonicalize(dir).map_err(|e| CertsError::read(*dir, e))?;
        if !keys.contains(&canonical) {
            keys.push(canonical);
        }
    }
    keys.sort();
    keys.iter().map(|d| DirLock::acquire(d)).collect()
}

pub(crate) fn random_suffix() -> Result<String> {
    let mut bytes = [0u8; 6];
    boring::rand::rand_bytes(&mut bytes)?;
    Ok(crate::certinfo::hex(&bytes).to_ascii_lowercase())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Removes a temporary file on early return, so a failed write leaves no litter behind.
struct TempPath(PathBuf);

impl TempPath {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn writes_replace_contents_with_exact_modes_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("tls.key");
        let crt = dir.path().join("tls.crt");
        write_atomic(&key, b"one", KEY_MODE).expect("write");
        write_atomic(&key, b"two", KEY_MODE).expect("rewrite");
        write_atomic(&crt, b"cert", CERT_MODE).expect("write");
        assert_eq!(fs::read(&key).expect("read"), b"two");
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&crt), 0o644);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn symlinks_are_replaced_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("..data");
        replace_symlink(&link, Path::new("a")).expect("link");
        replace_symlink(&link, Path::new("b")).expect("relink");
        assert_eq!(fs::read_link(&link).expect("readlink"), Path::new("b"));
    }

    #[test]
    fn a_directory_lock_is_exclusive_between_handles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = DirLock::acquire(dir.path()).expect("lock");
        let file = File::open(dir.path().join(LOCK_FILE)).expect("open");
        assert!(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err());
        drop(held);
        let file = File::open(dir.path().join(LOCK_FILE)).expect("open");
        assert!(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok());
    }
}
