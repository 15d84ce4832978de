//! The supervisor: the I/O around the pure respawn policy.
//!
//! It owns the children, feeds the policy with exits and timers, carries out what the policy
//! returns, and publishes every change (a watch channel for the bus interface, a signal on the
//! bus, a log line).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use zbus::object_server::SignalEmitter;

use hbapi::master::ChildInfo;

use super::child::{self, ChildSpec};
use super::iface::MasterInterface;
use super::policy::{Action, ChildLife, ChildState, Event, Exit, RespawnPolicy};

/// Something that happened to a child's process, tagged with the spawn it belongs to.
#[derive(Debug)]
enum Internal {
    Exited {
        name: String,
        generation: u64,
        exit: Exit,
    },
    BackoffElapsed {
        name: String,
        generation: u64,
    },
    KillTimeout {
        name: String,
        generation: u64,
    },
}

struct Supervised {
    spec: ChildSpec,
    life: ChildLife,
    pid: Option<u32>,
    generation: u64,
    retired: bool,
}

impl Supervised {
    fn info(&self) -> ChildInfo {
        ChildInfo {
            name: self.spec.name.clone(),
            pid: self.pid.unwrap_or(0),
            state: self.life.state.as_str().to_owned(),
            restarts: self.life.restarts,
            last_exit: self
                .life
                .last_exit
                .map(|exit| exit.to_string())
                .unwrap_or_default(),
            command: self.spec.command_line(),
            core: self.spec.core,
        }
    }
}

/// Supervises a list of children.
pub struct Supervisor {
    children: Vec<Supervised>,
    policy: RespawnPolicy,
    stop_timeout: Duration,
    env: Vec<(String, String)>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    published: watch::Sender<Vec<ChildInfo>>,
    emitter: Option<SignalEmitter<'static>>,
}

impl Supervisor {
    /// A supervisor with no children yet. `env` goes to every child.
    pub fn new(policy: RespawnPolicy, stop_timeout: Duration, env: Vec<(String, String)>) -> Self {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let (published, _) = watch::channel(Vec::new());
        Supervisor {
            children: Vec::new(),
            policy,
            stop_timeout,
            env,
            internal_tx,
            internal_rx,
            published,
            emitter: None,
        }
    }

    /// Where the bus interface reads the children from.
    pub fn subscribe(&self) -> watch::Receiver<Vec<ChildInfo>> {
        self.published.subscribe()
    }

    /// From now on, state changes are also signalled on the bus.
    pub fn set_emitter(&mut self, emitter: SignalEmitter<'static>) {
        self.emitter = Some(emitter);
    }

    /// Replaces the environment given to children started from now on.
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// Sends `signal` to every running core daemon (the log level signals, passed on).
    pub fn signal_core(&self, signal: nix::sys::signal::Signal) {
        for child in self.children.iter().filter(|c| c.spec.core && !c.retired) {
            if let Some(pid) = child.pid {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
            }
        }
    }

    /// A core daemon that exited with status 100 (it refused the configuration or its
    /// environment, and asked not to be respawned): the node cannot run without it.
    pub fn core_refused(&self) -> Option<String> {
        self.children
            .iter()
            .find(|c| c.spec.core && !c.retired && c.life.state == ChildState::Exited)
            .map(|c| c.spec.name.clone())
    }

    /// The core daemons with a live process: (name, pid).
    pub fn core_pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .filter(|c| c.spec.core && !c.retired && c.life.state.is_alive())
            .filter_map(|c| c.pid.map(|pid| (c.spec.name.clone(), pid)))
            .collect()
    }

    /// Kills the child `name` (its whole process group) as a hung one; its exit is then handled
    /// as any death (respawned).
    pub fn kill_hung(&self, name: &str) {
        if let Some(pid) = self
            .children
            .iter()
            .find(|c| c.spec.name == name && c.life.state == ChildState::Running)
            .and_then(|c| c.pid)
        {
            child::signal_group(pid, Signal::SIGKILL);
        }
    }

    /// Whether the child `name` has a live process.
    pub fn is_running(&self, name: &str) -> bool {
        self.children
            .iter()
            .any(|c| c.spec.name == name && c.pid.is_some() && c.life.state.is_alive())
    }

    /// Names of the children, in start order.
    pub fn names(&self) -> Vec<String> {
        self.children
            .iter()
            .filter(|c| !c.retired)
            .map(|c| c.spec.name.clone())
            .collect()
    }

    /// Adds and starts a child.
    pub async fn add(&mut self, spec: ChildSpec) {
        self.children.push(Supervised {
            spec,
            life: ChildLife::default(),
            pid: None,
            generation: 0,
            retired: false,
        });
        let index = self.children.len() - 1;
        self.feed(index, Event::RestartRequested).await;
    }

    /// Brings the respawn children in line with `specs` (after a reload): new ones start,
    /// vanished ones stop, changed ones restart. Core daemons are left alone.
    pub async fn reconcile(&mut self, specs: Vec<ChildSpec>) {
        for index in 0..self.children.len() {
            let child = &self.children[index];
            if child.spec.core || child.retired {
                continue;
            }
            match specs.iter().find(|spec| spec.name == child.spec.name) {
                None => {
                    tracing::info!(child = %child.spec.name, "no longer configured; stopping it");
                    self.children[index].retired = true;
                    self.feed(index, Event::StopRequested).await;
                }
                Some(spec) if *spec != child.spec => {
                    tracing::info!(child = %child.spec.name, "command changed; restarting it");
                    self.children[index].spec = spec.clone();
                    self.feed(index, Event::RestartRequested).await;
                }
                Some(_) => {}
            }
        }
        for spec in specs {
            if !self
                .children
                .iter()
                .any(|c| c.spec.name == spec.name && !c.retired)
            {
                tracing::info!(child = %spec.name, "newly configured; starting it");
                self.add(spec).await;
            }
        }
        self.children.retain(|c| !c.retired || c.life.state.is_alive());
        self.publish(None).await;
    }

    /// Restarts the named child (clears a give-up).
    pub async fn restart(&mut self, name: &str) -> Result<(), String> {
        let index = self
            .children
            .iter()
            .position(|c| c.spec.name == name && !c.retired)
            .ok_or_else(|| format!("no child named {name:?} (children: {})", self.names().join(", ")))?;
        self.feed(index, Event::RestartRequested).await;
        Ok(())
    }

    /// Waits for the next process event and handles it. Cancel-safe.
    pub async fn step(&mut self) {
        let Some(event) = self.internal_rx.recv().await else {
            return;
        };
        self.handle(event).await;
    }

    async fn handle(&mut self, event: Internal) {
        let (name, generation) = match &event {
            Internal::Exited { name, generation, .. }
            | Internal::BackoffElapsed { name, generation }
            | Internal::KillTimeout { name, generation } => (name.clone(), *generation),
        };
        let Some(index) = self
            .children
            .iter()
            .position(|c| c.spec.name == name && c.generation == generation)
        else {
            return;
        };
        match event {
            Internal::Exited { exit, .. } => {
                let pid = self.children[index].pid.take();
                if let Some(pid) = pid {
                    // Whatever the child left in its process group goes with it.
                    child::signal_group(pid, Signal::SIGKILL);
                }
                let state = self.children[index].life.state;
                if state == ChildState::Stopping {
                    tracing::info!(child = %name, %exit, "stopped");
                } else {
                    tracing::warn!(child = %name, %exit, "exited");
                }
                self.feed(index, Event::Exited(exit)).await;
                if self.children[index].retired && !self.children[index].life.state.is_alive() {
                    self.children.remove(index);
                    self.publish(None).await;
                }
            }
            Internal::BackoffElapsed { .. } => self.feed(index, Event::BackoffElapsed).await,
            Internal::KillTimeout { .. } => {
                if let (ChildState::Stopping, Some(pid)) =
                    (self.children[index].life.state, self.children[index].pid)
                {
                    tracing::warn!(child = %name, pid, "did not stop within {:?}; killing it", self.stop_timeout);
                    child::signal_group(pid, Signal::SIGKILL);
                }
            }
        }
    }

    /// Feeds the policy and carries out its action.
    async fn feed(&mut self, index: usize, event: Event) {
        let now = Instant::now();
        let mut next = self.children[index].life.next(event, now, &self.policy);
        while let Some(action) = next.take() {
            let child = &mut self.children[index];
            match action {
                Action::Spawn => {
                    child.generation += 1;
                    match child::spawn(&child.spec, &self.env) {
                        Ok(mut process) => {
                            let pid = process.id();
                            child.pid = pid;
                            next = child.life.next(Event::Spawned, Instant::now(), &self.policy);
                            tracing::info!(child = %child.spec.name, pid = pid.unwrap_or(0), restarts = child.life.restarts, "started");
                            let tx = self.internal_tx.clone();
                            let name = child.spec.name.clone();
                            let generation = child.generation;
                            tokio::spawn(async move {
                                let exit = match process.wait().await {
                                    Ok(status) => exit_of(status),
                                    Err(_) => Exit::Code(-1),
                                };
                                let _ = tx.send(Internal::Exited {
                                    name,
                                    generation,
                                    exit,
                                });
                            });
                        }
                        Err(message) => {
                            tracing::error!(child = %child.spec.name, "{message}");
                            next = child.life.next(Event::SpawnFailed, Instant::now(), &self.policy);
                        }
                    }
                }
                Action::SpawnAfter(delay) => {
                    tracing::warn!(child = %child.spec.name, quick_deaths = child.life.quick_deaths, "restarting in {delay:?}");
                    let tx = self.internal_tx.clone();
                    let name = child.spec.name.clone();
                    let generation = child.generation;
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send(Internal::BackoffElapsed { name, generation });
                    });
                }
                Action::Kill if child.pid.is_none() => {
                    // The policy asks to kill only a process it was told exists; should the two
                    // ever disagree, waiting for an exit that cannot come would hang the stop.
                    tracing::error!(child = %child.spec.name, "asked to stop a child with no process; taking it as stopped");
                    next = child.life.next(Event::Exited(Exit::Code(0)), now, &self.policy);
                }
                Action::Kill => {
                    if let Some(pid) = child.pid {
                        child::signal_group(pid, Signal::SIGTERM);
                        let tx = self.internal_tx.clone();
                        let name = child.spec.name.clone();
                        let generation = child.generation;
                        let timeout = child.spec.stop_timeout.unwrap_or(self.stop_timeout);
                        tokio::spawn(async move {
                            tokio::time::sleep(timeout).await;
                            let _ = tx.send(Internal::KillTimeout { name, generation });
                        });
                    }
                }
            }
        }
        let child = &self.children[index];
        if child.life.state == ChildState::GaveUp {
            tracing::error!(
                child = %child.spec.name,
                deaths = child.life.quick_deaths,
                "respawning too fast: died {} times, each within {:?} of its start; giving up (restart it with RestartChild once fixed)",
                child.life.quick_deaths,
                self.policy.quick_death_window
            );
        } else if child.life.state == ChildState::Exited {
            tracing::warn!(child = %child.spec.name, "exited with status 100: not respawning");
        }
        self.publish(Some(index)).await;
    }

    async fn publish(&mut self, changed: Option<usize>) {
        let snapshot: Vec<ChildInfo> = self.children.iter().map(Supervised::info).collect();
        self.published.send_replace(snapshot);
        if let (Some(index), Some(emitter)) = (changed, &self.emitter) {
            let info = self.children[index].info();
            if let Err(error) = MasterInterface::child_state_changed(emitter, info).await {
                tracing::debug!("cannot signal a child state change: {error}");
            }
        }
    }

    /// Stops every child, last started first, each before the next; none is restarted.
    pub async fn stop_all(&mut self) {
        self.stop_down_to(None).await;
    }

    /// Stops children, last started first, each before the next, down to and including
    /// `name`; returns how that one ended (`None`: it was not running). Nothing is restarted
    /// from now on.
    pub async fn stop_through(&mut self, name: &str) -> Option<Exit> {
        self.stop_down_to(Some(name)).await
    }

    async fn stop_down_to(&mut self, last: Option<&str>) -> Option<Exit> {
        // From now on nothing starts, whatever dies or whichever back-off ends meanwhile.
        for index in 0..self.children.len() {
            self.feed(index, Event::Hold).await;
        }
        let mut index = self.children.len();
        while index > 0 {
            index -= 1;
            let Some(child) = self.children.get(index) else {
                continue;
            };
            let name = child.spec.name.clone();
            let alive = child.life.state.is_alive();
            if alive {
                tracing::info!(child = %name, "stopping");
            }
            self.feed(index, Event::StopRequested).await;
            while self
                .children
                .iter()
                .any(|c| c.spec.name == name && c.life.state.is_alive())
            {
                let Some(event) = self.internal_rx.recv().await else {
                    break;
                };
                self.handle(event).await;
            }
            if last == Some(name.as_str()) {
                let child = self.children.iter().find(|c| c.spec.name == name);
                return child.filter(|_| alive).and_then(|c| c.life.last_exit);
            }
        }
        None
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Code(-1),
    }
}
