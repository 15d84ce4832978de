//! Scheduling: one queue per resource (its operations run one at a time, in order), a limit
//! on operations running at once across resources, recurring monitors that report the first
//! result and every change, cancellation, persistence of every result, and recovery after a
//! restart.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use hbapi::lrmd::{rc, status, AgentId, OpResult, ResourceInfo};

use crate::agent::{self, AgentDirs, AgentError};
use crate::store::{Pending, ResourceRecord, Store};
use hbapi::process::{self as exec, Outcome};

/// Output carried in results and history (the tail).
pub const RESULT_OUTPUT: usize = 4096;

/// How long a failed meta-data call is remembered before the agent is asked again (a
/// successful one is kept until the agent's file changes).
pub const META_DATA_RETRY: Duration = Duration::from_secs(60);

/// How operations run.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Where agents are.
    pub dirs: AgentDirs,
    /// Operations running at once across all resources.
    pub max_parallel: usize,
    /// Between SIGTERM and SIGKILL when an operation times out.
    pub kill_grace: Duration,
}

/// A request to run an operation.
#[derive(Debug, Clone)]
pub struct Request {
    /// Resource id.
    pub resource: String,
    /// Its agent.
    pub agent: AgentId,
    /// Action.
    pub action: String,
    /// Parameters.
    pub params: BTreeMap<String, String>,
    /// Timeout.
    pub timeout: Duration,
}

/// Why a request is refused at once.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Agent lookup.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// Bad resource id or action.
    #[error("{0}")]
    Invalid(String),
}

struct Job {
    op_id: u64,
    request: Request,
    interval_ms: u32,
    cancel: watch::Receiver<bool>,
    done: Option<oneshot::Sender<OpResult>>,
    /// One-shot operations are signalled; recurring monitors only on change.
    signal: bool,
}

struct Slot {
    queue: mpsc::UnboundedSender<Job>,
    record: ResourceRecord,
    monitor: Option<(u64, watch::Sender<bool>)>,
    cancels: HashMap<u64, watch::Sender<bool>>,
    /// One writer of the resource's record at a time, each writing the newest state: tasks
    /// that changed it in one order must not save it in the other.
    writer: Arc<Mutex<()>>,
}

/// The executor, shared by the bus interface and the worker tasks.
pub struct Executor {
    options: ExecutorOptions,
    store: Store,
    permits: Arc<Semaphore>,
    next_op: AtomicU64,
    slots: Mutex<BTreeMap<String, Slot>>,
    completed: mpsc::UnboundedSender<OpResult>,
    /// Meta-data by agent program: `MetaData` is open to every local user, so an agent runs
    /// for it at most once per version of its file (one caller runs it, the others wait for
    /// that answer), under the same limit on parallel operations as everything else.
    meta_data: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<Option<MetaData>>>>>,
}

/// One agent's remembered meta-data answer.
struct MetaData {
    /// The program's modification time when it answered.
    modified: Option<SystemTime>,
    /// When it answered.
    fetched: Instant,
    answer: Result<String, String>,
}

/// The first operation id of this lrmd: the start time in microseconds (ids then grow by
/// one per operation, far slower than the clock).
fn first_op_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX / 2)
        })
        .max(1)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Checks a resource id: printable, no white space, at most 256 bytes.
pub fn check_resource_id(resource: &str) -> Result<(), RequestError> {
    if resource.is_empty()
        || resource.len() > 256
        || resource.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(RequestError::Invalid(format!(
            "resource id {resource:?}: expected 1-256 printable characters without white space"
        )));
    }
    Ok(())
}

fn check_action(action: &str) -> Result<(), RequestError> {
    const ACTIONS: &[&str] = &[
        "start",
        "stop",
        "monitor",
        "status",
        "meta-data",
        "validate-all",
        "promote",
        "demote",
        "notify",
        "reload",
        "reload-agent",
        "migrate_to",
        "migrate_from",
        "restart",
        "force-reload",
    ];
    if ACTIONS.contains(&action) {
        Ok(())
    } else {
        Err(RequestError::Invalid(format!(
            "action {action:?}: expected one of {}",
            ACTIONS.join(" ")
        )))
    }
}

impl Executor {
    /// An executor; results to signal arrive on the returned receiver.
    pub fn new(options: ExecutorOptions, store: Store) -> (Arc<Executor>, mpsc::UnboundedReceiver<OpResult>) {
        let (completed, results) = mpsc::unbounded_channel();
        let executor = Arc::new(Executor {
            permits: Arc::new(Semaphore::new(options.max_parallel.max(1))),
            options,
            store,
            // Unique across restarts: a result of the previous lrmd still on its way (or in
            // a record) is never taken for the answer to a new request.
            next_op: AtomicU64::new(first_op_id()),
            slots: Mutex::new(BTreeMap::new()),
            completed,
            meta_data: Mutex::new(HashMap::new()),
        });
        (executor, results)
    }

    /// Where agents are looked up.
    pub fn dirs(&self) -> AgentDirs {
        self.options.dirs.clone()
    }

    fn op_id(&self) -> u64 {
        self.next_op.fetch_add(1, Ordering::Relaxed)
    }

    /// Saves `resource`'s record as it is now.
    fn persist(&self, resource: &str) {
        let slot_of = |resource: &str| {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .get(resource)
                .map(|slot| (slot.writer.clone(), slot.record.clone()))
        };
        let Some((writer, _)) = slot_of(resource) else {
            return;
        };
        let _turn = writer.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the turn: whatever changed before this save began is in it.
        let Some((_, record)) = slot_of(resource) else {
            return;
        };
        if let Err(error) = self.store.save(resource, &record) {
            tracing::error!(resource, "history not saved: {error}");
        }
    }

    /// The slot of `resource`, created (with its worker) when new.
    fn with_slot<T>(self: &Arc<Self>, resource: &str, agent: &AgentId, f: impl FnOnce(&mut Slot) -> T) -> T {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(resource.to_owned()).or_insert_with(|| {
            let (queue, jobs) = mpsc::unbounded_channel();
            tokio::spawn(worker(self.clone(), resource.to_owned(), jobs));
            Slot {
                queue,
                record: ResourceRecord::new(agent.clone()),
                monitor: None,
                cancels: HashMap::new(),
                writer: Arc::default(),
            }
        });
        f(slot)
    }

    /// Queues a one-shot operation; its result is signalled and returned on the receiver.
    pub fn execute(
        self: &Arc<Self>,
        request: Request,
    ) -> Result<(u64, oneshot::Receiver<OpResult>), RequestError> {
        check_resource_id(&request.resource)?;
        check_action(&request.action)?;
        agent::locate(&request.agent, &self.options.dirs)?;
        let op_id = self.op_id();
        let (done, receiver) = oneshot::channel();
        let (cancel_tx, cancel) = watch::channel(false);
        let stops_monitor = request.action == "stop";
        self.with_slot(&request.resource.clone(), &request.agent.clone(), |slot| {
            slot.record.agent = request.agent.clone();
            slot.record.params = request.params.clone();
            if stops_monitor {
                // A monitor after stop would only report the stop as a failure.
                if let Some((_, stop)) = slot.monitor.take() {
                    let _ = stop.send(true);
                }
                slot.record.monitor_interval_ms = 0;
            }
            slot.cancels.insert(op_id, cancel_tx);
            let _ = slot.queue.send(Job {
                op_id,
                request,
                interval_ms: 0,
                cancel,
                done: Some(done),
                signal: true,
            });
        });
        Ok((op_id, receiver))
    }

    /// Starts or replaces the recurring monitor of a resource.
    pub fn start_monitor(
        self: &Arc<Self>,
        request: Request,
        interval: Duration,
    ) -> Result<u64, RequestError> {
        check_resource_id(&request.resource)?;
        agent::locate(&request.agent, &self.options.dirs)?;
        if interval < Duration::from_millis(100) {
            return Err(RequestError::Invalid("monitor interval: at least 100 ms".into()));
        }
        let op_id = self.op_id();
        let (stop, stopped) = watch::channel(false);
        self.with_slot(&request.resource.clone(), &request.agent.clone(), |slot| {
            if let Some((_, old)) = slot.monitor.replace((op_id, stop)) {
                let _ = old.send(true);
            }
            slot.record.agent = request.agent.clone();
            slot.record.params = request.params.clone();
            slot.record.monitor_interval_ms = millis(interval);
            slot.record.monitor_timeout_ms = millis(request.timeout);
        });
        self.persist(&request.resource);
        tokio::spawn(monitor_loop(self.clone(), op_id, request, interval, stopped));
        Ok(op_id)
    }

    /// Stops the recurring monitor of `resource`.
    pub fn stop_monitor(&self, resource: &str) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = slots.get_mut(resource) else {
            return false;
        };
        let Some((_, stop)) = slot.monitor.take() else {
            return false;
        };
        let _ = stop.send(true);
        slot.record.monitor_interval_ms = 0;
        drop(slots);
        self.persist(resource);
        true
    }

    /// Cancels an operation (or a recurring monitor) by id.
    pub fn cancel(&self, op_id: u64) -> bool {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for slot in slots.values_mut() {
            if let Some(cancel) = slot.cancels.remove(&op_id) {
                let _ = cancel.send(true);
                return true;
            }
            if slot.monitor.as_ref().is_some_and(|(id, _)| *id == op_id) {
                if let Some((_, stop)) = slot.monitor.take() {
                    let _ = stop.send(true);
                }
                slot.record.monitor_interval_ms = 0;
                return true;
            }
        }
        false
    }

    /// What is known of `resource`.
    pub fn info(&self, resource: &str) -> Option<ResourceInfo> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.get(resource).map(|slot| ResourceInfo {
            resource: resource.to_owned(),
            agent: slot.record.agent.clone(),
            monitor_interval_ms: slot.record.monitor_interval_ms,
            last: slot.record.last.clone(),
        })
    }

    /// Every resource known.
    pub fn all(&self) -> Vec<ResourceInfo> {
        let names: Vec<String> = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.iter().filter_map(|name| self.info(name)).collect()
    }

    /// An agent's meta-data: OCF agents are asked (once per version of the agent's file, see
    /// [`META_DATA_RETRY`] for failures); others get what Pacemaker gives them.
    pub async fn meta_data(&self, agent: &AgentId) -> Result<String, RequestError> {
        let (class, program) = agent::locate(agent, &self.options.dirs)?;
        if class != agent::Class::Ocf {
            return Ok(agent::synthetic_meta_data(agent, &program));
        }
        let entry = self
            .meta_data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(program.clone())
            .or_default()
            .clone();
        // Concurrent callers queue here and take the first one's answer.
        let mut cached = entry.lock().await;
        let modified = std::fs::metadata(&program).and_then(|m| m.modified()).ok();
        if let Some(known) = cached.as_ref() {
            if known.modified == modified
                && (known.answer.is_ok() || known.fetched.elapsed() < META_DATA_RETRY)
            {
                return known.answer.clone().map_err(RequestError::Invalid);
            }
        }
        let answer = self.run_meta_data(agent).await;
        let remembered = match &answer {
            Ok(xml) => Ok(xml.clone()),
            Err(RequestError::Invalid(message)) => Err(message.clone()),
            Err(RequestError::Agent(_)) => return answer,
        };
        *cached = Some(MetaData {
            modified,
            fetched: Instant::now(),
            answer: remembered,
        });
        answer
    }

    async fn run_meta_data(&self, agent: &AgentId) -> Result<String, RequestError> {
        let call = agent::invocation(
            "meta-data",
            agent,
            "meta-data",
            &HashMap::new(),
            0,
            10_000,
            &self.options.dirs,
        )?;
        let limits = exec::Limits {
            timeout: Duration::from_secs(10),
            kill_grace: self.options.kill_grace,
            output_cap: 1 << 20,
        };
        let Some(job) = &call.job else {
            return Err(RequestError::Invalid(format!(
                "{} has no meta-data",
                agent::display(agent)
            )));
        };
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return Err(RequestError::Invalid("lrmd is stopping".into()));
        };
        let finished = exec::run(job, limits, std::future::pending(), |_| {}).await;
        match finished.outcome {
            Outcome::Exited(0) if !finished.truncated => Ok(finished.output),
            other => Err(RequestError::Invalid(format!(
                "{}: meta-data failed ({other:?}): {}",
                agent::display(agent),
                tail(&finished.output, 512)
            ))),
        }
    }

    /// Stops every resource the history says runs, newest start first, one at a time, each
    /// within `stop_timeout(resource)`; returns those whose stop failed. For when the node's
    /// cluster stack is gone (the master died): nothing would stop them otherwise, and peers
    /// without fencing count on this node stopping what it ran once it lost them.
    pub async fn stop_everything(self: &Arc<Self>, stop_timeout: impl Fn(&str) -> Duration) -> Vec<String> {
        let mut running: Vec<(u64, String, AgentId, BTreeMap<String, String>)> = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, slot)| slot.record.believed_running())
            .map(|(resource, slot)| {
                let started = slot.record.last_of("start", 0).map_or(0, |r| r.finished);
                (
                    started,
                    resource.clone(),
                    slot.record.agent.clone(),
                    slot.record.params.clone(),
                )
            })
            .collect();
        running.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut failed = Vec::new();
        for (_, resource, agent, params) in running {
            let request = Request {
                timeout: stop_timeout(&resource),
                resource: resource.clone(),
                agent,
                action: "stop".into(),
                params,
            };
            tracing::warn!(resource, "the cluster stack is gone: stopping {resource}");
            let stopped = match self.execute(request) {
                Ok((_, done)) => done.await.is_ok_and(|r| r.status == "done" && r.rc == 0),
                Err(_) => false,
            };
            if !stopped {
                tracing::error!(
                    resource,
                    "could not stop {resource} after the cluster stack went away"
                );
                failed.push(resource);
            }
        }
        failed
    }

    /// Loads the persisted records; for an operation that was running when the previous lrmd
    /// died, waits for (or, past its timeout, kills) what is left of it, records it as lost and
    /// probes the resource; restarts recurring monitors. Nothing is started or stopped.
    pub async fn recover(self: &Arc<Self>) {
        let (records, problems) = self.store.load_all();
        for problem in problems {
            tracing::error!("resource history unreadable, kept as it is: {problem}");
        }
        for (resource, record) in records {
            let pending = record.pending.clone();
            let monitor = (record.monitor_interval_ms > 0).then(|| {
                (
                    Duration::from_millis(u64::from(record.monitor_interval_ms)),
                    Duration::from_millis(u64::from(record.monitor_timeout_ms.max(1000))),
                )
            });
            let agent = record.agent.clone();
            let params = record.params.clone();
            self.with_slot(&resource, &agent, |slot| slot.record = record);
            if let Some(pending) = pending {
                let this = self.clone();
                let resource = resource.clone();
                let (agent, params) = (agent.clone(), params.clone());
                tokio::spawn(async move {
                    this.finish_orphan(&resource, &pending).await;
                    let probe = Request {
                        resource,
                        agent,
                        action: "monitor".into(),
                        params,
                        timeout: Duration::from_secs(20),
                    };
                    if let Err(error) = this.execute(probe) {
                        tracing::error!("probe after restart refused: {error}");
                    }
                });
            }
            if let Some((interval, timeout)) = monitor {
                let request = Request {
                    resource: resource.clone(),
                    agent,
                    action: "monitor".into(),
                    params,
                    timeout,
                };
                if let Err(error) = self.start_monitor(request, interval) {
                    tracing::error!(resource, "recurring monitor not restarted: {error}");
                }
            }
        }
    }

    async fn finish_orphan(&self, resource: &str, pending: &Pending) {
        let deadline = pending.started + u64::from(pending.timeout_ms).div_ceil(1000);
        tracing::warn!(
            resource,
            action = %pending.action,
            pid = pending.pid,
            "lrmd restarted while {} {resource} ran: waiting for it, then probing",
            pending.action
        );
        while exec::same_process_alive(pending.pid, pending.start_ticks) {
            if now_unix() > deadline {
                exec::kill_group(pending.pid);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let result = OpResult {
            op_id: pending.op_id,
            resource: resource.to_owned(),
            action: pending.action.clone(),
            interval_ms: 0,
            status: status::LOST.into(),
            rc: rc::ERR_GENERIC,
            output: "lrmd stopped while this operation ran; its outcome was not seen".into(),
            duration_ms: 0,
            finished: now_unix(),
        };
        let known = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.get_mut(resource).map(|slot| {
                slot.record.pending = None;
                slot.record.remember(result.clone());
            })
        };
        if known.is_some() {
            self.persist(resource);
        }
        let _ = self.completed.send(result);
    }
}

async fn monitor_loop(
    executor: Arc<Executor>,
    op_id: u64,
    request: Request,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let resource = request.resource.clone();
    let mut previous: Option<(String, i32)> = None;
    // Every interval from the start of the last run, as Pacemaker schedules recurring ops.
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        let (done, result) = oneshot::channel();
        let queued = {
            let slots = executor.slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.get(&resource) {
                Some(slot) => slot
                    .queue
                    .send(Job {
                        op_id,
                        request: request.clone(),
                        interval_ms: millis(interval),
                        cancel: stopped.clone(),
                        done: Some(done),
                        signal: false,
                    })
                    .is_ok(),
                None => false,
            }
        };
        if !queued {
            return;
        }
        let Ok(result) = result.await else { return };
        if *stopped.borrow() {
            return;
        }
        let now = (result.status.clone(), result.rc);
        if previous.as_ref() != Some(&now) {
            previous = Some(now);
            let _ = executor.completed.send(result);
        }
    }
}

/// Runs the jobs of one resource, one after the other.
async fn worker(executor: Arc<Executor>, resource: String, mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(mut job) = jobs.recv().await {
        let result = run_job(&executor, &resource, &mut job).await;
        let record = {
            let mut slots = executor.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.get_mut(&resource).map(|slot| {
                slot.cancels.remove(&job.op_id);
                let changed = slot
                    .record
                    .last_of(&result.action, result.interval_ms)
                    .is_none_or(|last| last.rc != result.rc || last.status != result.status);
                let was_pending = slot.record.pending.take().is_some();
                slot.record.remember(result.clone());
                // Recurring monitors are saved when their result changes, not every interval.
                changed || was_pending || job.interval_ms == 0
            })
        };
        if record == Some(true) {
            executor.persist(&resource);
        }
        if job.signal {
            let _ = executor.completed.send(result.clone());
        }
        if let Some(done) = job.done.take() {
            let _ = done.send(result);
        }
    }
}

async fn run_job(executor: &Arc<Executor>, resource: &str, job: &mut Job) -> OpResult {
    let request = &job.request;
    let mut result = OpResult {
        op_id: job.op_id,
        resource: resource.to_owned(),
        action: request.action.clone(),
        interval_ms: job.interval_ms,
        status: status::CANCELLED.into(),
        rc: rc::ERR_GENERIC,
        output: String::new(),
        duration_ms: 0,
        finished: now_unix(),
    };
    if *job.cancel.borrow() {
        return result;
    }
    let params: HashMap<String, String> = request.params.clone().into_iter().collect();
    let call = match agent::invocation(
        resource,
        &request.agent,
        &request.action,
        &params,
        job.interval_ms,
        millis(request.timeout),
        &executor.options.dirs,
    ) {
        Ok(call) => call,
        Err(error) => {
            result.status = status::NOT_INSTALLED.into();
            result.rc = match error {
                AgentError::NotInstalled(_) => rc::ERR_INSTALLED,
                AgentError::Unimplemented(_) => rc::ERR_UNIMPLEMENTED,
                _ => rc::ERR_ARGS,
            };
            result.output = error.to_string();
            return result;
        }
    };
    let Some(process) = call.job else {
        // A status with no program of its own: what lrmd last did to it is the answer.
        let running = {
            let slots = executor.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .get(resource)
                .is_some_and(|slot| slot.record.believed_running())
        };
        result.status = status::DONE.into();
        result.rc = if running { rc::OK } else { rc::NOT_RUNNING };
        result.output = "no status script: answered from lrmd's history".into();
        result.finished = now_unix();
        return result;
    };
    let Ok(_permit) = executor.permits.clone().acquire_owned().await else {
        return result;
    };
    let limits = exec::Limits {
        timeout: request.timeout,
        kill_grace: executor.options.kill_grace,
        output_cap: 64 * 1024,
    };
    let mut cancel = job.cancel.clone();
    let persist_pending = job.interval_ms == 0;
    let op_id = job.op_id;
    let action = request.action.clone();
    let timeout_ms = millis(request.timeout);
    let finished = exec::run(
        &process,
        limits,
        async move {
            let _ = cancel.wait_for(|c| *c).await;
        },
        |pid| {
            if !persist_pending {
                return;
            }
            let pending = Pending {
                op_id,
                action,
                pid,
                start_ticks: exec::process_start_ticks(pid).unwrap_or(0),
                started: now_unix(),
                timeout_ms,
            };
            let known = {
                let mut slots = executor.slots.lock().unwrap_or_else(|e| e.into_inner());
                slots
                    .get_mut(resource)
                    .map(|slot| slot.record.pending = Some(pending))
            };
            if known.is_some() {
                executor.persist(resource);
            }
        },
    )
    .await;
    result.duration_ms = millis(finished.duration);
    result.finished = now_unix();
    result.output = tail(&finished.output, RESULT_OUTPUT);
    match finished.outcome {
        Outcome::Exited(code) => {
            result.status = status::DONE.into();
            result.rc = agent::map_result(call.class, &call.action, code, &finished.output);
        }
        Outcome::Signalled(signal) => {
            result.status = status::DONE.into();
            result.rc = rc::ERR_GENERIC;
            result.output.push_str(&format!("\n[killed by signal {signal}]"));
        }
        Outcome::TimedOut => {
            result.status = status::TIMEOUT.into();
            result.rc = rc::ERR_GENERIC;
        }
        Outcome::Cancelled => {
            result.status = status::CANCELLED.into();
        }
        Outcome::SpawnFailed(message) => {
            result.status = status::NOT_INSTALLED.into();
            result.rc = rc::ERR_INSTALLED;
            result.output = message;
        }
    }
    if job.interval_ms > 0 {
        tracing::debug!(resource, rc = result.rc, "recurring monitor");
        return result;
    }
    tracing::info!(
        resource,
        operation = %result.action,
        rc = result.rc,
        status = %result.status,
        duration_ms = result.duration_ms,
        "{} {resource}: {} ({})",
        result.action,
        rc::name(result.rc),
        result.status
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks that change one resource's record concurrently: what is on disk at the end is
    /// what lrmd holds in memory, never an older state saved last.
    #[test]
    fn the_newest_record_is_the_one_saved() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let resource_d = dir.path().join("resource.d");
        std::fs::create_dir_all(&resource_d).unwrap();
        let script = resource_d.join("quick");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let options = ExecutorOptions {
            dirs: AgentDirs {
                config_dir: dir.path().into(),
                rsc_tmp: dir.path().join("rsc_tmp"),
                ..AgentDirs::default()
            },
            max_parallel: 4,
            kill_grace: Duration::from_secs(1),
        };
        let store = Store::open(dir.path()).unwrap();
        runtime.block_on(async {
            let (executor, _results) = Executor::new(options, store.clone());
            // Rounds of four tasks changing the record at once; after each, disk and memory
            // must agree.
            for round in 0..400u64 {
                let mut tasks = tokio::task::JoinSet::new();
                for task in 0..4u64 {
                    let executor = executor.clone();
                    tasks.spawn(async move {
                        let request = Request {
                            resource: "r".into(),
                            agent: AgentId {
                                class: "heartbeat".into(),
                                provider: String::new(),
                                agent: "quick".into(),
                            },
                            action: "monitor".into(),
                            params: BTreeMap::new(),
                            timeout: Duration::from_secs(5),
                        };
                        if (round + task) % 2 == 0 {
                            let interval = Duration::from_millis(60_000 + task * 1000 + round);
                            executor.start_monitor(request, interval).unwrap();
                        } else {
                            executor.stop_monitor("r");
                        }
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.unwrap();
                }
                // Compared under the record's writer turn: the monitor's own saves (its
                // pending operation, its result) go on in the background, and a load racing
                // two of them can read a slot before it is rewritten and the other while it
                // is (lrmd itself loads only before anything writes).
                let writer = executor.slots.lock().unwrap()["r"].writer.clone();
                let _turn = writer.lock().unwrap();
                let held = executor.slots.lock().unwrap()["r"].record.monitor_interval_ms;
                let (saved, problems) = store.load_all();
                assert!(problems.is_empty(), "{problems:?}");
                assert_eq!(
                    saved["r"].monitor_interval_ms, held,
                    "round {round}: an older state was saved last"
                );
            }
        });
    }
}
