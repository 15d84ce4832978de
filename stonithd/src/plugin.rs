//! Fencing device types as cluster-glue and fence-agents define them, and how each is run.
//!
//! - built in: `null` (pretends), `suicide` (this node reboots itself), `meatware` (an operator
//!   power-cycles the node and confirms with `meatclient -c NODE`; waits in stonithd),
//!   `ssh` (cluster-glue's ssh plugin: `reboot -nf` through `at` over ssh, for testing only);
//! - `external/NAME`: cluster-glue's plugin scripts, called `PLUGIN ACTION [HOST]` with the
//!   device's parameters in the environment; a plugin (or its directory) writable by group or
//!   others is refused, as glue does;
//! - `fence_NAME`: fence-agents, called with `key=value` lines on stdin (never on argv, where
//!   every user could read a password), `action=on|off|reboot|status|list|monitor|metadata`.
//!
//! Device parameters that stonithd reads itself (not passed to the agent): `pcmk_host_list`
//! (the nodes a fence agent can fence), `pcmk_reboot_timeout` (seconds, every action) and
//! `pcmk_reboot_retries`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hbapi::process::{self, Job, Limits, Outcome};

/// How long a device's listed hosts are believed before it is asked again. Listing runs the
/// plugin with the device's credentials, and anyone may ask for the list (`ListDevices`), so
/// it must not run once per question; a fence asks again when the last answer was a failure.
pub const HOST_LIST_TTL: Duration = Duration::from_secs(60);

/// Where plugins are looked up.
#[derive(Debug, Clone)]
pub struct PluginDirs {
    /// cluster-glue's external plugins.
    pub external: PathBuf,
    /// fence-agents.
    pub fence_agents: PathBuf,
}

impl Default for PluginDirs {
    fn default() -> Self {
        PluginDirs {
            external: PathBuf::from("/usr/lib/stonith/plugins/external"),
            fence_agents: PathBuf::from("/usr/sbin"),
        }
    }
}

/// The built-in types.
pub const BUILT_IN: &[&str] = &["meatware", "null", "ssh", "suicide"];

/// Parameters stonithd keeps for itself.
pub const OWN_PARAMS: &[&str] = &["pcmk_host_list", "pcmk_reboot_timeout", "pcmk_reboot_retries"];

/// A device type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `null`.
    Null,
    /// `suicide`.
    Suicide,
    /// `meatware`.
    Meatware,
    /// `ssh`.
    Ssh,
    /// `external/NAME` at this path.
    External(PathBuf),
    /// `fence_NAME` at this path.
    FenceAgent(PathBuf),
}

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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'))
}

use hbapi::process::is_executable;

/// Resolves a type name.
pub fn resolve(device_type: &str, dirs: &PluginDirs) -> Result<Kind, PluginError> {
    let unknown = || PluginError::UnknownType(device_type.to_owned());
    match device_type {
        "null" => return Ok(Kind::Null),
        "suicide" => return Ok(Kind::Suicide),
        "meatware" => return Ok(Kind::Meatware),
        "ssh" => return Ok(Kind::Ssh),
        _ => {}
    }
    if let Some(name) = device_type.strip_prefix("external/") {
        if !valid_name(name) {
            return Err(unknown());
        }
        let path = dirs.external.join(name);
        if !is_executable(&path) {
            return Err(unknown());
        }
        check_not_writable_by_others(&path)?;
        return Ok(Kind::External(path));
    }
    if device_type.starts_with("fence_") && valid_name(device_type) {
        let path = dirs.fence_agents.join(device_type);
        if is_executable(&path) {
            return Ok(Kind::FenceAgent(path));
        }
    }
    Err(unknown())
}

/// cluster-glue runs no plugin that a user other than its owner could have changed.
fn check_not_writable_by_others(path: &Path) -> Result<(), PluginError> {
    use std::os::unix::fs::PermissionsExt;
    for checked in [Some(path), path.parent()].into_iter().flatten() {
        let mode = std::fs::metadata(checked)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o777);
        if mode & 0o022 != 0 {
            return Err(PluginError::Insecure(checked.to_owned()));
        }
    }
    Ok(())
}

/// Every available type, sorted as `stonith -L` prints them: built-ins, external/*, fence_*.
pub fn list_types(dirs: &PluginDirs) -> Vec<String> {
    let names_in = |dir: &Path, keep: &dyn Fn(&str) -> bool| {
        hbapi::process::executables_in(dir, |n| valid_name(n) && keep(n))
    };
    let mut types: Vec<String> = BUILT_IN.iter().map(|s| (*s).to_owned()).collect();
    types.extend(
        names_in(&dirs.external, &|_| true)
            .into_iter()
            .map(|n| format!("external/{n}")),
    );
    types.extend(names_in(&dirs.fence_agents, &|n| n.starts_with("fence_")));
    types.sort();
    types
}

fn base_env() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("LANG".into(), "C".into()),
    ]
}

/// Runs a plugin action with the given limits; returns (exit code, output).
async fn run_plugin(
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

fn external_job(path: &Path, params: &BTreeMap<String, String>, args: &[&str]) -> Job {
    let mut env = base_env();
    env.extend(
        params
            .iter()
            .filter(|(k, _)| !OWN_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    Job {
        program: path.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env,
        stdin: Vec::new(),
    }
}

fn fence_job(path: &Path, params: &BTreeMap<String, String>, action: &str, port: Option<&str>) -> Job {
    let mut input = format!("action={action}\n");
    if let Some(port) = port {
        input.push_str(&format!("port={port}\n"));
    }
    for (name, value) in params.iter().filter(|(k, _)| !OWN_PARAMS.contains(&k.as_str())) {
        // One line per parameter: a value with a newline would inject another one.
        input.push_str(&format!("{name}={}\n", value.replace('\n', " ")));
    }
    Job {
        program: path.to_owned(),
        args: Vec::new(),
        env: base_env(),
        stdin: input.into_bytes(),
    }
}

/// The names of a type's parameters, in the order `-p` takes them.
pub async fn config_names(kind: &Kind) -> Result<Vec<String>, PluginError> {
    match kind {
        Kind::Null | Kind::Meatware | Kind::Ssh => Ok(vec!["hostlist".into()]),
        Kind::Suicide => Ok(Vec::new()),
        Kind::External(path) => {
            let (code, output) = run_plugin(
                external_job(path, &BTreeMap::new(), &["getconfignames"]),
                Duration::from_secs(30),
                std::future::pending(),
            )
            .await?;
            if code != 0 {
                return Err(PluginError::Failed(format!(
                    "{}: getconfignames exited {code}",
                    path.display()
                )));
            }
            Ok(output.split_whitespace().map(str::to_owned).collect())
        }
        Kind::FenceAgent(path) => {
            let xml = fence_metadata(path).await?;
            Ok(fence_parameters(&xml)
                .into_iter()
                .filter(|name| !matches!(name.as_str(), "action" | "help" | "version"))
                .collect())
        }
    }
}

async fn fence_metadata(path: &Path) -> Result<String, PluginError> {
    let (code, output) = run_plugin(
        fence_job(path, &BTreeMap::new(), "metadata", None),
        Duration::from_secs(30),
        std::future::pending(),
    )
    .await?;
    if code != 0 {
        return Err(PluginError::Failed(format!(
            "{}: metadata exited {code}",
            path.display()
        )));
    }
    Ok(output)
}

/// Parameter names declared in fence-agent meta-data (`<parameter name="…"`).
pub fn fence_parameters(xml: &str) -> Vec<String> {
    xml.split("<parameter ")
        .skip(1)
        .filter_map(|rest| {
            let start = rest.find("name=\"")? + 6;
            let end = rest[start..].find('"')? + start;
            Some(rest[start..end].to_owned())
        })
        .collect()
}

/// A configured device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its name (type and position in the configuration).
    pub id: String,
    /// Type name.
    pub device_type: String,
    /// Resolved type.
    pub kind: Kind,
    /// Parameters by name.
    pub params: BTreeMap<String, String>,
    /// Whether a fence agent takes the target as `port`, learnt from its meta-data once.
    takes_port: std::sync::OnceLock<bool>,
    session: Session,
}

/// What a device does at run time: one operation at a time (many PDUs and BMCs take a single
/// session, and a listing must never hold one while a fence waits behind a crowd of others),
/// and its last host listing.
#[derive(Debug, Default, Clone)]
struct Session(Arc<SessionState>);

#[derive(Debug, Default)]
struct SessionState {
    turn: tokio::sync::Mutex<()>,
    listed: std::sync::Mutex<Option<Listing>>,
}

#[derive(Debug, Clone)]
struct Listing {
    at: Instant,
    hosts: Result<Vec<String>, String>,
}

/// A device's identity is its configuration, not its run-time state.
impl PartialEq for Session {
    fn eq(&self, _: &Session) -> bool {
        true
    }
}

impl Eq for Session {}

/// Parameters given as `-p` does: `name=value` tokens where every token has `=`, else one
/// token per config name in order, the last name taking the rest of the line.
pub fn parse_params(text: &str, names: &[String]) -> Result<BTreeMap<String, String>, PluginError> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut params = BTreeMap::new();
    if !tokens.is_empty() && tokens.iter().all(|t| t.contains('=')) {
        for token in tokens {
            let (name, value) = token.split_once('=').unwrap_or((token, ""));
            params.insert(name.to_owned(), value.to_owned());
        }
        return Ok(params);
    }
    let mut rest = text.trim();
    for (index, name) in names.iter().enumerate() {
        if rest.is_empty() {
            break;
        }
        if index + 1 == names.len() {
            params.insert(name.clone(), rest.to_owned());
            rest = "";
        } else {
            let (token, remainder) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            params.insert(name.clone(), token.to_owned());
            rest = remainder.trim_start();
        }
    }
    if !rest.is_empty() {
        // The values are not repeated: they are passwords as often as not.
        let given = text.split_whitespace().count();
        return Err(PluginError::Config(format!(
            "too many parameters: {given} words given, the device takes {} ({}); values not shown",
            names.len(),
            names.join(" ")
        )));
    }
    Ok(params)
}

/// The hosts in a plugin's `gethosts` output or a host list: names separated by white space or commas.
pub fn split_hosts(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Device {
    /// A device of `device_type` with `params`.
    pub fn new(
        id: &str,
        device_type: &str,
        params: BTreeMap<String, String>,
        dirs: &PluginDirs,
    ) -> Result<Device, PluginError> {
        Ok(Device {
            id: id.to_owned(),
            device_type: device_type.to_owned(),
            kind: resolve(device_type, dirs)?,
            params,
            takes_port: std::sync::OnceLock::new(),
            session: Session::default(),
        })
    }

    /// The `pcmk_reboot_timeout` parameter, when given.
    fn configured_timeout(&self) -> Option<Duration> {
        self.params
            .get("pcmk_reboot_timeout")
            .and_then(|v| v.trim_end_matches('s').parse().ok())
            .map(Duration::from_secs)
    }

    /// Time allowed per attempt (and for listing hosts, checking status).
    pub fn timeout(&self) -> Duration {
        self.configured_timeout().unwrap_or(Duration::from_secs(60))
    }

    /// Attempts per fence: one for meatware (its request stays pending until the operator
    /// answers: a second round would only prompt again), else 1 + `pcmk_reboot_retries`.
    pub fn attempts(&self) -> u32 {
        if matches!(self.kind, Kind::Meatware) {
            return 1;
        }
        1 + self
            .params
            .get("pcmk_reboot_retries")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1)
            .min(10)
    }

    /// Attempts per fencing request.
    /// The hosts this device controls: a listing younger than [`HOST_LIST_TTL`] is reused,
    /// failed or not.
    pub async fn hosts(&self, local_node: &str) -> Result<Vec<String>, PluginError> {
        self.hosts_within(local_node, false).await
    }

    /// The hosts, for a fence: as [`Device::hosts`], but a failed listing is tried again.
    pub async fn hosts_for_fencing(&self, local_node: &str) -> Result<Vec<String>, PluginError> {
        self.hosts_within(local_node, true).await
    }

    async fn hosts_within(&self, local_node: &str, retry_failure: bool) -> Result<Vec<String>, PluginError> {
        if let Some(list) = self.params.get("pcmk_host_list") {
            return Ok(split_hosts(list));
        }
        let recent = |state: &SessionState| {
            let listed = state.listed.lock().unwrap_or_else(|e| e.into_inner());
            listed
                .as_ref()
                .filter(|l| l.at.elapsed() < HOST_LIST_TTL && (l.hosts.is_ok() || !retry_failure))
                .map(|l| l.hosts.clone().map_err(PluginError::Failed))
        };
        if !matches!(self.kind, Kind::External(_) | Kind::FenceAgent(_)) {
            return self.list_hosts(local_node).await;
        }
        if let Some(known) = recent(&self.session.0) {
            return known;
        }
        let _turn = self.session.0.turn.lock().await;
        // Whoever held the turn before may have just listed.
        if let Some(known) = recent(&self.session.0) {
            return known;
        }
        let hosts = self.list_hosts(local_node).await;
        *self.session.0.listed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Listing {
            at: Instant::now(),
            hosts: match &hosts {
                Ok(list) => Ok(list.clone()),
                Err(error) => Err(error.to_string()),
            },
        });
        hosts
    }

    async fn list_hosts(&self, local_node: &str) -> Result<Vec<String>, PluginError> {
        match &self.kind {
            Kind::Null | Kind::Meatware | Kind::Ssh => Ok(split_hosts(
                self.params.get("hostlist").map_or("", String::as_str),
            )),
            Kind::Suicide => Ok(vec![local_node.to_owned()]),
            Kind::External(path) => {
                let (code, output) = run_plugin(
                    external_job(path, &self.params, &["gethosts"]),
                    self.timeout(),
                    std::future::pending(),
                )
                .await?;
                if code != 0 {
                    return Err(PluginError::Failed(format!(
                        "gethosts exited {code}: {}",
                        output.trim()
                    )));
                }
                Ok(split_hosts(&output))
            }
            Kind::FenceAgent(path) => {
                let (code, output) = run_plugin(
                    fence_job(path, &self.params, "list", None),
                    self.timeout(),
                    std::future::pending(),
                )
                .await?;
                if code != 0 {
                    return Err(PluginError::Config(format!(
                        "{}: cannot list its hosts (exit {code}); give them with pcmk_host_list",
                        self.device_type
                    )));
                }
                Ok(output
                    .lines()
                    .filter_map(|l| l.split(',').next())
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .collect())
            }
        }
    }

    /// Whether the device works (`-S`).
    pub async fn status(&self) -> Result<(), PluginError> {
        let _turn = self.session.0.turn.lock().await;
        let (code, output) = match &self.kind {
            Kind::Null | Kind::Meatware | Kind::Suicide | Kind::Ssh => return Ok(()),
            Kind::External(path) => {
                run_plugin(
                    external_job(path, &self.params, &["status"]),
                    self.timeout(),
                    std::future::pending(),
                )
                .await?
            }
            Kind::FenceAgent(path) => {
                run_plugin(
                    fence_job(path, &self.params, "monitor", None),
                    self.timeout(),
                    std::future::pending(),
                )
                .await?
            }
        };
        if code == 0 {
            Ok(())
        } else {
            Err(PluginError::Failed(format!(
                "device status: exit {code}: {}",
                output.trim()
            )))
        }
    }

    /// Fences `host` with `action` (`reset`/`reboot`, `off`, `on`) — one attempt, within the
    /// device's timeout. `meatware` waits for `confirmed` (meatclient through stonithd).
    pub async fn fence(
        &self,
        action: &str,
        host: &str,
        local_node: &str,
        confirmed: impl Future<Output = Result<(), PluginError>>,
        cancel: impl Future<Output = ()>,
    ) -> Result<String, PluginError> {
        let timeout = self.timeout();
        // Meatware waits for a person, not for a device session.
        let _turn = match self.kind {
            Kind::Meatware => None,
            _ => Some(self.session.0.turn.lock().await),
        };
        let glue_action = match action {
            "reboot" | "reset" => "reset",
            "off" => "off",
            "on" => "on",
            other => {
                return Err(PluginError::Config(format!(
                    "action {other:?}: expected reset, reboot, off or on"
                )))
            }
        };
        match &self.kind {
            Kind::Null => Ok(format!("null device: {host} {glue_action} (pretended)")),
            Kind::Suicide => {
                if host != local_node {
                    return Err(PluginError::BadHost {
                        host: host.to_owned(),
                        hosts: local_node.to_owned(),
                    });
                }
                let job = Job {
                    program: "/sbin/reboot".into(),
                    args: vec!["-nf".into()],
                    env: base_env(),
                    stdin: Vec::new(),
                };
                run_plugin(job, timeout, cancel).await.map(|_| "rebooting".into())
            }
            Kind::Meatware => {
                tracing::error!(
                    target_node = host,
                    "STONITH: Operator intervention required to {glue_action} {host}. Run \"meatclient -c {host}\" AFTER power-cycling the machine."
                );
                // FAQ 19: the request waits for the operator as long as it takes (a person
                // may need hours to reach the machine), unless a timeout was configured.
                let answer = async {
                    match self.configured_timeout() {
                        Some(limit) => tokio::time::timeout(limit, confirmed)
                            .await
                            .unwrap_or(Err(PluginError::Timeout(limit))),
                        None => confirmed.await,
                    }
                };
                tokio::select! {
                    answer = answer => answer.map(|()| format!("operator confirmed {host} was power-cycled")),
                    () = cancel => Err(PluginError::Cancelled),
                }
            }
            Kind::Ssh => {
                let job = Job {
                    program: "/usr/bin/ssh".into(),
                    args: [
                        "-q",
                        "-x",
                        "-n",
                        "-o",
                        "PasswordAuthentication=no",
                        "-o",
                        "StrictHostKeyChecking=no",
                        "-l",
                        "root",
                        host,
                        "echo 'sleep 2; /sbin/reboot -nf' | SHELL=/bin/sh at now >/dev/null 2>&1",
                    ]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                    env: base_env(),
                    stdin: Vec::new(),
                };
                let (code, output) = run_plugin(job, timeout, cancel).await?;
                if code == 0 {
                    Ok(format!("reboot of {host} scheduled over ssh"))
                } else {
                    Err(PluginError::Failed(format!(
                        "ssh exited {code}: {}",
                        output.trim()
                    )))
                }
            }
            Kind::External(path) => {
                let (code, output) = run_plugin(
                    external_job(path, &self.params, &[glue_action, host]),
                    timeout,
                    cancel,
                )
                .await?;
                if code == 0 {
                    Ok(output.trim().to_owned())
                } else {
                    Err(PluginError::Failed(format!(
                        "{} {glue_action} {host}: exit {code}: {}",
                        self.device_type,
                        output.trim()
                    )))
                }
            }
            Kind::FenceAgent(path) => {
                let fence_action = if glue_action == "reset" {
                    "reboot"
                } else {
                    glue_action
                };
                let port = self.wants_port(path).await.then_some(host);
                let (code, output) =
                    run_plugin(fence_job(path, &self.params, fence_action, port), timeout, cancel).await?;
                if code == 0 {
                    Ok(output.trim().to_owned())
                } else {
                    Err(PluginError::Failed(format!(
                        "{} {fence_action} {host}: exit {code}: {}",
                        self.device_type,
                        output.trim()
                    )))
                }
            }
        }
    }

    /// Whether a fence agent takes the target as `port` (fence_dummy, for one, does not).
    async fn wants_port(&self, path: &Path) -> bool {
        if let Some(known) = self.takes_port.get() {
            return *known;
        }
        match fence_metadata(path).await {
            Ok(xml) => *self
                .takes_port
                .get_or_init(|| fence_parameters(&xml).iter().any(|p| p == "port" || p == "plug")),
            Err(_) => false,
        }
    }
}

/// Meta-data XML of a type (`stonith -m`): fence agents and external plugins are asked;
/// built-ins describe themselves.
pub async fn meta_data(device_type: &str, kind: &Kind) -> Result<String, PluginError> {
    let (long, short, parameters) = match kind {
        Kind::FenceAgent(path) => return fence_metadata(path).await,
        Kind::External(path) => {
            let ask = |what: &'static str| {
                let job = external_job(path, &BTreeMap::new(), &[what]);
                async move {
                    run_plugin(job, Duration::from_secs(30), std::future::pending())
                        .await
                        .map(|(_, out)| out)
                        .unwrap_or_default()
                }
            };
            // glue closes the plugin's description with one more line break.
            (
                format!("{}\n", ask("getinfo-devdescr").await),
                ask("getinfo-devid").await,
                ask("getinfo-xml").await,
            )
        }
        Kind::Null => (
            "Dummy (do-nothing) STONITH device\nFOR TESTING ONLY!\n".into(),
            "NULL STONITH device".into(),
            HOSTLIST_XML.into(),
        ),
        Kind::Meatware => (
            "Human (meatware) intervention STONITH device.\nThis STONITH agent prompts a human to reset a machine.\nThe human tells it when the reset was completed.\n".into(),
            "Meatware STONITH device".into(),
            HOSTLIST_XML.into(),
        ),
        Kind::Ssh => (
            "SSH-based host reset\nFine for testing, but not suitable for production!\n".into(),
            "SSH STONITH device".into(),
            HOSTLIST_XML.into(),
        ),
        Kind::Suicide => (
            "Virtual device to reboot/powerdown itself.\n\n".into(),
            "Suicide STONITH device".into(),
            "<parameters></parameters>".into(),
        ),
    };
    Ok(format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n<resource-agent name=\"{device_type}\">\n<version>1.0</version>\n<longdesc lang=\"en\">\n{long}</longdesc>\n<shortdesc lang=\"en\">{short}</shortdesc>\n{parameters}\n<actions>\n<action name=\"start\"   timeout=\"20\" />\n<action name=\"stop\"    timeout=\"15\" />\n<action name=\"status\"  timeout=\"20\" />\n<action name=\"monitor\" timeout=\"20\" interval=\"3600\" />\n<action name=\"meta-data\"  timeout=\"15\" />\n</actions>\n<special tag=\"heartbeat\">\n<version>2.0</version>\n</special>\n</resource-agent>\n"
    ))
}

const HOSTLIST_XML: &str = "<parameters><parameter name=\"hostlist\" unique=\"0\" required=\"1\"><content type=\"string\" />\n<shortdesc lang=\"en\">\nHostlist</shortdesc>\n<longdesc lang=\"en\">\nThe list of hosts that the STONITH device controls</longdesc>\n</parameter>\n</parameters>";

/// The short description of a type, for `stonith -h`.
pub async fn description(kind: &Kind) -> String {
    match kind {
        Kind::Null => "Dummy (do-nothing) STONITH device\nFOR TESTING ONLY!".into(),
        Kind::Suicide => "Self-fencing: the node reboots itself.".into(),
        Kind::Meatware => "Human (meatware) intervention STONITH device.\nThis STONITH agent prompts a human to reset a machine.\nThe human tells it when the reset was completed.".into(),
        Kind::Ssh => "SSH STONITH device: reboot through ssh, for testing only.".into(),
        Kind::External(path) => run_plugin(external_job(path, &BTreeMap::new(), &["getinfo-devdescr"]), Duration::from_secs(30), std::future::pending())
            .await
            .map(|(_, out)| out.trim_end().to_owned())
            .unwrap_or_default(),
        Kind::FenceAgent(path) => fence_metadata(path)
            .await
            .ok()
            .and_then(|xml| {
                let start = xml.find("shortdesc=\"")? + 11;
                let end = xml[start..].find('"')? + start;
                Some(xml[start..end].to_owned())
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FAQ 19: a meatware request waits for the operator however long it takes (here two
    /// hours of virtual time), in one attempt, and a configured timeout still applies.
    #[tokio::test(start_paused = true)]
    async fn meatware_waits_for_the_operator_as_long_as_it_takes() {
        let dirs = PluginDirs::default();
        let device = Device::new(
            "mw",
            "meatware",
            BTreeMap::from([("hostlist".into(), "bravo".into())]),
            &dirs,
        )
        .unwrap();
        assert_eq!(device.attempts(), 1);
        let late = async {
            tokio::time::sleep(Duration::from_secs(7200)).await;
            Ok(())
        };
        let outcome = device
            .fence("reset", "bravo", "alpha", late, std::future::pending())
            .await;
        assert!(outcome.is_ok(), "{outcome:?}");

        let bounded = Device::new(
            "mw",
            "meatware",
            BTreeMap::from([
                ("hostlist".into(), "bravo".into()),
                ("pcmk_reboot_timeout".into(), "900".into()),
            ]),
            &dirs,
        )
        .unwrap();
        let never = std::future::pending::<Result<(), PluginError>>();
        let outcome = bounded
            .fence("reset", "bravo", "alpha", never, std::future::pending())
            .await;
        assert!(
            matches!(outcome, Err(PluginError::Timeout(t)) if t == Duration::from_secs(900)),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_parameter_error_does_not_repeat_the_values() {
        // Only a device that takes no parameters can be given too many.
        let error = parse_params("10.0.0.1 admin pa55word", &[])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(!error.contains("pa55word") && !error.contains("admin"), "{error}");
        assert!(error.contains("3 words given"), "{error}");
    }

    #[test]
    fn parameters_as_glue_takes_them() {
        let names = vec!["ipaddr".to_owned(), "login".to_owned(), "password".to_owned()];
        let params = parse_params("10.0.0.1 admin secret with spaces", &names).unwrap();
        assert_eq!(
            params["password"], "secret with spaces",
            "the last name takes the rest"
        );
        let params = parse_params("hostlist=a,b password=x", &names).unwrap();
        assert_eq!(params["hostlist"], "a,b");
        assert_eq!(
            parse_params("a b", &["hostlist".into()]).unwrap()["hostlist"],
            "a b"
        );
        assert!(parse_params("a b", &[]).is_err());
    }

    #[test]
    fn types_resolve_and_paths_do_not() {
        let dirs = PluginDirs::default();
        assert_eq!(resolve("null", &dirs), Ok(Kind::Null));
        for bad in [
            "external/../../bin/sh",
            "external/",
            "fence_../x",
            "/bin/sh",
            "nosuch",
        ] {
            assert!(resolve(bad, &dirs).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_insecure_plugin_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join("open");
        std::fs::write(&plugin, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o777)).unwrap();
        let dirs = PluginDirs {
            external: dir.path().to_owned(),
            ..PluginDirs::default()
        };
        assert!(matches!(
            resolve("external/open", &dirs),
            Err(PluginError::Insecure(_))
        ));
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(resolve("external/open", &dirs), Ok(Kind::External(_))));
    }

    #[test]
    fn fence_parameter_names_from_meta_data() {
        let xml = "<parameters>\n<parameter name=\"action\" unique=\"0\"/>\n<parameter name=\"port\"/>\n</parameters>";
        assert_eq!(fence_parameters(xml), ["action", "port"]);
    }
}
