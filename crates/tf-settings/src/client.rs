//! Settings of the client library (the side inside the VM or container).
//!
//! | variable | default | meaning |
//! |----------|---------|---------|
//! | `TENSOR_FUSION_OPERATOR_CONNECTION_INFO` | – | fixed worker, e.g. `native+192.168.1.100+12345+0` |
//! | `TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL` | – | http:// URL answering a connection info |
//! | `TF_MAX_CACHE_REQUEST_COUNT` | 100 | requests batched before a flush, 1..=65536 |
//! | `TF_CONNECTION_URL_TIMEOUT` | 300 | seconds to keep retrying the URL |
//! | `TF_SERVICE_ACCOUNT_TOKEN_PATH` | Kubernetes token | bearer token for the URL; empty: none |
//! | `TF_ENABLE_LOG`, `TF_LOG_LEVEL`, `TF_LOG_PATH` | | see [`crate::logging`] |
//!
//! One of the first two must be set; if both are, the connection info wins
//! (a fixed address is the more deliberate choice). Empty values count as
//! unset, since orchestrators often render optional variables as `NAME=""`.

use crate::connection::ConnectionInfo;
use crate::env::{
    non_empty, process_env, TENSOR_FUSION_OPERATOR_CONNECTION_INFO,
    TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL, TF_MAX_CACHE_REQUEST_COUNT,
};
use crate::error::{InfoOrigin, SettingsError};
use crate::fetch::{fetch_connection_info, FetchOptions, HttpUrl};
use crate::logging::LogSettings;

/// `TF_MAX_CACHE_REQUEST_COUNT` when unset.
pub const DEFAULT_MAX_CACHE_REQUEST_COUNT: usize = 100;
/// Largest accepted `TF_MAX_CACHE_REQUEST_COUNT`.
pub const MAX_CACHE_REQUEST_COUNT_LIMIT: usize = 65536;

/// How the client finds its worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionSource {
    /// Given directly by `TENSOR_FUSION_OPERATOR_CONNECTION_INFO`.
    Info(ConnectionInfo),
    /// To be fetched from `TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL`
    /// (already checked to be a usable http:// URL).
    Url(String),
}

/// Everything the client library reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub connection: ConnectionSource,
    /// `TF_MAX_CACHE_REQUEST_COUNT`, default 100, 1..=65536.
    pub max_cache_request_count: usize,
    pub log: LogSettings,
    /// How [`ClientSettings::resolve_connection`] fetches a
    /// [`ConnectionSource::Url`].
    pub fetch: FetchOptions,
}

impl ClientSettings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_env_map(&process_env)
    }

    /// Reads through `lookup` (tests pass a map instead of mutating the
    /// process environment). The URL is checked here, not at fetch time, so
    /// an `https://` or malformed URL fails at start-up.
    pub fn from_env_map(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let log = LogSettings::from_env_map(lookup)?;
        let info = non_empty(lookup, TENSOR_FUSION_OPERATOR_CONNECTION_INFO);
        let url = non_empty(lookup, TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL);
        let connection = match (info, url) {
            (Some(info), url) => {
                if url.is_some() {
                    tracing::debug!(
                        "both {TENSOR_FUSION_OPERATOR_CONNECTION_INFO} and \
                         {TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL} are set; using the former"
                    );
                }
                ConnectionSource::Info(ConnectionInfo::parse_from(
                    &info,
                    InfoOrigin::Env(TENSOR_FUSION_OPERATOR_CONNECTION_INFO),
                )?)
            }
            (None, Some(url)) => {
                HttpUrl::parse(&url)?;
                ConnectionSource::Url(url)
            }
            (None, None) => return Err(SettingsError::NoWorkerConfigured),
        };
        let max_cache_request_count = match non_empty(lookup, TF_MAX_CACHE_REQUEST_COUNT) {
            None => DEFAULT_MAX_CACHE_REQUEST_COUNT,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_CACHE_REQUEST_COUNT_LIMIT).contains(n))
                .ok_or(SettingsError::InvalidValue {
                    var: TF_MAX_CACHE_REQUEST_COUNT,
                    value: v,
                    expected: "an integer in 1..=65536 (default 100)",
                })?,
        };
        let fetch = FetchOptions::from_env_map(lookup)?;
        Ok(ClientSettings {
            connection,
            max_cache_request_count,
            log,
            fetch,
        })
    }

    /// The worker to connect to: the configured info, or the URL's answer
    /// (blocking, with retries up to `fetch.total_timeout`).
    pub fn resolve_connection(&self) -> Result<ConnectionInfo, SettingsError> {
        match &self.connection {
            ConnectionSource::Info(info) => Ok(info.clone()),
            ConnectionSource::Url(url) => fetch_connection_info(url, &self.fetch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Host;
    use crate::env::{TF_CONNECTION_URL_TIMEOUT, TF_ENABLE_LOG};
    use std::collections::HashMap;
    use std::time::Duration;

    fn read(vars: &[(&str, &str)]) -> Result<ClientSettings, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ClientSettings::from_env_map(&|k| map.get(k).cloned())
    }

    const INFO: &str = TENSOR_FUSION_OPERATOR_CONNECTION_INFO;
    const URL: &str = TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL;

    #[test]
    fn nothing_configured_is_the_documented_error() {
        let err = read(&[]).unwrap_err();
        assert!(matches!(err, SettingsError::NoWorkerConfigured));
        assert_eq!(
            err.to_string(),
            "no worker configured: set TENSOR_FUSION_OPERATOR_CONNECTION_INFO \
             (e.g. native+192.168.1.100+12345+0) or TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL"
        );
        // Empty values count as unset.
        assert!(matches!(
            read(&[(INFO, ""), (URL, " ")]),
            Err(SettingsError::NoWorkerConfigured)
        ));
    }

    #[test]
    fn info_with_defaults() {
        let s = read(&[(INFO, "native+192.168.1.100+12345+0\n")]).unwrap();
        assert_eq!(
            s.connection,
            ConnectionSource::Info(ConnectionInfo::Native {
                host: Host::V4([192, 168, 1, 100].into()),
                port: 12345,
                id: "0".into()
            })
        );
        assert_eq!(s.max_cache_request_count, 100);
        assert_eq!(s.log, LogSettings::default());
        assert_eq!(s.fetch, FetchOptions::default());
        assert_eq!(
            s.resolve_connection().unwrap().to_string(),
            "native+192.168.1.100+12345+0"
        );
    }

    #[test]
    fn info_wins_over_url() {
        let s = read(&[(INFO, "shmem+/x+1+0"), (URL, "http://op/conn")]).unwrap();
        assert!(matches!(s.connection, ConnectionSource::Info(_)));
        // Even a URL that would be refused is ignored then.
        assert!(read(&[(INFO, "shmem+/x+1+0"), (URL, "https://op/")]).is_ok());
    }

    #[test]
    fn url_is_checked_up_front() {
        let s = read(&[(URL, " http://op.tf:8080/conn ")]).unwrap();
        assert_eq!(
            s.connection,
            ConnectionSource::Url("http://op.tf:8080/conn".into())
        );
        assert!(matches!(
            read(&[(URL, "https://op/")]),
            Err(SettingsError::HttpsNotSupported { .. })
        ));
        assert!(matches!(
            read(&[(URL, "op/")]),
            Err(SettingsError::BadUrl { .. })
        ));
    }

    #[test]
    fn bad_info_names_the_variable() {
        let msg = read(&[(INFO, "native+h+0+0")]).unwrap_err().to_string();
        assert!(
            msg.contains("TENSOR_FUSION_OPERATOR_CONNECTION_INFO=\"native+h+0+0\""),
            "{msg}"
        );
    }

    #[test]
    fn max_cache_request_count_range() {
        let with = |v: &str| read(&[(INFO, "native+h+1+0"), (TF_MAX_CACHE_REQUEST_COUNT, v)]);
        assert_eq!(with("1").unwrap().max_cache_request_count, 1);
        assert_eq!(with("65536").unwrap().max_cache_request_count, 65536);
        assert_eq!(with("").unwrap().max_cache_request_count, 100);
        for bad in ["0", "65537", "-1", "ten", "1e3"] {
            let err = with(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "invalid TF_MAX_CACHE_REQUEST_COUNT=\"{bad}\": \
                     expected an integer in 1..=65536 (default 100)"
                )
            );
        }
    }

    #[test]
    fn log_and_fetch_settings_are_read_too() {
        let s = read(&[
            (INFO, "native+h+1+0"),
            (TF_ENABLE_LOG, "yes"),
            (TF_CONNECTION_URL_TIMEOUT, "2"),
        ])
        .unwrap();
        assert!(s.log.enabled);
        assert_eq!(s.fetch.total_timeout, Duration::from_secs(2));
        assert!(read(&[(INFO, "native+h+1+0"), (TF_ENABLE_LOG, "2")]).is_err());
    }
}
