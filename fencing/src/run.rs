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

/// One fencing attempt by a program: exit 0 is done (with what it printed), anything else a
/// failure naming the device type, action and host.
pub(crate) async fn fence_by_program(
    job: Job,
    timeout: Duration,
    cancel: impl Future<Output = ()>,
    what: String,
) -> Result<String, PluginError> {
    let (code, output) = run_plugin(job, timeout, cancel).await?;
    if code == 0 {
        Ok(output.trim().to_owned())
    } else {
        Err(PluginError::Failed(format!(
            "{what}: exit {code}: {}",
            output.trim()
        )))
    }
}

/// A device's status check (`stonith -S`): the job's exit 0 says it works; anything else is
/// a failure with what the program printed.
pub(crate) async fn device_status(job: Job, timeout: Duration) -> Result<(), PluginError> {
    let (code, output) = run_plugin(job, timeout, std::future::pending()).await?;
    if code == 0 {
        Ok(())
    } else {
        Err(PluginError::Failed(format!(
            "device status: exit {code}: {}",
            output.trim()
        )))
    }
}

/// What a program says of itself when asked `question` (`getconfignames`, `metadata`): its
/// output, or a failure naming the program and the question when it exits other than 0.
pub(crate) async fn describe(job: Job, question: &str) -> Result<String, PluginError> {
    let program = job.program.display().to_string();
    let (code, output) = run_plugin(job, DESCRIBE_TIMEOUT, std::future::pending()).await?;
    if code != 0 {
        return Err(PluginError::Failed(format!(
            "{program}: {question} exited {code}"
        )));
    }
    Ok(output)
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
