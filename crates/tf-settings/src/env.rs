//! Names of the environment variables this crate reads, and the lookup
//! function over the real process environment.
//!
//! Readers take `&dyn Fn(&str) -> Option<String>` instead of calling
//! [`std::env::var`] directly so tests can feed a map: the process
//! environment is global and shared by concurrently running tests.

/// `1/true/yes/on` enables logging; `0/false/no/off/""` (the default)
/// disables it.
pub const TF_ENABLE_LOG: &str = "TF_ENABLE_LOG";
/// `trace`, `debug`, `info` (default), `warn` or `error`.
pub const TF_LOG_LEVEL: &str = "TF_LOG_LEVEL";
/// File to append log lines to; empty or unset means stdout.
pub const TF_LOG_PATH: &str = "TF_LOG_PATH";
/// Worker address, e.g. `native+192.168.1.100+12345+0`.
pub const TENSOR_FUSION_OPERATOR_CONNECTION_INFO: &str = "TENSOR_FUSION_OPERATOR_CONNECTION_INFO";
/// http:// URL whose answer is a connection info (used in Kubernetes).
pub const TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL: &str =
    "TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL";
/// How many requests the client may batch before flushing (1..=65536,
/// default 100).
pub const TF_MAX_CACHE_REQUEST_COUNT: &str = "TF_MAX_CACHE_REQUEST_COUNT";
/// Total seconds to keep retrying the connection URL (default 300).
pub const TF_CONNECTION_URL_TIMEOUT: &str = "TF_CONNECTION_URL_TIMEOUT";
/// Bearer-token file sent to the connection URL; empty disables the token.
pub const TF_SERVICE_ACCOUNT_TOKEN_PATH: &str = "TF_SERVICE_ACCOUNT_TOKEN_PATH";

/// Lookup over the real process environment.
///
/// A value that is not valid UTF-8 is converted lossily rather than treated
/// as unset, so that validation reports it as a bad value instead of
/// silently falling back to a default.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// Looks `name` up and trims it; an empty (or all-whitespace) value counts as
/// unset. Orchestrators commonly render optional variables as `NAME=""`, and
/// that should mean "use the default", not "invalid".
pub(crate) fn non_empty(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}
