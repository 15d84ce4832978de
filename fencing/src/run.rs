//! Running a plugin program: a clean environment, bounded time and output.

use std::future::Future;
use std::time::Duration;

use hbapi::process::{self, Job, Limits, Outcome};

use crate::PluginError;

/// How long a plugin may take to describe itself (meta-data, parameter names).
pub(crate) const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment every plugin starts from.
pub(crate) fn base_env() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("LANG".into(), "C".into()),
    ]
}

/// Runs a plugin action with the given limits; returns (exit code, output).
pub(crate) async fn run_plugin(
    job: Job,
    timeout: Duration,
    cancel: impl Future<Output = ()>,
) -> Result<(i32, String), PluginError> {
    let limits = Limits {
        timeout,
        kill_grace: Duration::from_secs(2),
        output_cap: 256 * 1024,
    };
    let finished = process::run(&job, limits, cancel, |_| {}).await;
    match finished.outcome {
        Outcome::Exited(code) => Ok((code, finished.output)),
        Outcome::Signalled(signal) => Err(PluginError::Failed(format!(
            "{} killed by signal {signal}",
            job.program.display()
        ))),
        Outcome::TimedOut => Err(PluginError::Timeout(timeout)),
        Outcome::Cancelled => Err(PluginError::Cancelled),
        Outcome::SpawnFailed(message) => Err(PluginError::Failed(message)),
    }
}
