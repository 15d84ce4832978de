//! Fencing devices as cluster-glue and fence-agents define them, shared by `stonithd` and the
//! `stonith` command. Each family is one file behind one trait ([`Family`]):
//!
//! - [`builtin`]: `null` (pretends), `suicide` (this node reboots itself), `meatware` (an
//!   operator power-cycles the node and confirms with `meatclient -c NODE`; the wait is in
//!   stonithd), `ssh` (cluster-glue's ssh plugin: `reboot -nf` through `at` over ssh, for
//!   testing only);
//! - [`external`]: cluster-glue's `external/NAME` plugin scripts, called `PLUGIN ACTION [HOST]`
//!   with the device's parameters in the environment; a plugin (or its directory) writable by
//!   group or others is refused, as glue does;
//! - [`fence_agent`]: fence-agents' `fence_NAME`, called with `key=value` lines on stdin (never
//!   on argv, where every user could read a password), `action=on|off|reboot|status|list|
//!   monitor|metadata`.
//!
//! A [`Device`] is a family with its parameters and run-time state. Device parameters read
//! here, not passed to the agent: `pcmk_host_list` (the nodes a device can fence),
//! `pcmk_reboot_timeout` (seconds, every action) and `pcmk_reboot_retries`.

pub mod builtin;
mod device;
mod error;
pub mod external;
pub mod fence_agent;
mod run;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use device::{Device, HOST_LIST_TTL};
pub use error::{exit, PluginError};
pub use fence_agent::fence_parameters;

/// A future a family returns: boxed, so that families sit behind one trait object, and `Send`,
/// so that stonithd runs fences on tasks of their own.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One family of fencing devices: everything that differs between them. A new family is one
/// file implementing this, and one arm in [`resolve`].
pub trait Family: std::fmt::Debug + Send + Sync {
    /// The names of its parameters, in the order `-p` takes them.
    fn config_names(&self) -> BoxFuture<'_, Result<Vec<String>, PluginError>>;

    /// The hosts a device with these parameters controls, asked now.
    fn list_hosts<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Vec<String>, PluginError>>;

    /// Whether the device works (`stonith -S`).
    fn status<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<(), PluginError>>;

    /// One attempt at `action` (glue's `reset`, `off` or `on`) on `host`.
    fn fence<'a>(
        &'a self,
        call: &'a Call<'a>,
        action: &'a str,
        host: &'a str,
        operator: Operator<'a>,
    ) -> BoxFuture<'a, Result<String, PluginError>>;

    /// Its meta-data XML (`stonith -m`).
    fn meta_data<'a>(&'a self, device_type: &'a str) -> BoxFuture<'a, Result<String, PluginError>>;

    /// Its short description (`stonith -h`).
    fn description(&self) -> BoxFuture<'_, String>;

    /// Whether listing its hosts runs a program with the device's credentials: such listings
    /// are kept for [`HOST_LIST_TTL`] and run in the device's session.
    fn lists_by_running(&self) -> bool {
        false
    }

    /// Whether a person answers instead of a device (meatware): one attempt, no device
    /// session, and the confirmation comes through stonithd.
    fn waits_for_operator(&self) -> bool {
        false
    }

    /// Whether it fences whatever host it is asked to (null, which only pretends).
    fn fences_any_host(&self) -> bool {
        false
    }
}

/// What a family is given for one operation of a device.
#[derive(Debug)]
pub struct Call<'a> {
    /// The device's type name.
    pub device_type: &'a str,
    /// Its parameters.
    pub params: &'a BTreeMap<String, String>,
    /// Time allowed for the operation.
    pub timeout: Duration,
    /// `pcmk_reboot_timeout`, when given (meatware waits without limit otherwise).
    pub configured_timeout: Option<Duration>,
    /// This node.
    pub local_node: &'a str,
}

/// What a fence may wait on besides the device.
pub struct Operator<'a> {
    /// An operator's confirmation (meatware).
    pub confirmed: BoxFuture<'a, Result<(), PluginError>>,
    /// Resolves when the attempt is to be given up.
    pub cancel: BoxFuture<'a, ()>,
}

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

impl PluginDirs {
    /// The defaults, overridable for tests and unusual installs (`HB_STONITH_EXTERNAL_DIR`,
    /// `HB_FENCE_AGENTS_DIR`).
    pub fn from_env() -> PluginDirs {
        let defaults = PluginDirs::default();
        PluginDirs {
            external: std::env::var_os("HB_STONITH_EXTERNAL_DIR").map_or(defaults.external, PathBuf::from),
            fence_agents: std::env::var_os("HB_FENCE_AGENTS_DIR")
                .map_or(defaults.fence_agents, PathBuf::from),
        }
    }
}

/// The built-in types.
pub const BUILT_IN: &[&str] = &["meatware", "null", "ssh", "suicide"];

/// Parameters read here and never passed to an agent.
pub const OWN_PARAMS: &[&str] = &["pcmk_host_list", "pcmk_reboot_timeout", "pcmk_reboot_retries"];

/// Whether `name` may name a plugin file (no path, no hidden file).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'))
}

/// Resolves a type name to its family.
pub fn resolve(device_type: &str, dirs: &PluginDirs) -> Result<Arc<dyn Family>, PluginError> {
    let unknown = || PluginError::UnknownType(device_type.to_owned());
    if let Some(family) = builtin::resolve(device_type) {
        return Ok(family);
    }
    if let Some(name) = device_type.strip_prefix("external/") {
        return external::resolve(name, dirs)?.ok_or_else(unknown);
    }
    if device_type.starts_with("fence_") {
        return fence_agent::resolve(device_type, dirs).ok_or_else(unknown);
    }
    Err(unknown())
}

/// Every available type, sorted as `stonith -L` prints them: built-ins, external/*, fence_*.
pub fn list_types(dirs: &PluginDirs) -> Vec<String> {
    let mut types: Vec<String> = BUILT_IN.iter().map(|s| (*s).to_owned()).collect();
    types.extend(external::list(dirs));
    types.extend(fence_agent::list(dirs));
    types.sort();
    types
}

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

/// Reads a glue configuration file (`-F` syntax): the parameters of `-p`, `#` starting a
/// comment line.
pub fn read_config_file(path: &Path) -> Result<String, PluginError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?;
    let mode =
        std::fs::metadata(path).map_or(0, |m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    if mode & 0o077 != 0 {
        tracing::warn!(
            "{}: mode {:04o}: it gives a stonith device its parameters (passwords) and other users can read it; chmod 600 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join(" "))
}

/// cluster-glue's meta-data document for a type that describes itself in three parts.
pub(crate) fn glue_meta_data(device_type: &str, long: &str, short: &str, parameters: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n<resource-agent name=\"{device_type}\">\n<version>1.0</version>\n<longdesc lang=\"en\">\n{long}</longdesc>\n<shortdesc lang=\"en\">{short}</shortdesc>\n{parameters}\n<actions>\n<action name=\"start\"   timeout=\"20\" />\n<action name=\"stop\"    timeout=\"15\" />\n<action name=\"status\"  timeout=\"20\" />\n<action name=\"monitor\" timeout=\"20\" interval=\"3600\" />\n<action name=\"meta-data\"  timeout=\"15\" />\n</actions>\n<special tag=\"heartbeat\">\n<version>2.0</version>\n</special>\n</resource-agent>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(resolve("null", &dirs).unwrap().fences_any_host());
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
}
