//! Fencing requests: one at a time per target (two fences of one node never overlap), each
//! device able to fence the target tried in configuration order with its retries, the
//! outcome recorded truthfully with who asked and why, and kept in STATE_DIR/stonithd.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use hbapi::stonith::{DeviceInfo, FenceRecord};

use fencing::{Device, PluginError};

/// Records kept.
pub const HISTORY_LIMIT: usize = 1000;

/// What the daemon signals.
#[derive(Debug, Clone)]
pub enum Event {
    /// A fence began.
    Started {
        /// Operation.
        op_id: u64,
        /// Target.
        target: String,
        /// Action.
        action: String,
        /// Reason.
        reason: String,
    },
    /// A fence ended.
    Finished(FenceRecord),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct HistoryFile {
    #[serde(default)]
    records: Vec<FenceRecord>,
}

/// The fencing engine.
pub struct Fencer {
    local_node: String,
    devices: Vec<Device>,
    targets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    meatware: Mutex<HashMap<String, oneshot::Sender<u32>>>,
    history: Mutex<Vec<FenceRecord>>,
    history_path: PathBuf,
    next_op: AtomicU64,
    events: mpsc::UnboundedSender<Event>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Fencer {
    /// A fencer for `devices`; its history is loaded from `state_dir`.
    pub fn new(
        local_node: &str,
        devices: Vec<Device>,
        state_dir: &std::path::Path,
    ) -> (Arc<Fencer>, mpsc::UnboundedReceiver<Event>) {
        let dir = state_dir.join("stonithd");
        match hbapi::statefile::private_dir(&dir) {
            Ok(hbapi::statefile::Tightened::No) => {}
            Ok(hbapi::statefile::Tightened::From(mode)) => {
                tracing::warn!("{}: was mode {mode:04o}, made private (0700)", dir.display());
            }
            Err(error) => tracing::error!("{}: {error}", dir.display()),
        }
        let history_path = dir.join("history.toml");
        let history = std::fs::read_to_string(&history_path)
            .ok()
            .and_then(|text| match toml::from_str::<HistoryFile>(&text) {
                Ok(file) => Some(file.records),
                Err(error) => {
                    tracing::error!(
                        "{}: unreadable, starting a new history: {error}",
                        history_path.display()
                    );
                    None
                }
            })
            .unwrap_or_default();
        let next = history.iter().map(|r| r.op_id).max().unwrap_or(0) + 1;
        let (events, receiver) = mpsc::unbounded_channel();
        (
            Arc::new(Fencer {
                local_node: local_node.to_owned(),
                devices,
                targets: Mutex::new(HashMap::new()),
                meatware: Mutex::new(HashMap::new()),
                history: Mutex::new(history),
                history_path,
                next_op: AtomicU64::new(next),
                events,
            }),
            receiver,
        )
    }

    /// The configured devices with their hosts.
    pub async fn devices(&self) -> Vec<DeviceInfo> {
        let mut list = Vec::new();
        for device in &self.devices {
            list.push(DeviceInfo {
                id: device.id.clone(),
                device_type: device.device_type.clone(),
                hosts: device.hosts(&self.local_node).await.unwrap_or_default(),
            });
        }
        list
    }

    /// The history, oldest first.
    pub fn history(&self) -> Vec<FenceRecord> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Queues a fence of `target`; returns its operation id at once.
    pub fn request(self: &Arc<Self>, target: &str, action: &str, reason: &str, requested_by: u32) -> u64 {
        let op_id = self.next_op.fetch_add(1, Ordering::Relaxed);
        let this = self.clone();
        let (target, action, reason) = (target.to_owned(), action.to_owned(), reason.to_owned());
        tokio::spawn(async move {
            let queue = {
                let mut targets = this.targets.lock().unwrap_or_else(|e| e.into_inner());
                targets.entry(target.clone()).or_default().clone()
            };
            // tokio's Mutex is fair: requests for one target run in the order they came.
            let _turn = queue.lock().await;
            let _ = this.events.send(Event::Started {
                op_id,
                target: target.clone(),
                action: action.clone(),
                reason: reason.clone(),
            });
            tracing::warn!(target_node = %target, %action, %reason, requested_by, "fencing {target}: {action} ({reason})");
            let began = Instant::now();
            let started = now_unix();
            let (device, outcome, confirmed_by) = this.fence(&target, &action).await;
            let record = FenceRecord {
                op_id,
                target: target.clone(),
                action,
                reason,
                requested_by,
                device,
                ok: outcome.is_ok(),
                message: match &outcome {
                    Ok(message) => message.clone(),
                    Err(error) => error.to_string(),
                },
                started,
                duration_ms: u32::try_from(began.elapsed().as_millis()).unwrap_or(u32::MAX),
                confirmed_by,
            };
            if record.ok {
                tracing::warn!(target_node = %target, device = %record.device, "{target} fenced: {}", record.message);
            } else {
                tracing::error!(target_node = %target, "fencing {target} FAILED: {}", record.message);
            }
            this.remember(record.clone());
            let _ = this.events.send(Event::Finished(record));
        });
        op_id
    }

    async fn fence(&self, target: &str, action: &str) -> (String, Result<String, PluginError>, i64) {
        let mut last: (String, Result<String, PluginError>) = (
            String::new(),
            Err(PluginError::Config(format!(
                "no configured device can fence {target}"
            ))),
        );
        for device in &self.devices {
            let hosts = match device.hosts_for_fencing(&self.local_node).await {
                Ok(hosts) => hosts,
                Err(error) => {
                    tracing::warn!(device = %device.id, "cannot list its hosts: {error}");
                    continue;
                }
            };
            if !hosts.iter().any(|h| h.eq_ignore_ascii_case(target)) {
                continue;
            }
            for attempt in 1..=device.attempts() {
                let (confirm_tx, confirm_rx) = oneshot::channel::<u32>();
                let confirmed_by = Arc::new(Mutex::new(-1i64));
                if device.waits_for_operator() {
                    if let Ok(mut waiting) = self.meatware.lock() {
                        waiting.insert(target.to_ascii_lowercase(), confirm_tx);
                    }
                }
                let recorder = confirmed_by.clone();
                let confirmed = async move {
                    match confirm_rx.await {
                        Ok(uid) => {
                            if let Ok(mut slot) = recorder.lock() {
                                *slot = i64::from(uid);
                            }
                            Ok(())
                        }
                        Err(_) => std::future::pending().await,
                    }
                };
                let outcome = device
                    .fence(
                        action,
                        target,
                        &self.local_node,
                        confirmed,
                        std::future::pending(),
                    )
                    .await;
                if let Ok(mut waiting) = self.meatware.lock() {
                    waiting.remove(&target.to_ascii_lowercase());
                }
                let by = confirmed_by.lock().map(|v| *v).unwrap_or(-1);
                match outcome {
                    Ok(message) => return (device.id.clone(), Ok(message), by),
                    Err(error) => {
                        tracing::warn!(device = %device.id, attempt, "fencing {target} with {} failed: {error}", device.id);
                        last = (device.id.clone(), Err(error));
                    }
                }
            }
        }
        (last.0, last.1, -1)
    }

    /// An operator confirms that `target` was power-cycled; whether a meatware fence waited.
    pub fn confirm_meatware(&self, target: &str, uid: u32) -> bool {
        let waiting = self
            .meatware
            .lock()
            .ok()
            .and_then(|mut waiting| waiting.remove(&target.to_ascii_lowercase()));
        match waiting {
            Some(sender) => {
                tracing::warn!(
                    target_node = target,
                    uid,
                    "operator (uid {uid}) confirmed {target} was reset"
                );
                sender.send(uid).is_ok()
            }
            None => false,
        }
    }

    /// Adds `record` to the history and saves it. The history stays locked while it is
    /// written, so that the file is always the newest history: two fences finishing at once
    /// cannot save in the opposite order.
    fn remember(&self, record: FenceRecord) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.push(record);
        let excess = history.len().saturating_sub(HISTORY_LIMIT);
        history.drain(..excess);
        let file = HistoryFile {
            records: history.clone(),
        };
        let written = toml::to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                hbapi::statefile::replace(
                    &self.history_path,
                    text.as_bytes(),
                    hbapi::statefile::PRIVATE_FILE_MODE,
                )
                .map_err(|e| e.to_string())
            });
        drop(history);
        if let Err(error) = written {
            tracing::error!(
                "{}: fencing history not saved: {error}",
                self.history_path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(op_id: u64) -> FenceRecord {
        FenceRecord {
            op_id,
            target: "bravo".into(),
            action: "reboot".into(),
            reason: "test".into(),
            requested_by: 0,
            device: "null".into(),
            ok: true,
            message: String::new(),
            started: 0,
            duration_ms: 0,
            confirmed_by: -1,
        }
    }

    /// Fences finishing at once: the saved history is private and holds every one of them.
    #[test]
    fn the_history_is_private_and_no_record_is_lost_to_a_concurrent_save() {
        let dir = tempfile::tempdir().unwrap();
        let (fencer, _events) = Fencer::new("alpha", Vec::new(), dir.path());
        // Rounds of eight fences finishing together; after each, the file holds them all.
        for round in 0..40u64 {
            let together = Arc::new(std::sync::Barrier::new(8));
            let writers: Vec<_> = (0..8u64)
                .map(|writer| {
                    let (fencer, together) = (fencer.clone(), together.clone());
                    std::thread::spawn(move || {
                        together.wait();
                        fencer.remember(record(round * 8 + writer + 1));
                    })
                })
                .collect();
            for writer in writers {
                writer.join().unwrap();
            }
            let (reloaded, _events) = Fencer::new("alpha", Vec::new(), dir.path());
            assert_eq!(
                reloaded.history().len() as u64,
                (round + 1) * 8,
                "round {round}: a record was lost to a save in the wrong order"
            );
        }
        let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("stonithd")), 0o700);
        assert_eq!(mode(&dir.path().join("stonithd/history.toml")), 0o600);
    }
}
