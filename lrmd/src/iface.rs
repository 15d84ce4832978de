//! lrmd's D-Bus interface (`org.heartbeatrs.Lrmd1`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection};

use hbapi::error::HbError;
use hbapi::lrmd::{AgentId, OpResult, ResourceInfo};

use crate::agent::{self, AgentError};
use crate::executor::{Executor, Request, RequestError};

/// The served object.
pub struct LrmdInterface {
    pub(crate) executor: Arc<Executor>,
    /// The configured resources' stop timeouts (others get [`crate::DEFAULT_STOP_TIMEOUT`]).
    pub(crate) stop_timeouts: Arc<std::collections::BTreeMap<String, Duration>>,
}

impl From<RequestError> for HbError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Agent(AgentError::NotInstalled(what)) => {
                HbError::NotFound(format!("agent {what} is not installed"))
            }
            other => HbError::InvalidArgument(other.to_string()),
        }
    }
}

fn timeout(timeout_ms: u32) -> Result<Duration, HbError> {
    if timeout_ms == 0 {
        return Err(HbError::InvalidArgument("timeout_ms: must be more than 0".into()));
    }
    Ok(Duration::from_millis(u64::from(timeout_ms)))
}

#[interface(name = "org.heartbeatrs.Lrmd1")]
impl LrmdInterface {
    /// Queues one operation and returns its id; OperationCompleted reports its end.
    /// Operations of one resource run one at a time, in order. Cluster users only.
    // The arguments are the method's D-Bus signature.
    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        resource: &str,
        agent: AgentId,
        action: &str,
        params: HashMap<String, String>,
        timeout_ms: u32,
    ) -> Result<u64, HbError> {
        hbapi::bus::authorise_operator(connection, &header).await?;
        let request = Request {
            resource: resource.to_owned(),
            agent,
            action: action.to_owned(),
            params: params.into_iter().collect(),
            timeout: timeout(timeout_ms)?,
        };
        let (op_id, _) = self.executor.execute(request)?;
        Ok(op_id)
    }

    /// Starts (or replaces) a resource's recurring monitor; its first result and every
    /// change are signalled. Cluster users only.
    #[allow(clippy::too_many_arguments)]
    async fn start_monitor(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        resource: &str,
        agent: AgentId,
        params: HashMap<String, String>,
        interval_ms: u32,
        timeout_ms: u32,
    ) -> Result<u64, HbError> {
        hbapi::bus::authorise_operator(connection, &header).await?;
        let request = Request {
            resource: resource.to_owned(),
            agent,
            action: "monitor".into(),
            params: params.into_iter().collect(),
            timeout: timeout(timeout_ms)?,
        };
        Ok(self
            .executor
            .start_monitor(request, Duration::from_millis(u64::from(interval_ms)))?)
    }

    /// Stops a resource's recurring monitor. Cluster users only.
    async fn stop_monitor(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        resource: &str,
    ) -> Result<bool, HbError> {
        hbapi::bus::authorise_operator(connection, &header).await?;
        Ok(self.executor.stop_monitor(resource))
    }

    /// Cancels a queued or running operation, or a recurring monitor. Cluster users only.
    async fn cancel(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        op_id: u64,
    ) -> Result<bool, HbError> {
        hbapi::bus::authorise_operator(connection, &header).await?;
        Ok(self.executor.cancel(op_id))
    }

    /// Agents of a class (`ocf` ones as `provider:type`).
    fn list_agents(&self, class: &str) -> Result<Vec<String>, HbError> {
        let class = agent::Class::parse(class).map_err(|e| HbError::InvalidArgument(e.to_string()))?;
        Ok(agent::list(class, &self.executor.dirs()))
    }

    /// An agent's meta-data XML.
    async fn meta_data(&self, agent: AgentId) -> Result<String, HbError> {
        Ok(self.executor.meta_data(&agent).await?)
    }

    /// One resource's last results, as persisted.
    fn history(&self, resource: &str) -> Result<ResourceInfo, HbError> {
        self.executor
            .info(resource)
            .ok_or_else(|| HbError::NotFound(format!("no resource {resource:?} here")))
    }

    /// Every resource lrmd knows.
    fn resources(&self) -> Vec<ResourceInfo> {
        self.executor.all()
    }

    /// Stops every resource the history says runs here, newest start first, each within its
    /// stop timeout; returns those whose stop failed. For the master, when crmd could not
    /// stop the node's groups itself at shutdown (it failed or hung). Operators only.
    async fn stop_all(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<Vec<String>, HbError> {
        hbapi::bus::authorise_operator(connection, &header).await?;
        let timeouts = self.stop_timeouts.clone();
        tracing::warn!("asked to stop every resource that runs here");
        Ok(self
            .executor
            .stop_everything(|resource| {
                timeouts
                    .get(resource)
                    .copied()
                    .unwrap_or(crate::DEFAULT_STOP_TIMEOUT)
            })
            .await)
    }

    /// An operation finished (recurring monitors: the first result and each change).
    #[zbus(signal)]
    pub async fn operation_completed(emitter: &SignalEmitter<'_>, result: OpResult) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use zbus::object_server::Interface;

    #[test]
    fn interface_name_matches_the_contract() {
        assert_eq!(
            super::LrmdInterface::name().as_str(),
            hbapi::names::lrmd::INTERFACE
        );
    }

    /// The served interface and the hbapi proxy both match the checked-in XML.
    #[tokio::test]
    async fn served_and_proxy_match_the_checked_in_xml() {
        use futures_util::StreamExt;
        use hbapi::contract::{self, Calls};
        use hbapi::lrmd::{AgentId, LrmdProxy, OpResult};
        use hbapi::names::lrmd::{INTERFACE, OBJECT_PATH};
        use std::collections::HashMap;
        use zbus::object_server::SignalEmitter;

        let state = tempfile::tempdir().unwrap();
        let options = crate::executor::ExecutorOptions {
            dirs: crate::agent::AgentDirs {
                config_dir: state.path().into(),
                rsc_tmp: state.path().join("rsc_tmp"),
                ..crate::agent::AgentDirs::default()
            },
            max_parallel: 1,
            kill_grace: std::time::Duration::from_secs(1),
        };
        let store = crate::store::Store::open(state.path()).unwrap();
        let (executor, _results) = crate::executor::Executor::new(options, store);
        let interface = super::LrmdInterface {
            executor,
            stop_timeouts: Default::default(),
        };
        let (server, client) = contract::serve_p2p(OBJECT_PATH, interface).await.unwrap();
        contract::check_served(&client, OBJECT_PATH, INTERFACE)
            .await
            .unwrap();

        let proxy = LrmdProxy::new(&client).await.unwrap();
        let mut calls = Calls::new();
        let agent = AgentId {
            class: "heartbeat".into(),
            provider: String::new(),
            agent: "absent".into(),
        };
        let params = HashMap::from([("1".to_owned(), "192.0.2.1".to_owned())]);
        // The operator's methods are refused (no caller uid on a bus-less connection): each is
        // reached, and nothing runs.
        let refused = [
            calls
                .call(
                    "method Execute",
                    proxy.execute("r", &agent, "start", params.clone(), 1000).await,
                )
                .is_none(),
            calls
                .call(
                    "method StartMonitor",
                    proxy.start_monitor("r", &agent, params, 1000, 1000).await,
                )
                .is_none(),
            calls
                .call("method StopMonitor", proxy.stop_monitor("r").await)
                .is_none(),
            calls.call("method Cancel", proxy.cancel(1).await).is_none(),
            calls.call("method StopAll", proxy.stop_all().await).is_none(),
        ];
        assert!(refused.iter().all(|r| *r), "{refused:?}");
        calls.call("method ListAgents", proxy.list_agents("heartbeat").await);
        calls.call("method MetaData", proxy.meta_data(&agent).await);
        calls.call("method History", proxy.history("r").await);
        let resources = calls.call("method Resources", proxy.resources().await).unwrap();
        assert!(resources.is_empty(), "{resources:?}");

        let mut completed = proxy.receive_operation_completed().await.unwrap();
        let emitter = SignalEmitter::new(&server, OBJECT_PATH).unwrap();
        let result = OpResult {
            op_id: 3,
            resource: "r".into(),
            action: "start".into(),
            interval_ms: 0,
            status: "done".into(),
            rc: 0,
            output: String::new(),
            duration_ms: 1,
            finished: 2,
        };
        super::LrmdInterface::operation_completed(&emitter, result)
            .await
            .unwrap();
        let signal = completed.next().await.unwrap();
        calls.signal(
            "signal OperationCompleted",
            signal.args().map(|a| assert_eq!(a.result().op_id, 3)),
        );
        calls.verdict(INTERFACE).unwrap();
    }
}
