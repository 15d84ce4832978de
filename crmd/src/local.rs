//! This node's part: operations on lrmd and their results.
//!
//! One subscription to lrmd's `OperationCompleted` serves every operation. A stream per
//! operation would make the bus deliver each result to every waiting operation (a thousand
//! starts: a million deliveries), and a stream that is not read stalls the whole connection.
//! [`Executor::results`] routes one-shot results to the operation that waits for them and
//! hands recurring monitors' results to the daemon's loop.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use hbapi::config::{AgentClass, Resource, ResourceGroup};
use hbapi::lrmd::{rc, status, AgentId, LrmdProxy, OpResult};

/// One-shot results that came before their operation asked for them, kept at most this many.
const EARLY_RESULTS: usize = 1024;

/// How long past its own timeout an operation's result may take before crmd gives up on
/// it (lrmd enforces the timeout; this only covers a result lost with a dying lrmd).
const RESULT_GRACE: Duration = Duration::from_secs(30);

pub use crate::partition::GroupOutcome;

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, oneshot::Sender<OpResult>>,
    early: HashMap<u64, OpResult>,
    early_order: VecDeque<u64>,
    /// Execute calls not yet answered, by resource. A result is kept early only for one of
    /// these: zbus already takes lrmd's signals only from lrmd, and a result that no call
    /// of crmd's can be waiting for is never held for one.
    calling: HashMap<String, usize>,
}

/// Runs lrmd operations for this node's groups.
#[derive(Clone)]
pub struct Executor {
    lrmd: LrmdProxy<'static>,
    pending: Arc<Mutex<Pending>>,
}

/// The lrmd agent of a configured resource, with its parameters.
pub fn agent_of(resource: &Resource) -> (AgentId, HashMap<String, String>) {
    let (class, provider) = match &resource.class {
        AgentClass::Heartbeat => ("heartbeat", String::new()),
        AgentClass::Lsb => ("lsb", String::new()),
        AgentClass::Ocf { provider } => ("ocf", provider.clone()),
        AgentClass::FreeHa => ("freeha", String::new()),
    };
    let mut params: HashMap<String, String> = resource
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (index, arg) in resource.args.iter().enumerate() {
        params.insert((index + 1).to_string(), arg.clone());
    }
    (
        AgentId {
            class: class.into(),
            provider,
            agent: resource.agent.clone(),
        },
        params,
    )
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

impl Executor {
    /// Subscribes to lrmd's results; the receiver gets every recurring monitor's results.
    pub async fn new(lrmd: LrmdProxy<'static>) -> zbus::Result<(Self, mpsc::UnboundedReceiver<OpResult>)> {
        let mut results = lrmd.receive_operation_completed().await?;
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (monitors_tx, monitors) = mpsc::unbounded_channel();
        let router = pending.clone();
        tokio::spawn(async move {
            while let Some(signal) = results.next().await {
                let Ok(args) = signal.args() else { continue };
                let result = args.result;
                if result.interval_ms > 0 {
                    if monitors_tx.send(result).is_err() {
                        break;
                    }
                    continue;
                }
                let Ok(mut pending) = router.lock() else { break };
                if let Some(waiter) = pending.waiters.remove(&result.op_id) {
                    let _ = waiter.send(result);
                } else if pending.calling.contains_key(&result.resource) {
                    // Its execute call has not returned yet.
                    if pending.early_order.len() >= EARLY_RESULTS {
                        if let Some(oldest) = pending.early_order.pop_front() {
                            pending.early.remove(&oldest);
                        }
                    }
                    pending.early_order.push_back(result.op_id);
                    pending.early.insert(result.op_id, result);
                }
            }
            // lrmd's stream is over: every waiting operation learns it now.
            if let Ok(mut pending) = router.lock() {
                pending.waiters.clear();
            }
        });
        Ok((Self { lrmd, pending }, monitors))
    }

    /// Runs one operation and waits for its result: the OCF code, or an error text.
    pub async fn operation(&self, resource: &Resource, action: &str) -> Result<i32, String> {
        let (agent, params) = agent_of(resource);
        let timeout = match action {
            "start" => resource.ops.start_timeout,
            "stop" => resource.ops.stop_timeout,
            _ => resource.ops.monitor_timeout,
        };
        if let Ok(mut pending) = self.pending.lock() {
            *pending.calling.entry(resource.id.clone()).or_default() += 1;
        }
        let called = self
            .lrmd
            .execute(&resource.id, &agent, action, params, millis(timeout))
            .await
            .map_err(|e| e.to_string());
        let (op_id, waiting) = {
            let mut pending = self
                .pending
                .lock()
                .map_err(|_| "crmd's result table is poisoned".to_owned())?;
            if let Some(calls) = pending.calling.get_mut(&resource.id) {
                *calls -= 1;
                if *calls == 0 {
                    pending.calling.remove(&resource.id);
                }
            }
            let op_id = called?;
            let waiting = match pending.early.remove(&op_id) {
                Some(result) => {
                    pending.early_order.retain(|id| *id != op_id);
                    Err(result)
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    pending.waiters.insert(op_id, tx);
                    Ok(rx)
                }
            };
            (op_id, waiting)
        };
        let result = match waiting {
            Err(result) => result,
            Ok(rx) => match tokio::time::timeout(timeout + RESULT_GRACE, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => return Err("lrmd went away".into()),
                Err(_) => {
                    if let Ok(mut pending) = self.pending.lock() {
                        pending.waiters.remove(&op_id);
                    }
                    return Err(format!("{action} {}: no result from lrmd", resource.id));
                }
            },
        };
        if result.status != status::DONE {
            return Err(format!("{action} {}: {}", resource.id, result.status));
        }
        Ok(result.rc)
    }

    /// Starts a group's members left to right; on a failure stops what was started (the
    /// member that failed too: a failed start may have left something running).
    pub async fn start_group(&self, group: &ResourceGroup) -> GroupOutcome {
        for (index, resource) in group.resources.iter().enumerate() {
            match self.operation(resource, "start").await {
                Ok(rc::OK) => {}
                outcome => {
                    tracing::error!(group = %group.id, resource = %resource.id, "start of {} failed: {outcome:?}; stopping what was started", resource.id);
                    return match self.stop_resources(group, &group.resources[..=index]).await {
                        GroupOutcome::Stopped => GroupOutcome::StartFailed,
                        stop_failed => stop_failed,
                    };
                }
            }
        }
        self.start_monitors(group).await;
        GroupOutcome::Started
    }

    /// Stops a group's members right to left.
    pub async fn stop_group(&self, group: &ResourceGroup) -> GroupOutcome {
        self.stop_resources(group, &group.resources).await
    }

    async fn stop_resources(&self, group: &ResourceGroup, members: &[Resource]) -> GroupOutcome {
        let mut outcome = GroupOutcome::Stopped;
        for resource in members.iter().rev() {
            if self.operation(resource, "stop").await != Ok(rc::OK) {
                tracing::error!(group = %group.id, resource = %resource.id, "stop of {} FAILED: {} is blocked here (it may still run) until this node is fenced or an operator cleans it up", resource.id, group.id);
                outcome = GroupOutcome::StopFailed;
            }
        }
        outcome
    }

    /// Starts lrmd's recurring monitors of a group's resources that have an interval.
    async fn start_monitors(&self, group: &ResourceGroup) {
        for resource in &group.resources {
            let Some(interval) = resource.ops.monitor_interval else {
                continue;
            };
            let (agent, params) = agent_of(resource);
            if let Err(error) = self
                .lrmd
                .start_monitor(
                    &resource.id,
                    &agent,
                    params,
                    millis(interval),
                    millis(resource.ops.monitor_timeout),
                )
                .await
            {
                tracing::error!(resource = %resource.id, "recurring monitor of {} not started: {error}", resource.id);
            }
        }
    }

    /// Whether any resource of `group` runs here (the start-up probe). A probe that cannot
    /// tell counts as running: the decision maker then orders a stop, which is harmless,
    /// instead of starting a second copy elsewhere.
    pub async fn probe_group(&self, group: &ResourceGroup) -> bool {
        for resource in &group.resources {
            match self.operation(resource, "monitor").await {
                Ok(rc::NOT_RUNNING) => {}
                Ok(rc::OK | rc::RUNNING_PROMOTED | rc::DEGRADED | rc::DEGRADED_PROMOTED) => return true,
                other => {
                    tracing::warn!(resource = %resource.id, "probe of {} inconclusive ({other:?}): taken as running", resource.id);
                    return true;
                }
            }
        }
        false
    }
}
