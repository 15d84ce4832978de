//! fence-agents (`fence_NAME`): `key=value` lines on stdin, `action=on|off|reboot|status|
//! list|monitor|metadata`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hbapi::process::{is_executable, Job};

use crate::run::{base_env, describe, device_status, fence_by_program, run_plugin};
use crate::{valid_name, BoxFuture, Call, Family, Operator, PluginDirs, PluginError, OWN_PARAMS};

/// The agent `device_type` (`fence_…`) in `dirs`, if there is one.
pub fn resolve(device_type: &str, dirs: &PluginDirs) -> Option<Arc<dyn Family>> {
    if !(device_type.starts_with("fence_") && valid_name(device_type)) {
        return None;
    }
    let path = dirs.fence_agents.join(device_type);
    is_executable(&path).then(|| -> Arc<dyn Family> {
        Arc::new(FenceAgent {
            path,
            takes_port: OnceLock::new(),
        })
    })
}

/// Every fence agent in `dirs`.
pub fn list(dirs: &PluginDirs) -> Vec<String> {
    hbapi::process::executables_in(&dirs.fence_agents, |n| valid_name(n) && n.starts_with("fence_"))
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

/// One fence agent.
#[derive(Debug)]
pub struct FenceAgent {
    path: PathBuf,
    /// Whether it takes the target as `port`, learnt from its meta-data once.
    takes_port: OnceLock<bool>,
}

impl FenceAgent {
    /// The agent asked `action` (for `port`), `params` (but ours) one per line on stdin.
    fn job(&self, params: &BTreeMap<String, String>, action: &str, port: Option<&str>) -> Job {
        let mut input = format!("action={action}\n");
        if let Some(port) = port {
            input.push_str(&format!("port={port}\n"));
        }
        for (name, value) in params.iter().filter(|(k, _)| !OWN_PARAMS.contains(&k.as_str())) {
            // One line per parameter: a value with a newline would inject another one.
            input.push_str(&format!("{name}={}\n", value.replace('\n', " ")));
        }
        Job {
            program: self.path.clone(),
            args: Vec::new(),
            env: base_env(),
            stdin: input.into_bytes(),
        }
    }

    async fn metadata(&self) -> Result<String, PluginError> {
        describe(self.job(&BTreeMap::new(), "metadata", None), "metadata").await
    }

    /// Whether it takes the target as `port` (fence_dummy, for one, does not).
    async fn wants_port(&self) -> bool {
        if let Some(known) = self.takes_port.get() {
            return *known;
        }
        match self.metadata().await {
            Ok(xml) => *self
                .takes_port
                .get_or_init(|| fence_parameters(&xml).iter().any(|p| p == "port" || p == "plug")),
            Err(_) => false,
        }
    }
}

impl Family for FenceAgent {
    fn config_names(&self) -> BoxFuture<'_, Result<Vec<String>, PluginError>> {
        Box::pin(async move {
            let xml = self.metadata().await?;
            Ok(fence_parameters(&xml)
                .into_iter()
                .filter(|name| !matches!(name.as_str(), "action" | "help" | "version"))
                .collect())
        })
    }

    fn list_hosts<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Vec<String>, PluginError>> {
        Box::pin(async move {
            let (code, output) = run_plugin(
                self.job(call.params, "list", None),
                call.timeout,
                std::future::pending(),
            )
            .await?;
            if code != 0 {
                return Err(PluginError::Config(format!(
                    "{}: cannot list its hosts (exit {code}); give them with pcmk_host_list",
                    call.device_type
                )));
            }
            Ok(output
                .lines()
                .filter_map(|l| l.split(',').next())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .collect())
        })
    }

    fn status<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(device_status(
            self.job(call.params, "monitor", None),
            call.timeout,
        ))
    }

    fn fence<'a>(
        &'a self,
        call: &'a Call<'a>,
        action: &'a str,
        host: &'a str,
        operator: Operator<'a>,
    ) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move {
            let fence_action = if action == "reset" { "reboot" } else { action };
            let port = self.wants_port().await.then_some(host);
            fence_by_program(
                self.job(call.params, fence_action, port),
                call.timeout,
                operator.cancel,
                format!("{} {fence_action} {host}", call.device_type),
            )
            .await
        })
    }

    fn meta_data<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(self.metadata())
    }

    fn description(&self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            self.metadata()
                .await
                .ok()
                .and_then(|xml| {
                    let start = xml.find("shortdesc=\"")? + 11;
                    let end = xml[start..].find('"')? + start;
                    Some(xml[start..end].to_owned())
                })
                .unwrap_or_default()
        })
    }

    fn lists_by_running(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fence_parameter_names_from_meta_data() {
        let xml = "<parameters>\n<parameter name=\"action\" unique=\"0\"/>\n<parameter name=\"port\"/>\n</parameters>";
        assert_eq!(super::fence_parameters(xml), ["action", "port"]);
    }
}
