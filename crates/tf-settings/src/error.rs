//! The one error type of this crate.
//!
//! Messages are written for the person configuring a pod or VM: each names
//! the variable (or URL), the value that was refused and what is accepted.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::env::TENSOR_FUSION_OPERATOR_CONNECTION_INFO;

/// Longest excerpt of a foreign value (HTTP body, connection info) quoted in
/// an error: enough to recognise it, short enough to keep a log line a line.
const QUOTE_LIMIT: usize = 200;

/// Everything that can go wrong while reading settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A boolean variable such as `TF_ENABLE_LOG` has an unknown spelling.
    #[error(
        "invalid {var}={value:?}: expected 1, true, yes or on to enable, \
         or 0, false, no, off or an empty value to disable"
    )]
    InvalidBool { var: &'static str, value: String },

    /// `TF_LOG_LEVEL` is not a level name.
    #[error(
        "invalid {var}={value:?}: expected one of trace, debug, info, warn, error \
         (case-insensitive); leave it unset for info"
    )]
    InvalidLogLevel { var: &'static str, value: String },

    /// `TF_LOG_PATH` cannot be opened for appending.
    #[error(
        "cannot open {var}={path:?} for appending: {source}; point {var} at a writable \
         file or leave it empty to log to stdout"
    )]
    LogFile {
        var: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A numeric variable is not a number or is out of range.
    #[error("invalid {var}={value:?}: expected {expected}")]
    InvalidValue {
        var: &'static str,
        value: String,
        expected: &'static str,
    },

    /// Neither way of finding a worker is configured.
    #[error(
        "no worker configured: set TENSOR_FUSION_OPERATOR_CONNECTION_INFO \
         (e.g. native+192.168.1.100+12345+0) or TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL"
    )]
    NoWorkerConfigured,

    /// A connection-info string is malformed.
    #[error(
        "{problem} in {}; expected native+HOST+PORT+ID or shmem+PATH+SIZE_MB+ID",
        .origin.describe(.value)
    )]
    BadConnectionInfo {
        /// Where the string came from (env variable or URL).
        origin: InfoOrigin,
        /// The whole string as received.
        value: String,
        problem: InfoProblem,
    },

    /// The connection URL is `https://`; this client has no TLS stack (it
    /// must stay small and dependency-free inside the application process).
    #[error(
        "TLS is not supported by this client: {var}={url:?} is an https URL; \
         use the operator's plain http:// endpoint (e.g. its in-cluster service)"
    )]
    HttpsNotSupported { var: &'static str, url: String },

    /// The connection URL cannot be parsed.
    #[error("invalid {var}={url:?}: {reason}; expected http://HOST[:PORT][/PATH]")]
    BadUrl {
        var: &'static str,
        url: String,
        reason: String,
    },

    /// The operator answered with a status that retrying will not fix.
    #[error("GET {url} answered {status} {reason}{hint}; body: {:?}", quote(.body))]
    HttpStatus {
        url: String,
        status: u16,
        reason: String,
        body: String,
        /// What to check, e.g. the token for 401/403 (starts with "; ").
        hint: String,
    },

    /// The peer did not speak HTTP/1.x as expected.
    #[error(
        "GET {url}: malformed HTTP answer: {reason}; does \
         TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL point at the TensorFusion operator?"
    )]
    BadHttpResponse { url: String, reason: String },

    /// The service-account token file exists but cannot be used.
    #[error(
        "cannot use the service-account token {path:?}: {reason}; fix the file or set \
         {var} to another file (an empty value sends no token)"
    )]
    TokenFile {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },

    /// Retryable failures went on until the total deadline.
    #[error(
        "gave up after {attempts} attempts in {:.1}s: last answer from GET {url}: {last}; \
         check that the TensorFusion operator is reachable, or raise {var} (now {}s) to wait longer",
        .elapsed.as_secs_f64(),
        .timeout.as_secs_f64()
    )]
    GaveUp {
        var: &'static str,
        url: String,
        attempts: u32,
        elapsed: Duration,
        timeout: Duration,
        /// The last failure: an HTTP status line or an I/O error.
        last: String,
    },
}

/// Where a connection-info string came from, to name it in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoOrigin {
    /// An environment variable.
    Env(&'static str),
    /// The body of an answer from this URL.
    Url(String),
}

impl Default for InfoOrigin {
    /// `FromStr` has no context; the environment variable is by far the
    /// most common source, so errors name it.
    fn default() -> Self {
        InfoOrigin::Env(TENSOR_FUSION_OPERATOR_CONNECTION_INFO)
    }
}

impl InfoOrigin {
    /// `VAR="value"` or `the answer "value" from GET url`.
    pub fn describe(&self, value: &str) -> String {
        match self {
            InfoOrigin::Env(var) => format!("{var}={:?}", quote(value)),
            InfoOrigin::Url(url) => format!("the answer {:?} from GET {url}", quote(value)),
        }
    }
}

/// What exactly is wrong with a connection-info string.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InfoProblem {
    /// Nothing but whitespace.
    Empty,
    /// The first field is neither `native` nor `shmem`.
    UnknownProtocol(String),
    /// Fewer than the 4 `+`-separated fields.
    MissingFields {
        protocol: &'static str,
        found: usize,
    },
    /// HOST is not a hostname, IPv4 or IPv6 address.
    BadHost { host: String, why: &'static str },
    /// PORT is not in 1..=65535.
    BadPort(String),
    /// PATH is not an absolute path.
    BadPath { path: String, why: &'static str },
    /// SIZE_MB is not a whole number >= 1.
    BadSize(String),
    /// The ID field is empty.
    EmptyId,
    /// The ID field contains a control character (usually a multi-line
    /// answer from the URL).
    ControlInId,
}

impl fmt::Display for InfoProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoProblem::Empty => f.write_str("empty connection info"),
            InfoProblem::UnknownProtocol(p) => write!(f, "unknown protocol {:?}", quote(p)),
            InfoProblem::MissingFields { protocol, found } => {
                let form = if *protocol == "shmem" {
                    "shmem+PATH+SIZE_MB+ID"
                } else {
                    "native+HOST+PORT+ID"
                };
                write!(
                    f,
                    "missing fields: {protocol} needs 4 '+'-separated fields ({form}), found {found}"
                )
            }
            InfoProblem::BadHost { host, why } => {
                write!(f, "bad host {:?} ({why})", quote(host))
            }
            InfoProblem::BadPort(p) => {
                write!(
                    f,
                    "bad port {:?} (expected an integer in 1..=65535)",
                    quote(p)
                )
            }
            InfoProblem::BadPath { path, why } => {
                write!(f, "bad shared-memory path {:?} ({why})", quote(path))
            }
            InfoProblem::BadSize(s) => write!(
                f,
                "bad size {:?} (expected SIZE_MB as a whole number of MiB, at least 1)",
                quote(s)
            ),
            InfoProblem::EmptyId => {
                f.write_str("empty connection id (the last field; the deployment guide uses 0)")
            }
            InfoProblem::ControlInId => {
                f.write_str("the connection id contains a control character (more than one line?)")
            }
        }
    }
}

/// At most [`QUOTE_LIMIT`] characters of `s`, with a marker when cut.
pub(crate) fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LIMIT) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}...", &s[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_cuts_long_values_on_char_boundaries() {
        assert_eq!(quote("short"), "short");
        let long = "é".repeat(QUOTE_LIMIT + 10);
        let q = quote(&long);
        assert!(q.ends_with("..."));
        assert_eq!(q.chars().count(), QUOTE_LIMIT + 3);
    }

    #[test]
    fn no_worker_message_is_exact() {
        assert_eq!(
            SettingsError::NoWorkerConfigured.to_string(),
            "no worker configured: set TENSOR_FUSION_OPERATOR_CONNECTION_INFO \
             (e.g. native+192.168.1.100+12345+0) or TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL"
        );
    }
}
