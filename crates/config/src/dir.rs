//! Reading a ConfigMap mounted as a directory.
//!
//! The kubelet writes the data into a hidden timestamped directory (`..2024_01_01_...`), points
//! the hidden symlink `..data` at it, and makes each key a visible symlink through `..data`.
//! Updates swap `..data` atomically. So: visible names are followed, hidden names are skipped.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};
use tracing::debug;

use crate::error::ConfigError;

/// The largest file accepted, per key. A ConfigMap holds at most 1 MiB in all.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The ConfigMap's data as read from its directory, with a version that changes when it does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFiles {
    files: BTreeMap<String, String>,
    version: String,
}

impl ConfigFiles {
    /// Wraps key-value data and computes its version.
    pub fn new(files: BTreeMap<String, String>) -> ConfigFiles {
        let version = version_of(&files);
        ConfigFiles { files, version }
    }

    /// Key to value.
    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// Hex SHA-256 over `name \0 content \0` of every file in name order, or `""` when there are
    /// no files. Equal data gives equal versions.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The data, key to value.
    pub fn into_files(self) -> BTreeMap<String, String> {
        self.files
    }
}

fn version_of(files: &BTreeMap<String, String>) -> String {
    if files.is_empty() {
        return String::new();
    }
    let mut hash = Sha256::new();
    for (name, content) in files {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(content.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a mounted ConfigMap: every regular file directly in `dir` whose name does not start with
/// `.`, following symlinks, is a key whose value is the file's content.
///
/// A missing `dir` is an empty ConfigMap (the mount is optional), and so is a key whose symlink
/// dangles (the kubelet is removing it). Sub-directories and other non-files are skipped. A file
/// that is not UTF-8 or is larger than [`MAX_FILE_BYTES`] fails the whole read, as does `dir`
/// being something other than a directory.
pub fn read_dir(dir: &Path) -> Result<ConfigFiles, ConfigError> {
    let io_err = |path: &Path, error| ConfigError::Io {
        path: path.to_owned(),
        error,
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(ConfigError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ConfigFiles::default()),
        Err(e) => return Err(io_err(dir, e)),
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // Removed between the two calls.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ConfigFiles::default()),
        Err(e) => return Err(io_err(dir, e)),
    };

    let mut files = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            // ConfigMap keys are ASCII, so this is not one.
            debug!(path = %path.display(), "skipping file with a non-UTF-8 name");
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                debug!(path = %path.display(), "skipping non-file in ConfigMap directory");
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                debug!(path = %path.display(), "skipping vanished ConfigMap key");
                continue;
            }
            Err(e) => return Err(io_err(&path, e)),
        }
        let Some(bytes) = read_bounded(&path, &name)? else {
            debug!(path = %path.display(), "skipping vanished ConfigMap key");
            continue;
        };
        let content =
            String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 { file: name.clone() })?;
        files.insert(name, content);
    }
    Ok(ConfigFiles::new(files))
}

/// Reads at most [`MAX_FILE_BYTES`] of `path`; `None` when it does not exist.
pub(crate) fn read_bounded(path: &Path, name: &str) -> Result<Option<Vec<u8>>, ConfigError> {
    let io_err = |error| ConfigError::Io {
        path: path.to_owned(),
        error,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut bytes = Vec::new();
    // One byte over the limit tells a file at the limit from a larger one.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ConfigError::FileTooLarge {
            file: name.to_owned(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_stable_for_the_same_content_and_changes_with_it() {
        let data = |pairs: &[(&str, &str)]| {
            ConfigFiles::new(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        let a = data(&[("a", "1"), ("b", "2")]);
        assert_eq!(a.version(), data(&[("b", "2"), ("a", "1")]).version());
        assert_eq!(a.version().len(), 64);
        assert!(a.version().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a.version(), data(&[("a", "1"), ("b", "3")]).version());
        // The separators keep a key's end from running into its value.
        assert_ne!(
            data(&[("ab", "c")]).version(),
            data(&[("a", "bc")]).version()
        );
        assert_eq!(data(&[]).version(), "");
    }
}
