//! Settings shared by the TensorFusion client library and the
//! `tensor-fusion-worker`: everything that is read from the environment.
//!
//! * [`logging`]: `TF_ENABLE_LOG`, `TF_LOG_LEVEL`, `TF_LOG_PATH` and a
//!   once-only [`logging::init`].
//! * [`client`]: which worker the client talks to
//!   (`TENSOR_FUSION_OPERATOR_CONNECTION_INFO` or
//!   `TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL`) and
//!   `TF_MAX_CACHE_REQUEST_COUNT`.
//! * [`connection`]: the `native+HOST+PORT+ID` / `shmem+PATH+SIZE_MB+ID`
//!   connection-info strings ([`ConnectionInfo`]).
//! * [`fetch`]: asks the TensorFusion operator for a connection info over a
//!   minimal HTTP/1.1 GET, with retries until a deadline.
//!
//! Every reader takes an injectable lookup function
//! (`&dyn Fn(&str) -> Option<String>`) so that tests never mutate the process
//! environment, which is shared by all test threads. [`env::process_env`] is
//! the lookup over the real environment.
//!
//! All failures are one [`SettingsError`]; its messages name the variable,
//! the value that was refused and what would be accepted, because the person
//! reading them is usually configuring a pod or a VM, not reading this code.
#![forbid(unsafe_code)]

pub mod client;
pub mod connection;
pub mod env;
mod error;
pub mod fetch;
pub mod logging;

pub use client::{ClientSettings, ConnectionSource};
pub use connection::{shm_file_path, ConnectionInfo, Host};
pub use error::{InfoOrigin, InfoProblem, SettingsError};
pub use fetch::{fetch_connection_info, FetchOptions};
pub use logging::{LogLevel, LogSettings};
