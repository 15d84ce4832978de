//! cluster-glue's built-in devices: `null`, `suicide`, `meatware` and `ssh`.

use std::sync::Arc;

use hbapi::process::Job;

use crate::run::{base_env, run_plugin};
use crate::{glue_meta_data, split_hosts, BoxFuture, Call, Family, Operator, PluginError};

/// glue's meta-data of a device whose one parameter is its host list.
const HOSTLIST_XML: &str = "<parameters><parameter name=\"hostlist\" unique=\"0\" required=\"1\"><content type=\"string\" />\n<shortdesc lang=\"en\">\nHostlist</shortdesc>\n<longdesc lang=\"en\">\nThe list of hosts that the STONITH device controls</longdesc>\n</parameter>\n</parameters>";

/// The built-in family of `device_type`, if it is one.
pub fn resolve(device_type: &str) -> Option<Arc<dyn Family>> {
    let family: Arc<dyn Family> = match device_type {
        "null" => Arc::new(Null),
        "suicide" => Arc::new(Suicide),
        "meatware" => Arc::new(Meatware),
        "ssh" => Arc::new(Ssh),
        _ => return None,
    };
    Some(family)
}

/// The parameters of a device configured with a `hostlist` alone.
fn hostlist_names<'a>() -> BoxFuture<'a, Result<Vec<String>, PluginError>> {
    Box::pin(async { Ok(vec!["hostlist".into()]) })
}

/// The hosts of a device configured with a `hostlist`.
fn hostlist_hosts<'a>(call: &'a Call<'a>) -> BoxFuture<'a, Result<Vec<String>, PluginError>> {
    Box::pin(async move {
        Ok(split_hosts(
            call.params.get("hostlist").map_or("", String::as_str),
        ))
    })
}

/// The status of a device with nothing to ask: it works.
fn works<'a>() -> BoxFuture<'a, Result<(), PluginError>> {
    Box::pin(async { Ok(()) })
}

/// `null`: pretends to fence whatever it is asked to.
#[derive(Debug)]
pub struct Null;

impl Family for Null {
    fn config_names(&self) -> BoxFuture<'_, Result<Vec<String>, PluginError>> {
        hostlist_names()
    }

    fn list_hosts<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Vec<String>, PluginError>> {
        hostlist_hosts(call)
    }

    fn status<'a>(&'a self, _: &'a Call<'a>) -> BoxFuture<'a, Result<(), PluginError>> {
        works()
    }

    fn fence<'a>(
        &'a self,
        _: &'a Call<'a>,
        action: &'a str,
        host: &'a str,
        _: Operator<'a>,
    ) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move { Ok(format!("null device: {host} {action} (pretended)")) })
    }

    fn meta_data<'a>(&'a self, device_type: &'a str) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move {
            Ok(glue_meta_data(
                device_type,
                "Dummy (do-nothing) STONITH device\nFOR TESTING ONLY!\n",
                "NULL STONITH device",
                HOSTLIST_XML,
            ))
        })
    }

    fn description(&self) -> BoxFuture<'_, String> {
        Box::pin(async { "Dummy (do-nothing) STONITH device\nFOR TESTING ONLY!".into() })
    }

    fn fences_any_host(&self) -> bool {
        true
    }
}

/// `suicide`: this node reboots itself (and fences no other).
#[derive(Debug)]
pub struct Suicide;

impl Family for Suicide {
    fn config_names(&self) -> BoxFuture<'_, Result<Vec<String>, PluginError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn list_hosts<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Vec<String>, PluginError>> {
        Box::pin(async move { Ok(vec![call.local_node.to_owned()]) })
    }

    fn status<'a>(&'a self, _: &'a Call<'a>) -> BoxFuture<'a, Result<(), PluginError>> {
        works()
    }

    fn fence<'a>(
        &'a self,
        call: &'a Call<'a>,
        _: &'a str,
        host: &'a str,
        operator: Operator<'a>,
    ) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move {
            if host != call.local_node {
                return Err(PluginError::BadHost {
                    host: host.to_owned(),
                    hosts: call.local_node.to_owned(),
                });
            }
            let job = Job {
                program: "/sbin/reboot".into(),
                args: vec!["-nf".into()],
                env: base_env(),
                stdin: Vec::new(),
            };
            run_plugin(job, call.timeout, operator.cancel)
                .await
                .map(|_| "rebooting".into())
        })
    }

    fn meta_data<'a>(&'a self, device_type: &'a str) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move {
            Ok(glue_meta_data(
                device_type,
                "Virtual device to reboot/powerdown itself.\n\n",
                "Suicide STONITH device",
                "<parameters></parameters>",
            ))
        })
    }

    fn description(&self) -> BoxFuture<'_, String> {
        Box::pin(async { "Self-fencing: the node reboots itself.".into() })
    }
}

/// `meatware`: a person power-cycles the node and says so with `meatclient -c NODE`.
#[derive(Debug)]
pub struct Meatware;

impl Family for Meatware {
    fn config_names(&self) -> BoxFuture<'_, Result<Vec<String>, PluginError>> {
        hostlist_names()
    }

    fn list_hosts<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Vec<String>, PluginError>> {
        hostlist_hosts(call)
    }

    fn status<'a>(&'a self, _: &'a Call<'a>) -> BoxFuture<'a, Result<(), PluginError>> {
        works()
    }

    fn fence<'a>(
        &'a self,
        call: &'a Call<'a>,
        action: &'a str,
        host: &'a str,
        operator: Operator<'a>,
    ) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move {
            tracing::error!(
                target_node = host,
                "STONITH: Operator intervention required to {action} {host}. Run \"meatclient -c {host}\" AFTER power-cycling the machine."
            );
            // FAQ 19: the request waits for the operator as long as it takes (a person may
            // need hours to reach the machine), unless a timeout was configured.
            let answer = async {
                match call.configured_timeout {
                    Some(limit) => tokio::time::timeout(limit, operator.confirmed)
                        .await
                        .unwrap_or(Err(PluginError::Timeout(limit))),
                    None => operator.confirmed.await,
                }
            };
            tokio::select! {
                answer = answer => answer.map(|()| format!("operator confirmed {host} was power-cycled")),
                () = operator.cancel => Err(PluginError::Cancelled),
            }
        })
    }

    fn meta_data<'a>(&'a self, device_type: &'a str) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move {
            Ok(glue_meta_data(
                device_type,
                "Human (meatware) intervention STONITH device.\nThis STONITH agent prompts a human to reset a machine.\nThe human tells it when the reset was completed.\n",
                "Meatware STONITH device",
                HOSTLIST_XML,
            ))
        })
    }

    fn description(&self) -> BoxFuture<'_, String> {
        Box::pin(async {
            "Human (meatware) intervention STONITH device.\nThis STONITH agent prompts a human to reset a machine.\nThe human tells it when the reset was completed.".into()
        })
    }

    fn waits_for_operator(&self) -> bool {
        true
    }
}

/// `ssh`: `reboot -nf` scheduled with `at` over ssh, for testing only.
#[derive(Debug)]
pub struct Ssh;

impl Family for Ssh {
    fn config_names(&self) -> BoxFuture<'_, Result<Vec<String>, PluginError>> {
        hostlist_names()
    }

    fn list_hosts<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Vec<String>, PluginError>> {
        hostlist_hosts(call)
    }

    fn status<'a>(&'a self, _: &'a Call<'a>) -> BoxFuture<'a, Result<(), PluginError>> {
        works()
    }

    fn fence<'a>(
        &'a self,
        call: &'a Call<'a>,
        _: &'a str,
        host: &'a str,
        operator: Operator<'a>,
    ) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move {
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
            let (code, output) = run_plugin(job, call.timeout, operator.cancel).await?;
            if code == 0 {
                Ok(format!("reboot of {host} scheduled over ssh"))
            } else {
                Err(PluginError::Failed(format!(
                    "ssh exited {code}: {}",
                    output.trim()
                )))
            }
        })
    }

    fn meta_data<'a>(&'a self, device_type: &'a str) -> BoxFuture<'a, Result<String, PluginError>> {
        Box::pin(async move {
            Ok(glue_meta_data(
                device_type,
                "SSH-based host reset\nFine for testing, but not suitable for production!\n",
                "SSH STONITH device",
                HOSTLIST_XML,
            ))
        })
    }

    fn description(&self) -> BoxFuture<'_, String> {
        Box::pin(async { "SSH STONITH device: reboot through ssh, for testing only.".into() })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::{Device, PluginDirs, PluginError};

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
}
