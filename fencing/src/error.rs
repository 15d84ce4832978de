//! What a device operation can come to, with cluster-glue's exit codes of `stonith`.

use std::path::PathBuf;
use std::time::Duration;

/// cluster-glue's exit codes of `stonith`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Bad configuration.
    pub const BAD_CONFIG: u8 = 1;
    /// Permission denied.
    pub const ACCESS: u8 = 2;
    /// Invalid argument.
    pub const INVALID: u8 = 3;
    /// Host unknown to the device.
    pub const BAD_HOST: u8 = 4;
    /// The reset failed.
    pub const RESET_FAILED: u8 = 5;
    /// Timed out.
    pub const TIMEOUT: u8 = 6;
    /// The host is off.
    pub const IS_OFF: u8 = 7;
    /// Anything else.
    pub const OOPS: u8 = 8;
}

/// Errors of a device operation, each with its glue exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// Unknown type.
    #[error("unknown stonith device type {0:?} (stonith -L lists them)")]
    UnknownType(String),
    /// A plugin that others could have changed.
    #[error("{0}: refused: writable by group or others (chmod go-w)")]
    Insecure(PathBuf),
    /// Bad parameters.
    #[error("{0}")]
    Config(String),
    /// The device cannot fence this host.
    #[error("{host}: not a host of this device (it controls: {hosts})")]
    BadHost {
        /// Target.
        host: String,
        /// What it controls.
        hosts: String,
    },
    /// The operation failed.
    #[error("{0}")]
    Failed(String),
    /// It did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl PluginError {
    /// cluster-glue's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            // glue: a type it cannot load is S_OOPS.
            PluginError::UnknownType(_) => exit::OOPS,
            PluginError::Config(_) => exit::BAD_CONFIG,
            PluginError::Insecure(_) => exit::ACCESS,
            PluginError::BadHost { .. } => exit::BAD_HOST,
            PluginError::Failed(_) | PluginError::Cancelled => exit::RESET_FAILED,
            PluginError::Timeout(_) => exit::TIMEOUT,
        }
    }
}
