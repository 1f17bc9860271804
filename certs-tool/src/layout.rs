//! How a certificate set (`tls.crt`, `tls.key`, `ca.crt`) sits in a directory, and how to swap
//! it without a watcher ever loading a broken pair.
//!
//! Two layouts:
//!
//! * **flat** — three regular files, each replaced atomically (see [`crate::atomic_write`]).
//!   Three renames cannot be one atomic step, so the ORDER is the contract: `ca.crt` first (a
//!   client that reloads trust has the new CA before any certificate needs it), then `tls.key`,
//!   then `tls.crt` last, as the commit point. A reader that reads in the reverse order —
//!   `tls.crt`, then `tls.key` — and sees the new certificate is guaranteed the new key (or a
//!   newer one if a second rotation is already under way; the key/cert check then fails and the
//!   reader retries). A reader can still see new key + old certificate between the two renames,
//!   so consumers must check the pair and keep the old one on mismatch, as the edge does.
//! * **k8s** — the kubelet atomic-writer layout used for mounted Secrets:
//!   ```text
//!   ..2025_01_31_12_00_00.1a2b3c/{tls.crt,tls.key,ca.crt}   complete, immutable generation
//!   ..data -> ..2025_01_31_12_00_00.1a2b3c                   swapped by ONE rename
//!   tls.crt -> ..data/tls.crt   (tls.key, ca.crt alike)      stable names, never rewritten
//!   ```
//!   The generation directory is complete and fsynced before `..data` flips, so the pair is
//!   truly atomic: every open of `tls.crt`/`tls.key` resolves `..data` at that instant. A reader
//!   that wants a consistent pair reads `..data` before and after reading the files and retries
//!   if it changed ([`read_cert_set`] does this). The previous generation is kept until the next
//!   swap so readers that already resolved `..data` can finish; older ones are removed.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::atomic_write::{
    ensure_dir, random_suffix, replace_symlink, sync_dir, write_atomic, CERT_MODE, DIR_MODE,
    KEY_MODE,
};
use crate::error::{CertsError, Result};

pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CRT: &str = "ca.crt";
/// The symlink the kubelet (and we) flip to publish a new generation.
pub const DATA_LINK: &str = "..data";

/// How many times [`read_cert_set`] re-reads a k8s directory that keeps changing under it.
const READ_ATTEMPTS: usize = 100;

/// The layout asked for on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutChoice {
    /// k8s if the directory already has a `..data` link, flat otherwise.
    #[default]
    Auto,
    /// Three regular files, each replaced atomically.
    Flat,
    /// The kubelet atomic-writer layout (`..data` symlink swap).
    K8s,
}

/// The layout actually written or found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Flat,
    K8s,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Flat => "flat",
            Layout::K8s => "k8s",
        })
    }
}

impl LayoutChoice {
    pub fn resolve(self, dir: &Path) -> Layout {
        match self {
            LayoutChoice::Auto => detect(dir),
            LayoutChoice::Flat => Layout::Flat,
            LayoutChoice::K8s => Layout::K8s,
        }
    }
}

/// k8s when `<dir>/..data` is a symlink, else flat.
pub fn detect(dir: &Path) -> Layout {
    match fs::symlink_metadata(dir.join(DATA_LINK)) {
        Ok(meta) if meta.file_type().is_symlink() => Layout::K8s,
        _ => Layout::Flat,
    }
}

/// The three files of a serving certificate, as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSet {
    /// Leaf first, then the intermediates a client needs (never the root).
    pub tls_crt: Vec<u8>,
    pub tls_key: Vec<u8>,
    /// The CA bundle clients should trust.
    pub ca_crt: Vec<u8>,
}

/// Publishes `set` in `dir` with the given layout (see the module docs for the guarantees).
pub fn write_cert_set(dir: &Path, set: &CertSet, layout: Layout) -> Result<()> {
    ensure_dir(dir)?;
    match layout {
        Layout::Flat => write_flat(dir, set),
        Layout::K8s => write_k8s(dir, set),
    }
}

fn write_flat(dir: &Path, set: &CertSet) -> Result<()> {
    // Order matters; see the module docs: trust first, key next, certificate last.
    write_atomic(&dir.join(CA_CRT), &set.ca_crt, CERT_MODE)?;
    write_atomic(&dir.join(TLS_KEY), &set.tls_key, KEY_MODE)?;
    write_atomic(&dir.join(TLS_CRT), &set.tls_crt, CERT_MODE)?;
    // Switching a k8s directory to flat: the top-level names are files now, so the generation
    // directories and `..data` are dead weight that would make `auto` pick k8s again.
    if detect(dir) == Layout::K8s {
        remove_path(&dir.join(DATA_LINK))?;
        remove_stale_generations(dir, &[])?;
        sync_dir(dir)?;
    }
    Ok(())
}

fn write_k8s(dir: &Path, set: &CertSet) -> Result<()> {
    let previous = fs::read_link(dir.join(DATA_LINK)).ok();
    let (generation, generation_dir) = create_generation_dir(dir)?;
    for (name, bytes, mode) in [
        (CA_CRT, &set.ca_crt, CERT_MODE),
        (TLS_KEY, &set.tls_key, KEY_MODE),
        (TLS_CRT, &set.tls_crt, CERT_MODE),
    ] {
        write_atomic(&generation_dir.join(name), bytes, mode)?;
    }
    sync_dir(&generation_dir)?;

    // The one step readers can observe: `..data` flips from the old generation to the new.
    replace_symlink(&dir.join(DATA_LINK), Path::new(&generation))?;
    sync_dir(dir)?;

    // Stable top-level names; created once (or converted from flat files), then never touched.
    for name in [CA_CRT, TLS_KEY, TLS_CRT] {
        let target = Path::new(DATA_LINK).join(name);
        if fs::read_link(dir.join(name)).ok().as_deref() != Some(target.as_path()) {
            replace_symlink(&dir.join(name), &target)?;
        }
    }
    sync_dir(dir)?;

    let mut keep = vec![PathBuf::from(&generation)];
    keep.extend(previous);
    remove_stale_generations(dir, &keep)
}

/// Makes a fresh `..YYYY_MM_DD_HH_MM_SS.<random>` directory, named like the kubelet's so tools
/// that know that layout recognise it; the random part makes every generation name unique,
/// which is what lets a reader detect a swap by comparing `..data` targets.
fn create_generation_dir(dir: &Path) -> Result<(String, PathBuf)> {
    let now = time::OffsetDateTime::now_utc();
    loop {
        let name = format!(
            "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            random_suffix()?
        );
        let path = dir.join(&name);
        match fs::DirBuilder::new().mode(DIR_MODE).create(&path) {
            Ok(()) => {
                // umask may have narrowed the mode; readers in other uids need to traverse it.
                fs::set_permissions(&path, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(|e| CertsError::write(&path, e))?;
                return Ok((name, path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(CertsError::write(&path, e)),
        }
    }
}

/// Removes generation directories (and crash leftovers of `..data` temp links) not in `keep`.
fn remove_stale_generations(dir: &Path, keep: &[PathBuf]) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| CertsError::read(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CertsError::read(dir, e))?;
        let name = PathBuf::from(entry.file_name());
        let name_str = name.to_string_lossy();
        if !name_str.starts_with("..") || name_str == DATA_LINK || keep.contains(&name) {
            continue;
        }
        let is_generation = entry.file_type().is_ok_and(|t| t.is_dir());
        let is_temp_link = name_str.starts_with("..data_tmp");
        if is_generation || is_temp_link {
            remove_path(&entry.path())?;
        }
    }
    Ok(())
}

fn remove_path(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| CertsError::write(path, e))
}

/// Reads the set in `dir`, consistently where the layout allows it.
///
/// k8s: `..data` is read before and after the files; a change means a swap happened mid-read,
/// so it reads again. Generation names are unique, so an unchanged target proves all three
/// files came from one generation. flat: files are read in the reverse of the write order
/// (`tls.crt`, `tls.key`, `ca.crt`), which is the best a flat directory allows; callers must
/// still check that key and certificate match.
pub fn read_cert_set(dir: &Path) -> Result<CertSet> {
    if detect(dir) == Layout::Flat {
        return read_files(dir);
    }
    let link = dir.join(DATA_LINK);
    for _ in 0..READ_ATTEMPTS {
        let before = fs::read_link(&link).map_err(|e| CertsError::read(&link, e))?;
        let set = read_files(dir);
        let after = fs::read_link(&link).map_err(|e| CertsError::read(&link, e))?;
        if before == after {
            return set;
        }
    }
    Err(CertsError::Usage(format!(
        "{} changed {READ_ATTEMPTS} times while being read; is a rotation loop running?",
        link.display()
    )))
}

fn read_files(dir: &Path) -> Result<CertSet> {
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read(&path).map_err(|e| CertsError::read(&path, e))
    };
    let tls_crt = read(TLS_CRT)?;
    let tls_key = read(TLS_KEY)?;
    let ca_crt = read(CA_CRT)?;
    Ok(CertSet {
        tls_crt,
        tls_key,
        ca_crt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tag: &str) -> CertSet {
        CertSet {
            tls_crt: format!("crt {tag}").into_bytes(),
            tls_key: format!("key {tag}").into_bytes(),
            ca_crt: format!("ca {tag}").into_bytes(),
        }
    }

    fn generations(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_LINK)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn flat_sets_round_trip_with_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_cert_set(dir.path(), &set("a"), Layout::Flat).expect("write");
        assert_eq!(detect(dir.path()), Layout::Flat);
        assert_eq!(read_cert_set(dir.path()).expect("read"), set("a"));
        let mode = |n: &str| {
            fs::metadata(dir.path().join(n))
                .expect("stat")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(TLS_KEY), 0o600);
        assert_eq!(mode(TLS_CRT), 0o644);
        assert_eq!(mode(CA_CRT), 0o644);
    }

    #[test]
    fn k8s_sets_swap_generations_and_keep_one_previous() {
        let dir = tempfile::tempdir().expect("tempdir");
        for tag in ["a", "b", "c"] {
            write_cert_set(dir.path(), &set(tag), Layout::K8s).expect("write");
            assert_eq!(read_cert_set(dir.path()).expect("read"), set(tag));
        }
        assert_eq!(detect(dir.path()), Layout::K8s);
        assert_eq!(
            fs::read_link(dir.path().join(TLS_CRT)).expect("link"),
            Path::new("..data/tls.crt")
        );
        let current = fs::read_link(dir.path().join(DATA_LINK)).expect("..data");
        let gens = generations(dir.path());
        assert_eq!(gens.len(), 2, "current + previous only: {gens:?}");
        assert!(gens.contains(&current.to_string_lossy().into_owned()));
    }

    #[test]
    fn switching_layouts_converts_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_cert_set(dir.path(), &set("flat"), Layout::Flat).expect("flat");
        write_cert_set(dir.path(), &set("k8s"), Layout::K8s).expect("k8s");
        assert_eq!(LayoutChoice::Auto.resolve(dir.path()), Layout::K8s);
        assert_eq!(read_cert_set(dir.path()).expect("read"), set("k8s"));
        write_cert_set(dir.path(), &set("flat2"), Layout::Flat).expect("back to flat");
        assert_eq!(LayoutChoice::Auto.resolve(dir.path()), Layout::Flat);
        assert!(generations(dir.path()).is_empty());
        assert!(!fs::symlink_metadata(dir.path().join(TLS_CRT))
            .expect("stat")
            .file_type()
            .is_symlink());
        assert_eq!(read_cert_set(dir.path()).expect("read"), set("flat2"));
    }
}
