//! The app's files, read once at start-up and served from memory.
//!
//! Every file but `index.html` is served under a name carrying a hash of its content
//! (`app.js` → `/assets/app.3f2a9c0d1e4b5a6f.js`), so browsers and caches may keep it for a
//! year: a changed file gets a new URL. `index.html` has its `/assets/<name>` references
//! rewritten to those names and is revalidated on every load (its ETag makes that a 304).
//! Holding the bytes in memory means the content always matches the hash in its URL, even
//! if the files on disk change while the service runs (a restart picks changes up).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use http::HeaderValue;
use sha2::{Digest, Sha256};

/// The prefix of every fingerprinted URL, and of the references rewritten in `index.html`.
pub const URL_PREFIX: &str = "/assets/";
const INDEX: &str = "index.html";
/// Hex digits of the SHA-256 kept in names and ETags (64 bits: collisions are not a concern
/// for one app's handful of files).
const HASH_HEX_DIGITS: usize = 16;
/// Larger files are refused at start-up: this service holds every asset in memory.
pub const MAX_ASSET_BYTES: u64 = 8 * 1024 * 1024;

/// One servable file.
#[derive(Debug, Clone)]
pub struct Asset {
    pub body: Bytes,
    pub content_type: &'static str,
    /// A strong validator: the quoted content hash.
    pub etag: HeaderValue,
}

/// The index page and the fingerprinted assets.
#[derive(Debug)]
pub struct AssetCatalog {
    index: Asset,
    /// Fingerprinted path below `/assets/` (`app.3f2a….js`) → the asset.
    by_path: HashMap<String, Asset>,
    /// File name relative to the assets directory (`app.js`) → its fingerprinted path.
    names: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir} has no index.html (the app's page); is --assets-dir right?")]
    NoIndex { dir: PathBuf },
    #[error(
        "{path}: no content type is known for this file extension (known: {known}); \
         rename the file or remove it from the assets directory"
    )]
    UnknownType { path: PathBuf, known: String },
    #[error("{path}: {size} bytes, over the {MAX_ASSET_BYTES}-byte limit for one asset")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path}: file names must be UTF-8 made of letters, digits, '.', '-' and '_'")]
    BadName { path: PathBuf },
    #[error("index.html references {URL_PREFIX}{name}, which is not a file in {dir}")]
    UnknownReference { name: String, dir: PathBuf },
}

/// Media types by file extension. Text types name their charset so nothing is sniffed;
/// JavaScript is `text/javascript` (RFC 9239).
const CONTENT_TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("webmanifest", "application/manifest+json"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("webp", "image/webp"),
    ("ico", "image/x-icon"),
    ("woff2", "font/woff2"),
    ("txt", "text/plain; charset=utf-8"),
];

pub fn content_type_for(name: &str) -> Option<&'static str> {
    let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
    CONTENT_TYPES
        .iter()
        .find(|(ext, _)| *ext == extension)
        .map(|(_, media)| *media)
}

fn content_hash(body: &[u8]) -> String {
    let mut digest = hex::encode(Sha256::digest(body));
    digest.truncate(HASH_HEX_DIGITS);
    digest
}

fn etag(hash: &str) -> HeaderValue {
    // Hex digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"{hash}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// `img/logo.svg` + hash → `img/logo.<hash>.svg`.
fn fingerprinted(name: &str, hash: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
        None => format!("{name}.{hash}"),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

impl AssetCatalog {
    /// Reads `dir` (recursively; dot-files are skipped), fingerprints every asset and
    /// rewrites the references of `index.html`. Every problem names the file.
    pub fn load(dir: &Path) -> Result<Self, AssetError> {
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files)?;
        let mut index_html = None;
        let mut by_path = HashMap::new();
        let mut names = BTreeMap::new();
        for (name, path) in files {
            let content_type = content_type_for(&name).ok_or_else(|| AssetError::UnknownType {
                path: path.clone(),
                known: CONTENT_TYPES
                    .iter()
                    .map(|(ext, _)| format!(".{ext}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            })?;
            let body = read_bounded(&path)?;
            if name == INDEX {
                index_html = Some((body, path));
                continue;
            }
            let hash = content_hash(&body);
            let url_path = fingerprinted(&name, &hash);
            names.insert(name, url_path.clone());
            by_path.insert(
                url_path,
                Asset {
                    body: Bytes::from(body),
                    content_type,
                    etag: etag(&hash),
                },
            );
        }
        let (index_bytes, index_path) = index_html.ok_or_else(|| AssetError::NoIndex {
            dir: dir.to_path_buf(),
        })?;
        let html = String::from_utf8(index_bytes).map_err(|err| AssetError::Read {
            path: index_path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, err),
        })?;
        let html = rewrite_references(&html, &names, dir)?;
        let index = Asset {
            etag: etag(&content_hash(html.as_bytes())),
            body: Bytes::from(html),
            content_type: "text/html; charset=utf-8",
        };
        Ok(Self {
            index,
            by_path,
            names,
        })
    }

    pub fn index(&self) -> &Asset {
        &self.index
    }

    /// The asset at `path` below `/assets/` (a fingerprinted name), if there is one.
    pub fn asset(&self, path: &str) -> Option<&Asset> {
        self.by_path.get(path)
    }

    /// `app.js` → `app.<hash>.js`, for logs and tests.
    pub fn names(&self) -> &BTreeMap<String, String> {
        &self.names
    }

    /// Bytes held: the index page and every asset.
    pub fn total_bytes(&self) -> usize {
        self.index.body.len() + self.by_path.values().map(|a| a.body.len()).sum::<usize>()
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, AssetError> {
    let read_error = |source| AssetError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_ASSET_BYTES {
        return Err(AssetError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    std::fs::read(path).map_err(read_error)
}

/// Every regular file below `dir` as (name relative to `root` with `/` separators, path).
fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), AssetError> {
    let read_error = |source| AssetError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            return Err(AssetError::BadName { path });
        };
        // Editor swap files, .DS_Store, .gitkeep: never part of the app.
        if file_name.starts_with('.') {
            continue;
        }
        if !file_name.chars().all(is_name_char) {
            return Err(AssetError::BadName { path });
        }
        // Follows symlinks, so a directory assembled from links works.
        let metadata = std::fs::metadata(&path).map_err(|source| AssetError::Read {
            path: path.clone(),
            source,
        })?;
        if metadata.is_dir() {
            collect_files(root, &path, out)?;
        } else if metadata.is_file() {
            let relative = path
                .strip_prefix(root)
                .ok()
                .and_then(Path::to_str)
                .ok_or_else(|| AssetError::BadName { path: path.clone() })?
                .replace(std::path::MAIN_SEPARATOR, "/");
            out.push((relative, path));
        }
    }
    Ok(())
}

/// Replaces every `/assets/<name>` in `html` by `/assets/<fingerprinted name>`; a reference
/// to a file that does not exist is an error (a typo would otherwise ship a broken page).
fn rewrite_references(
    html: &str,
    names: &BTreeMap<String, String>,
    dir: &Path,
) -> Result<String, AssetError> {
    let mut out = String::with_capacity(html.len() + names.len() * (HASH_HEX_DIGITS + 1));
    let mut rest = html;
    while let Some(at) = rest.find(URL_PREFIX) {
        let (before, after) = rest.split_at(at + URL_PREFIX.len());
        out.push_str(before);
        let end = after
            .find(|c: char| !(is_name_char(c) || c == '/'))
            .unwrap_or(after.len());
        let name = &after[..end];
        if name.is_empty() {
            // The bare prefix (in prose, say) names no file.
            rest = after;
            continue;
        }
        let target = names
            .get(name)
            .ok_or_else(|| AssetError::UnknownReference {
                name: name.to_string(),
                dir: dir.to_path_buf(),
            })?;
        out.push_str(target);
        rest = &after[end..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, body).expect("write");
    }

    fn app(index: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        write(dir.path(), "index.html", index);
        write(dir.path(), "app.js", "console.log(1);");
        write(dir.path(), "app.css", "body{}");
        write(dir.path(), "img/logo.svg", "<svg/>");
        dir
    }

    #[test]
    fn assets_get_content_hashed_names_and_the_index_points_at_them() {
        let dir = app(
            r#"<link href="/assets/app.css"><script src="/assets/app.js"></script><img src="/assets/img/logo.svg">"#,
        );
        let catalog = AssetCatalog::load(dir.path()).expect("load");
        let js = catalog.names()["app.js"].clone();
        assert_eq!(js, format!("app.{}.js", content_hash(b"console.log(1);")));
        let logo = &catalog.names()["img/logo.svg"];
        assert!(
            logo.starts_with("img/logo.") && logo.ends_with(".svg"),
            "{logo}"
        );
        let html = std::str::from_utf8(&catalog.index().body).expect("utf8");
        assert_eq!(
            html,
            format!(
                r#"<link href="/assets/{}"><script src="/assets/{js}"></script><img src="/assets/{logo}">"#,
                catalog.names()["app.css"]
            )
        );
        let asset = catalog
            .asset(&js)
            .expect("served by its fingerprinted name");
        assert_eq!(asset.content_type, "text/javascript; charset=utf-8");
        assert!(catalog.asset("app.js").is_none(), "not by its plain name");
    }

    #[test]
    fn a_changed_file_gets_a_new_name_and_the_index_a_new_etag() {
        let dir = app(r#"<script src="/assets/app.js"></script>"#);
        let before = AssetCatalog::load(dir.path()).expect("load");
        write(dir.path(), "app.js", "console.log(2);");
        let after = AssetCatalog::load(dir.path()).expect("load");
        assert_ne!(before.names()["app.js"], after.names()["app.js"]);
        assert_eq!(before.names()["app.css"], after.names()["app.css"]);
        assert_ne!(before.index().etag, after.index().etag);
    }

    #[test]
    fn a_reference_to_a_missing_file_is_a_start_up_error_naming_it() {
        let dir = app(r#"<script src="/assets/ap.js"></script>"#);
        let err = AssetCatalog::load(dir.path()).expect_err("typo");
        assert!(
            err.to_string()
                .starts_with("index.html references /assets/ap.js"),
            "{err}"
        );
    }

    #[test]
    fn unknown_extensions_and_a_missing_index_are_refused() {
        let dir = app("");
        write(dir.path(), "notes.md", "# hi");
        let err = AssetCatalog::load(dir.path()).expect_err("md");
        assert!(err.to_string().contains("notes.md"), "{err}");

        let empty = tempfile::tempdir().expect("dir");
        write(empty.path(), "app.js", "");
        let err = AssetCatalog::load(empty.path()).expect_err("no index");
        assert!(err.to_string().contains("no index.html"), "{err}");
    }

    #[test]
    fn dot_files_are_skipped() {
        let dir = app("");
        write(dir.path(), ".app.js.swp", "junk");
        let catalog = AssetCatalog::load(dir.path()).expect("load");
        assert_eq!(catalog.names().len(), 3, "{:?}", catalog.names());
    }

    #[test]
    fn content_types_cover_the_app() {
        assert_eq!(content_type_for("a.HTML"), Some("text/html; charset=utf-8"));
        assert_eq!(content_type_for("a.svg"), Some("image/svg+xml"));
        assert_eq!(content_type_for("a.css"), Some("text/css; charset=utf-8"));
        assert_eq!(content_type_for("Makefile"), None);
    }
}
