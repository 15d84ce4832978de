//! cluster-glue's external plugins (`external/NAME`): `PLUGIN ACTION [HOST]`, the device's
//! parameters in the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hbapi::process::{is_executable, Job};

use crate::run::{base_env, describe, device_status, fence_by_program, run_plugin, DESCRIBE_TIMEOUT};
use crate::{
    glue_meta_data, split_hosts, valid_name, BoxFuture, Call, Family, Operator, PluginDirs, PluginError,
    OWN_PARAMS,
};

/// The plugin `name` in `dirs`: `None` when there is none; refused when a user other than its
/// owner could have changed it, as glue refuses it.
pub fn resolve(name: &str, dirs: &PluginDirs) -> Result<Option<Arc<dyn Family>>, PluginError> {
    if !valid_name(name) {
        return Ok(None);
    }
    let path = dirs.external.join(name);
    if !is_executable(&path) {
        return Ok(None);
    }
    check_not_writable_by_others(&path)?;
    Ok(Some(Arc::new(External { path })))
}

/// Every external plugin in `dirs`, as `external/NAME`.
pub fn list(dirs: &PluginDirs) -> Vec<String> {
    hbapi::process::executables_in(&dirs.external, valid_name)
        .into_iter()
        .map(|n| format!("external/{n}"))
        .collect()
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

/// One external plugin.
#[derive(Debug)]
pub struct External {
    path: PathBuf,
}

impl External {
    /// The plugin called with `args`, `params` (but ours) in its environment.
    fn job(&self, params: &BTreeMap<String, String>, args: &[&str]) -> Job {
        let mut env = base_env();
        env.extend(
            params
                .iter()
                .filter(|(k, _)| !OWN_PARAMS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        Job {
            program: self.path.clone(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env,
            stdin: Vec::new(),
        }
    }

    /// What it says of itself when asked `what` (empty when it cannot say).
    async fn ask(&self, what: &str) -> String {
        run_plugin(
            self.job(&BTreeMap::new(), &[what]),
            DESCRIBE_TIMEOUT,
            std::future::pending(),
        )
        .await
        .map(|(_, out)| out)
        .unwrap_or_default()
    }
}

impl Family for External {
    fn config_names(&self) -> BoxFuture<'_, Result<Vec<String>, PluginError>> {
        Box::pin(async move {
            let output = describe(self.job(&BTreeMap::new(), &["getconfignames"]), "getconfignames").await?;
            Ok(output.split_whitespace().map(str::to_owned).collect())
        })
    }

    fn list_hosts<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Vec<String>, PluginError>> {
        Box::pin(async move {
            let (code, output) = run_plugin(
                self.job(call.params, &["gethosts"]),
                call.timeout,
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
        })
    }

    fn status<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(device_status(self.job(call.params, &["status"]), call.timeout))
    }

    fn fence<'a>(
        &'a self,
        call: &'a Call<'a>,
        action: &'a str,
        host: &'a str,
        operator: Operator<'a>,
    ) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move {
            fence_by_program(
                self.job(call.params, &[action, host]),
                call.timeout,
                operator.cancel,
                format!("{} {action} {host}", call.device_type),
            )
            .await
        })
    }

    fn meta_data<'a>(&'a self, device_type: &'a str) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move {
            // glue closes the plugin's description with one more line break.
            let long = format!("{}\n", self.ask("getinfo-devdescr").await);
            let short = self.ask("getinfo-devid").await;
            let parameters = self.ask("getinfo-xml").await;
            Ok(glue_meta_data(device_type, &long, &short, &parameters))
        })
    }

    fn description(&self) -> BoxFuture<'_, String> {
        Box::pin(async move { self.ask("getinfo-devdescr").await.trim_end().to_owned() })
    }

    fn lists_by_running(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            crate::resolve("external/open", &dirs),
            Err(PluginError::Insecure(_))
        ));
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(crate::resolve("external/open", &dirs).is_ok_and(|family| family.lists_by_running()));
    }
}
