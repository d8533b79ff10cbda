//! Errors. Every message is complete on its own (no variant chains a `source`), so logging an
//! error with `%` shows all of it and `{:#}` chains do not repeat it.

use std::io;
use std::path::PathBuf;

use crate::config::MAX_UPSTREAM_NAMESERVERS;

/// Why a nameserver string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid nameserver {value:?}: {reason}")]
pub struct NameserverError {
    /// The text as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Why the configuration could not be read, or was read but is not valid.
///
/// A key that fails makes the whole configuration invalid; the error names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The ConfigMap path exists but is not a directory.
    #[error("{}: not a directory", .path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// Reading a file or directory failed.
    #[error("reading {}: {error}", .path.display())]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },
    /// A key's content is not UTF-8.
    #[error("{file}: content is not UTF-8")]
    NotUtf8 {
        /// The file (key) name.
        file: String,
    },
    /// A file is larger than [`MAX_FILE_BYTES`](crate::MAX_FILE_BYTES).
    #[error("{file}: larger than the limit of {limit} bytes")]
    FileTooLarge {
        /// The file name.
        file: String,
        /// The limit it exceeds.
        limit: u64,
    },
    /// A JSON key does not hold JSON of the expected shape.
    #[error("{key}: invalid JSON: {error}")]
    InvalidJson {
        /// The ConfigMap key.
        key: &'static str,
        /// What the JSON parser said.
        error: serde_json::Error,
    },
    /// `upstreamNameservers` lists more than [`MAX_UPSTREAM_NAMESERVERS`] servers.
    #[error(
        "upstreamNameservers: {count} nameservers given, at most {MAX_UPSTREAM_NAMESERVERS} allowed"
    )]
    TooManyUpstreams {
        /// How many were given.
        count: usize,
    },
    /// A nameserver is not in an accepted form.
    #[error("{key}: invalid nameserver {value:?}: {reason}")]
    InvalidNameserver {
        /// The ConfigMap key.
        key: &'static str,
        /// The nameserver as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A domain is not a DNS-1123 subdomain.
    #[error("{key}: invalid domain {value:?}: {reason}")]
    InvalidDomain {
        /// The ConfigMap key.
        key: &'static str,
        /// The domain as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries name the same domain (for example `a.local` and `a.local.`).
    #[error("{key}: domain {value:?} given more than once")]
    DuplicateDomain {
        /// The ConfigMap key.
        key: &'static str,
        /// The domain, normalized.
        value: String,
    },
    /// A `federations` entry is not `name=domain` with a valid name and domain.
    #[error("federations: invalid entry {value:?}: {reason}")]
    InvalidFederation {
        /// The entry as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ConfigError {
    pub(crate) fn nameserver(key: &'static str, error: NameserverError) -> Self {
        ConfigError::InvalidNameserver {
            key,
            value: error.value,
            reason: error.reason,
        }
    }
}
