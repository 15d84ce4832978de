//! Agent classes: where an agent lives, how it is called, and what its exit means.
//!
//! | class | program | called as | parameters |
//! |---|---|---|---|
//! | `heartbeat` | CONFIG_DIR/resource.d/NAME, else INIT_DIR/NAME | `NAME arg1 arg2 … start\|stop\|status` | `1`, `2`, … in order, on argv |
//! | `lsb` | INIT_DIR/NAME | `NAME start\|stop\|status\|…` | none |
//! | `ocf` | OCF_ROOT/resource.d/PROVIDER/TYPE | `TYPE ACTION` | `OCF_RESKEY_<name>` in the environment |
//! | `freeha` | FREEHA_BINDIR/start\|stop\|monitor + TYPE (`starthasrv`, …) | without arguments | none |
//!
//! No shell is involved anywhere: parameters reach the agent byte for byte.
//!
//! Results are mapped to OCF codes:
//! - `ocf`: the exit code as is (an undefined one is a generic error).
//! - `lsb`: for `status`, 0 is running, 1–3 are not running (dead with pid file, dead with
//!   lock, stopped), anything else an error; other actions' codes 0–7 mean what OCF's mean.
//! - `heartbeat` status, Heartbeat's own rule first (ResourceManager's `we_own_resource`):
//!   output containing "not running" (or "stopped", as Heartbeat's own scripts print) → not
//!   running; containing "running" or "OK" → running.
//!   Where the output says neither, the exit code decides as for LSB (Heartbeat would say
//!   "not running" here, which on a probe could start a second copy of a running service).
//!   A script that says "running" but exits 1–3 or 7 is taken at its exit code.
//!   Other actions: 0 is success, anything else a generic error.
//! - `freeha`: `monitor<TYPE>` as an LSB status; start and stop 0 is success, anything else
//!   a generic error. A service without `monitor<TYPE>` is answered from lrmd's history
//!   (FreeHA itself had no check either), which is why the executor asks
//!   [`Invocation::job`] for `None`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hbapi::lrmd::{rc, AgentId};

/// Where agents are looked up.
#[derive(Debug, Clone)]
pub struct AgentDirs {
    /// Heartbeat's configuration directory (resource.d lives there).
    pub config_dir: PathBuf,
    /// OCF_ROOT.
    pub ocf_root: PathBuf,
    /// LSB init scripts.
    pub init_dir: PathBuf,
    /// HA_RSCTMP for OCF agents (their state files), one per node.
    pub rsc_tmp: PathBuf,
    /// FreeHA's service scripts.
    pub freeha_bindir: PathBuf,
}

impl Default for AgentDirs {
    fn default() -> Self {
        AgentDirs {
            config_dir: PathBuf::from("/etc/ha.d"),
            ocf_root: PathBuf::from("/usr/lib/ocf"),
            init_dir: PathBuf::from("/etc/init.d"),
            rsc_tmp: PathBuf::from("/run/resource-agents"),
            freeha_bindir: PathBuf::from(hbapi::config::defaults::FREEHA_BINDIR),
        }
    }
}

/// The agent classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Heartbeat resource.d scripts.
    Heartbeat,
    /// LSB init scripts.
    Lsb,
    /// OCF agents.
    Ocf,
    /// FreeHA's service scripts.
    FreeHa,
}

/// Why an agent cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// Unknown class.
    #[error("unknown agent class {0:?} (expected ocf, lsb, heartbeat or freeha)")]
    Class(String),
    /// A name that could escape its directory or is otherwise unusable.
    #[error("{what}: {message}")]
    Name {
        /// Which part.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// No such agent.
    #[error("agent {0} is not installed")]
    NotInstalled(String),
    /// An action the class does not have.
    #[error("action {0:?} is not implemented by this class")]
    Unimplemented(String),
    /// Bad parameter name.
    #[error("parameter {0:?}: {1}")]
    Param(String, String),
}

impl Class {
    /// Parses `ocf`, `lsb`, `heartbeat`, `freeha`.
    pub fn parse(name: &str) -> Result<Class, AgentError> {
        match name {
            "heartbeat" => Ok(Class::Heartbeat),
            "lsb" => Ok(Class::Lsb),
            "ocf" => Ok(Class::Ocf),
            "freeha" => Ok(Class::FreeHa),
            other => Err(AgentError::Class(other.to_owned())),
        }
    }
}

/// How to run one action of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The class (for result mapping).
    pub class: Class,
    /// The action asked for (`monitor` stays `monitor` here even when `status` is run).
    pub action: String,
    /// The process: program, argv, the whole environment (nothing is inherited from lrmd);
    /// `None` for a status the agent has no program for (a FreeHA service without
    /// `monitor<TYPE>`), which lrmd answers from its history.
    pub job: Option<hbapi::process::Job>,
}

fn check_name(what: &'static str, name: &str) -> Result<(), AgentError> {
    hbapi::config::check_agent_name(name).map_err(|message| AgentError::Name { what, message })
}

/// The program implementing `agent`, checked to exist.
pub fn locate(agent: &AgentId, dirs: &AgentDirs) -> Result<(Class, PathBuf), AgentError> {
    let class = Class::parse(&agent.class)?;
    check_name("agent", &agent.agent)?;
    let candidates = match class {
        Class::Heartbeat => vec![
            dirs.config_dir.join("resource.d").join(&agent.agent),
            dirs.init_dir.join(&agent.agent),
        ],
        Class::Lsb => vec![dirs.init_dir.join(&agent.agent)],
        // The start script stands for the service: it must be there.
        Class::FreeHa => vec![freeha_script(dirs, "start", &agent.agent)],
        Class::Ocf => {
            check_name("provider", &agent.provider)?;
            vec![dirs
                .ocf_root
                .join("resource.d")
                .join(&agent.provider)
                .join(&agent.agent)]
        }
    };
    candidates
        .into_iter()
        .find(|path| is_executable(path))
        .map(|path| (class, path))
        .ok_or_else(|| AgentError::NotInstalled(display(agent)))
}

/// FreeHA's script for `verb` (`start`, `stop`, `monitor`) of service `service`.
fn freeha_script(dirs: &AgentDirs, verb: &str, service: &str) -> PathBuf {
    dirs.freeha_bindir.join(format!("{verb}{service}"))
}

/// `ocf:heartbeat:Dummy`, `lsb:postgresql`, `heartbeat:IPaddr`.
pub fn display(agent: &AgentId) -> String {
    if agent.provider.is_empty() {
        format!("{}:{}", agent.class, agent.agent)
    } else {
        format!("{}:{}:{}", agent.class, agent.provider, agent.agent)
    }
}

use hbapi::process::is_executable;

/// What lrmd passes to every agent besides the class's own variables.
fn base_env(dirs: &AgentDirs) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("LANG".into(), "C".into()),
        ("LC_ALL".into(), "C".into()),
        ("HA_RSCTMP".into(), dirs.rsc_tmp.display().to_string()),
    ]
}

/// Builds the invocation of `action` on `resource`.
pub fn invocation(
    resource: &str,
    agent: &AgentId,
    action: &str,
    params: &HashMap<String, String>,
    interval_ms: u32,
    timeout_ms: u32,
    dirs: &AgentDirs,
) -> Result<Invocation, AgentError> {
    let (class, program) = locate(agent, dirs)?;
    let mut env = base_env(dirs);
    let run_action = match (class, action) {
        (Class::Heartbeat | Class::Lsb, "monitor") => "status",
        (_, other) => other,
    };
    let mut args = Vec::new();
    match class {
        Class::Heartbeat => {
            // haresources' NAME::a::b gives parameters "1", "2", …: they go on argv in order.
            let mut numbered: Vec<(usize, &String)> = Vec::new();
            for (name, value) in params {
                let index = name
                    .parse::<usize>()
                    .ok()
                    .filter(|i| (1..=64).contains(i))
                    .ok_or_else(|| {
                        AgentError::Param(
                            name.clone(),
                            "heartbeat-class parameters are numbered 1, 2, … (haresources' NAME::arg1::arg2)"
                                .into(),
                        )
                    })?;
                numbered.push((index, value));
            }
            numbered.sort();
            for (position, (index, _)) in numbered.iter().enumerate() {
                if *index != position + 1 {
                    return Err(AgentError::Param(
                        index.to_string(),
                        "heartbeat-class parameters must be numbered without gaps".into(),
                    ));
                }
            }
            args.extend(numbered.into_iter().map(|(_, value)| value.clone()));
        }
        Class::FreeHa => return freeha_invocation(agent, action, params, dirs, env),
        Class::Lsb => {
            if !params.is_empty() {
                return Err(AgentError::Param(
                    params.keys().next().cloned().unwrap_or_default(),
                    "LSB init scripts take no parameters".into(),
                ));
            }
        }
        Class::Ocf => {
            env.push(("OCF_ROOT".into(), dirs.ocf_root.display().to_string()));
            env.push(("OCF_RA_VERSION_MAJOR".into(), "1".into()));
            env.push(("OCF_RA_VERSION_MINOR".into(), "0".into()));
            env.push(("OCF_RESOURCE_INSTANCE".into(), resource.to_owned()));
            env.push(("OCF_RESOURCE_TYPE".into(), agent.agent.clone()));
            env.push(("OCF_RESOURCE_PROVIDER".into(), agent.provider.clone()));
            env.push(("OCF_RESKEY_CRM_meta_interval".into(), interval_ms.to_string()));
            env.push(("OCF_RESKEY_CRM_meta_timeout".into(), timeout_ms.to_string()));
            let mut sorted: Vec<_> = params.iter().collect();
            sorted.sort();
            for (name, value) in sorted {
                let valid = !name.is_empty()
                    && name.len() <= 128
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(AgentError::Param(
                        name.clone(),
                        "OCF parameter names are letters, digits and _".into(),
                    ));
                }
                env.push((format!("OCF_RESKEY_{name}"), value.clone()));
            }
        }
    }
    args.push(run_action.to_owned());
    Ok(Invocation {
        class,
        action: action.to_owned(),
        job: Some(hbapi::process::Job {
            program,
            args,
            env,
            stdin: Vec::new(),
        }),
    })
}

/// FreeHA's services: one script per action, no arguments, no parameters.
fn freeha_invocation(
    agent: &AgentId,
    action: &str,
    params: &HashMap<String, String>,
    dirs: &AgentDirs,
    env: Vec<(String, String)>,
) -> Result<Invocation, AgentError> {
    let verb = match action {
        "start" => "start",
        "stop" => "stop",
        "monitor" | "status" => "monitor",
        other => return Err(AgentError::Unimplemented(other.to_owned())),
    };
    if !params.is_empty() {
        return Err(AgentError::Param(
            params.keys().next().cloned().unwrap_or_default(),
            "FreeHA's scripts take no parameters".into(),
        ));
    }
    let program = freeha_script(dirs, verb, &agent.agent);
    let job = is_executable(&program).then(|| hbapi::process::Job {
        program,
        args: Vec::new(),
        env,
        stdin: Vec::new(),
    });
    if job.is_none() && verb != "monitor" {
        return Err(AgentError::NotInstalled(format!(
            "{} ({verb}{})",
            display(agent),
            agent.agent
        )));
    }
    Ok(Invocation {
        class: Class::FreeHa,
        action: action.to_owned(),
        job,
    })
}

fn is_status(action: &str) -> bool {
    matches!(action, "monitor" | "status")
}

/// The OCF result for an agent of `class` that ran `action` and exited with `exit`.
pub fn map_result(class: Class, action: &str, exit: i32, output: &str) -> i32 {
    let lsb_status = |exit: i32| match exit {
        0 => rc::OK,
        1..=3 => rc::NOT_RUNNING,
        _ => rc::ERR_GENERIC,
    };
    match class {
        Class::Ocf => match exit {
            0..=9 | rc::DEGRADED | rc::DEGRADED_PROMOTED => exit,
            _ => rc::ERR_GENERIC,
        },
        Class::Lsb | Class::FreeHa if is_status(action) => lsb_status(exit),
        Class::FreeHa => {
            if exit == 0 {
                rc::OK
            } else {
                rc::ERR_GENERIC
            }
        }
        Class::Lsb => match exit {
            0..=7 => exit,
            _ => rc::ERR_GENERIC,
        },
        Class::Heartbeat if is_status(action) => {
            let lower = output.to_ascii_lowercase();
            let says_not_running = lower
                .match_indices("not ")
                .any(|(at, _)| lower[at + 4..].trim_start().starts_with("running"));
            if says_not_running || lower.contains("stopped") {
                rc::NOT_RUNNING
            } else if lower.contains("running") || output.contains("OK") {
                match exit {
                    1..=3 | rc::NOT_RUNNING => rc::NOT_RUNNING,
                    _ => rc::OK,
                }
            } else if exit == rc::NOT_RUNNING {
                rc::NOT_RUNNING
            } else {
                lsb_status(exit)
            }
        }
        Class::Heartbeat => {
            if exit == 0 {
                rc::OK
            } else {
                rc::ERR_GENERIC
            }
        }
    }
}

/// Agents of a class: OCF ones as `provider:type`.
pub fn list(class: Class, dirs: &AgentDirs) -> Vec<String> {
    let executables =
        |dir: &Path| hbapi::process::executables_in(dir, |name| check_name("agent", name).is_ok());
    match class {
        Class::Heartbeat => executables(&dirs.config_dir.join("resource.d")),
        Class::Lsb => executables(&dirs.init_dir),
        Class::FreeHa => executables(&dirs.freeha_bindir)
            .into_iter()
            .filter_map(|name| name.strip_prefix("start").map(str::to_owned))
            .filter(|service| !service.is_empty())
            .collect(),
        Class::Ocf => {
            let root = dirs.ocf_root.join("resource.d");
            let mut providers: Vec<String> = std::fs::read_dir(&root)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default();
            providers.sort();
            providers
                .into_iter()
                .flat_map(|provider| {
                    executables(&root.join(&provider))
                        .into_iter()
                        .map(move |agent| format!("{provider}:{agent}"))
                })
                .collect()
        }
    }
}

/// Meta-data for classes whose agents have none of their own: what Pacemaker gives LSB
/// scripts, with the description from the LSB header where there is one.
pub fn synthetic_meta_data(agent: &AgentId, program: &Path) -> String {
    let header = std::fs::read(program).unwrap_or_default();
    let text = String::from_utf8_lossy(&header[..header.len().min(64 * 1024)]);
    let field = |key: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix("# ")?
                .trim()
                .strip_prefix(key)
                .map(|v| v.trim().to_owned())
        })
    };
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let short = field("Short-Description:").unwrap_or_else(|| agent.agent.clone());
    let long =
        field("Description:").unwrap_or_else(|| format!("{} script {}", agent.class, program.display()));
    format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n<resource-agent name=\"{name}\" version=\"0.1\">\n  <version>1.0</version>\n  <longdesc lang=\"en\">{long}</longdesc>\n  <shortdesc lang=\"en\">{short}</shortdesc>\n  <parameters/>\n  <actions>\n    <action name=\"start\" timeout=\"15s\"/>\n    <action name=\"stop\" timeout=\"15s\"/>\n    <action name=\"status\" timeout=\"15s\"/>\n    <action name=\"monitor\" timeout=\"15s\" interval=\"15s\"/>\n    <action name=\"meta-data\" timeout=\"5s\"/>\n  </actions>\n</resource-agent>\n",
        name = escape(&agent.agent),
        long = escape(&long),
        short = escape(&short),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(class: &str, provider: &str, name: &str) -> AgentId {
        AgentId {
            class: class.into(),
            provider: provider.into(),
            agent: name.into(),
        }
    }

    #[test]
    fn names_that_escape_their_directory_are_refused() {
        let dirs = AgentDirs::default();
        for (provider, name) in [
            ("heartbeat", "../../../bin/sh"),
            ("..", "sh"),
            ("heartbeat", ".."),
            ("x/y", "Dummy"),
        ] {
            let error = locate(&agent("ocf", provider, name), &dirs).unwrap_err();
            assert!(
                matches!(error, AgentError::Name { .. }),
                "{provider}:{name}: {error}"
            );
        }
        assert!(matches!(
            locate(&agent("lsb", "", "/bin/sh"), &dirs),
            Err(AgentError::Name { .. })
        ));
        assert!(matches!(
            locate(&agent("upstart", "", "x"), &dirs),
            Err(AgentError::Class(_))
        ));
    }

    #[test]
    fn heartbeat_status_follows_heartbeats_words_then_the_exit_code() {
        let status = |exit, output| map_result(Class::Heartbeat, "monitor", exit, output);
        assert_eq!(status(0, "IPaddr is running"), rc::OK);
        assert_eq!(status(0, "OK"), rc::OK);
        assert_eq!(status(0, "apache is not running"), rc::NOT_RUNNING);
        assert_eq!(status(3, "Not  Running"), rc::NOT_RUNNING);
        assert_eq!(status(3, "stopped"), rc::NOT_RUNNING);
        assert_eq!(
            status(0, "INFO:  Resource is stopped"),
            rc::NOT_RUNNING,
            "whatever the exit code"
        );
        assert_eq!(status(0, ""), rc::OK, "silent success: the exit code decides");
        assert_eq!(
            status(3, "running? no: pid file stale"),
            rc::NOT_RUNNING,
            "says running, exits 3"
        );
        assert_eq!(status(4, ""), rc::ERR_GENERIC);
        assert_eq!(map_result(Class::Heartbeat, "start", 0, ""), rc::OK);
        assert_eq!(map_result(Class::Heartbeat, "stop", 2, ""), rc::ERR_GENERIC);
    }

    #[test]
    fn lsb_and_ocf_codes() {
        assert_eq!(map_result(Class::Lsb, "status", 3, ""), rc::NOT_RUNNING);
        assert_eq!(map_result(Class::Lsb, "status", 1, ""), rc::NOT_RUNNING);
        assert_eq!(map_result(Class::Lsb, "status", 4, ""), rc::ERR_GENERIC);
        assert_eq!(map_result(Class::Lsb, "start", 5, ""), rc::ERR_INSTALLED);
        assert_eq!(map_result(Class::Lsb, "start", 150, ""), rc::ERR_GENERIC);
        for code in [0, 7, 8, 9, 190, 191] {
            assert_eq!(map_result(Class::Ocf, "monitor", code, ""), code);
        }
        assert_eq!(map_result(Class::Ocf, "monitor", 42, ""), rc::ERR_GENERIC);
    }

    #[test]
    fn heartbeat_parameters_go_on_argv_in_order_and_ocf_ones_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let resource_d = dir.path().join("resource.d");
        std::fs::create_dir_all(&resource_d).unwrap();
        std::fs::write(resource_d.join("Thing"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            resource_d.join("Thing"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let dirs = AgentDirs {
            config_dir: dir.path().to_owned(),
            ocf_root: dir.path().to_owned(),
            ..AgentDirs::default()
        };
        let params = HashMap::from([
            ("2".to_owned(), "b c".to_owned()),
            ("1".to_owned(), "$(a)".to_owned()),
        ]);
        let call = invocation(
            "r",
            &agent("heartbeat", "", "Thing"),
            "monitor",
            &params,
            0,
            1000,
            &dirs,
        )
        .unwrap();
        assert_eq!(call.job.as_ref().unwrap().args, ["$(a)", "b c", "status"]);
        let gap = HashMap::from([("2".to_owned(), "b".to_owned())]);
        assert!(invocation(
            "r",
            &agent("heartbeat", "", "Thing"),
            "start",
            &gap,
            0,
            1000,
            &dirs
        )
        .is_err());

        let ocf_dir = dir.path().join("resource.d/prov");
        std::fs::create_dir_all(&ocf_dir).unwrap();
        std::fs::copy(resource_d.join("Thing"), ocf_dir.join("Thing")).unwrap();
        let params = HashMap::from([("state".to_owned(), "x;y".to_owned())]);
        let call = invocation(
            "r1",
            &agent("ocf", "prov", "Thing"),
            "monitor",
            &params,
            10_000,
            20_000,
            &dirs,
        )
        .unwrap();
        assert_eq!(call.job.as_ref().unwrap().args, ["monitor"]);
        for pair in [
            ("OCF_RESKEY_state", "x;y"),
            ("OCF_RESOURCE_INSTANCE", "r1"),
            ("OCF_RESKEY_CRM_meta_interval", "10000"),
            ("OCF_RESKEY_CRM_meta_timeout", "20000"),
        ] {
            assert!(
                call.job
                    .as_ref()
                    .unwrap()
                    .env
                    .contains(&(pair.0.to_owned(), pair.1.to_owned())),
                "{pair:?}"
            );
        }
        let bad = HashMap::from([("a=b".to_owned(), "x".to_owned())]);
        assert!(invocation("r1", &agent("ocf", "prov", "Thing"), "start", &bad, 0, 1, &dirs).is_err());
        assert_eq!(list(Class::Ocf, &dirs), ["prov:Thing"]);
    }

    #[test]
    fn freeha_services_run_one_script_per_action_and_may_have_no_monitor() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = AgentDirs {
            freeha_bindir: dir.path().to_owned(),
            ..AgentDirs::default()
        };
        let service = agent("freeha", "", "hasrv");
        let none = HashMap::new();
        let call = |action: &str| invocation("hasrv", &service, action, &none, 0, 1000, &dirs);
        assert_eq!(
            call("start"),
            Err(AgentError::NotInstalled("freeha:hasrv".into()))
        );
        for script in ["starthasrv", "stophasrv"] {
            std::fs::write(dir.path().join(script), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(
                dir.path().join(script),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
        }
        let program = |action: &str| call(action).unwrap().job.map(|job| (job.program, job.args));
        assert_eq!(program("start"), Some((dir.path().join("starthasrv"), vec![])));
        assert_eq!(program("stop"), Some((dir.path().join("stophasrv"), vec![])));
        // No monitorhasrv: the executor answers from its history.
        assert_eq!(program("monitor"), None);
        assert_eq!(call("promote"), Err(AgentError::Unimplemented("promote".into())));
        let params = HashMap::from([("x".to_owned(), "1".to_owned())]);
        assert!(invocation("hasrv", &service, "start", &params, 0, 1, &dirs).is_err());
        assert_eq!(list(Class::FreeHa, &dirs), ["hasrv"]);
        assert_eq!(map_result(Class::FreeHa, "monitor", 3, ""), rc::NOT_RUNNING);
        assert_eq!(map_result(Class::FreeHa, "monitor", 0, ""), rc::OK);
        assert_eq!(map_result(Class::FreeHa, "stop", 7, ""), rc::ERR_GENERIC);
    }
}
