//! The one place where client-side failures become CUDA and NVML status
//! codes. Worker statuses pass through untouched; only failures that happen
//! in the client (settings, connection, protocol) are mapped here.

use tf_protocol::status::{cu, nvml};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Settings(#[from] tf_settings::SettingsError),
    #[error("{0}")]
    Connect(tf_transport::TransportError),
    #[error("lost the connection to the worker: {0}")]
    Lost(String),
    #[error("the worker refused the handshake: status {0}")]
    Handshake(u32),
    #[error("this process was forked after CUDA was initialized; CUDA cannot be used in the child (as with a local GPU)")]
    Forked,
}

impl ClientError {
    /// The `CUresult` an application sees.
    pub fn cuda(&self) -> u32 {
        match self {
            ClientError::Settings(_) => cu::NOT_INITIALIZED,
            ClientError::Connect(_) | ClientError::Lost(_) | ClientError::Handshake(_) => {
                cu::DEVICE_UNAVAILABLE
            }
            ClientError::Forked => cu::NOT_INITIALIZED,
        }
    }

    /// The `nvmlReturn_t` an application sees.
    pub fn nvml(&self) -> u32 {
        match self {
            ClientError::Settings(_) | ClientError::Forked => nvml::UNINITIALIZED,
            ClientError::Connect(_) | ClientError::Handshake(_) => nvml::DRIVER_NOT_LOADED,
            ClientError::Lost(_) => nvml::GPU_IS_LOST,
        }
    }
}
