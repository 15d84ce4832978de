//! What lrmd knows about each resource, kept in STATE_DIR/lrmd/ so that an lrmd that is
//! killed and respawned finds it again: the agent and parameters, the recurring monitor, the
//! last result of each action, and the operation that was running (with its pid, so that the
//! new lrmd can wait for it or kill it, and never runs it a second time).
//!
//! One TOML file per resource, written to a temporary file and renamed into place: lrmd dying
//! at any point leaves the old version or the new one, never half of one. The files are not
//! fsync'd: they must survive lrmd, not the machine — after a power loss nothing they
//! describe is running any more, and crmd probes every resource when the node comes back.
//! (An fsync per operation was most of an operation's cost.)

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use hbapi::lrmd::{AgentId, OpResult};

/// An operation in flight, as persisted before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Its id.
    pub op_id: u64,
    /// Its action.
    pub action: String,
    /// The agent's pid (and process group).
    pub pid: u32,
    /// The agent's start time in /proc ticks (tells a reused pid apart).
    pub start_ticks: u64,
    /// When it started (seconds since the epoch).
    pub started: u64,
    /// Its timeout.
    pub timeout_ms: u32,
}

/// Everything persisted about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    /// Its agent.
    pub agent: AgentId,
    /// Its parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Recurring monitor interval (0: none).
    #[serde(default)]
    pub monitor_interval_ms: u32,
    /// Recurring monitor timeout.
    #[serde(default)]
    pub monitor_timeout_ms: u32,
    /// Last result of each action (recurring monitors separate from one-shot ones).
    #[serde(default)]
    pub last: Vec<OpResult>,
    /// The operation running when this was written.
    #[serde(default)]
    pub pending: Option<Pending>,
}

impl ResourceRecord {
    /// A record for a resource seen for the first time.
    pub fn new(agent: AgentId) -> Self {
        ResourceRecord {
            agent,
            params: BTreeMap::new(),
            monitor_interval_ms: 0,
            monitor_timeout_ms: 0,
            last: Vec::new(),
            pending: None,
        }
    }

    /// Keeps `result` as the last of its action and interval.
    pub fn remember(&mut self, result: OpResult) {
        self.last
            .retain(|r| !(r.action == result.action && r.interval_ms == result.interval_ms));
        self.last.push(result);
        self.last
            .sort_by(|a, b| (&a.action, a.interval_ms).cmp(&(&b.action, b.interval_ms)));
    }

    /// The last result of `action` at `interval_ms`.
    pub fn last_of(&self, action: &str, interval_ms: u32) -> Option<&OpResult> {
        self.last
            .iter()
            .find(|r| r.action == action && r.interval_ms == interval_ms)
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StoreError {
    /// File or directory.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// The directory of records.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A resource id as a file name: bytes outside `A-Z a-z 0-9 _ - .` as `%XX` (Heartbeat ids
/// such as `IPaddr::10.0.0.1/24/eth0` contain `/`), and a leading `.` escaped too.
pub fn file_name(resource: &str) -> String {
    let mut name = String::with_capacity(resource.len() + 5);
    for (index, byte) in resource.bytes().enumerate() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-') || (byte == b'.' && index > 0) {
            name.push(byte as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name.push_str(".toml");
    name
}

fn resource_of(file: &str) -> Option<String> {
    let stem = file.strip_suffix(".toml")?;
    let mut bytes = Vec::with_capacity(stem.len());
    let mut chars = stem.bytes();
    while let Some(byte) = chars.next() {
        if byte == b'%' {
            let high = chars.next()?;
            let low = chars.next()?;
            let hex = [high, low];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(byte);
        }
    }
    String::from_utf8(bytes).ok()
}

impl Store {
    /// Opens (creating) `state_dir/lrmd`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let dir = state_dir.join("lrmd");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError {
            path: dir.clone(),
            message: e.to_string(),
        })?;
        Ok(Store { dir })
    }

    /// Every record; files that cannot be read are reported and skipped (they are not
    /// deleted, so nothing is lost to a bug).
    pub fn load_all(&self) -> (BTreeMap<String, ResourceRecord>, Vec<StoreError>) {
        let mut records = BTreeMap::new();
        let mut problems = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return (records, problems);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(resource) = entry.file_name().to_str().and_then(resource_of) else {
                continue;
            };
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| toml::from_str::<ResourceRecord>(&text).map_err(|e| e.to_string()));
            match parsed {
                Ok(record) => {
                    records.insert(resource, record);
                }
                Err(message) => problems.push(StoreError { path, message }),
            }
        }
        (records, problems)
    }

    /// Writes one record durably.
    pub fn save(&self, resource: &str, record: &ResourceRecord) -> Result<(), StoreError> {
        let path = self.dir.join(file_name(resource));
        let error = |e: &dyn std::fmt::Display| StoreError {
            path: path.clone(),
            message: e.to_string(),
        };
        let text = toml::to_string(record).map_err(|e| error(&e))?;
        let temporary = path.with_extension("toml.new");
        let mut file = std::fs::File::create(&temporary).map_err(|e| error(&e))?;
        file.write_all(text.as_bytes()).map_err(|e| error(&e))?;
        std::fs::rename(&temporary, &path).map_err(|e| error(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_round_trip_and_odd_ids_are_safe_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut record = ResourceRecord::new(AgentId {
            class: "heartbeat".into(),
            provider: String::new(),
            agent: "IPaddr".into(),
        });
        record
            .params
            .insert("1".into(), "10.0.0.1/24/eth0 $(x)\n\"q\"".into());
        record.pending = Some(Pending {
            op_id: 7,
            action: "start".into(),
            pid: 42,
            start_ticks: 1234,
            started: 1_700_000_000,
            timeout_ms: 20_000,
        });
        record.remember(OpResult {
            op_id: 3,
            resource: "r".into(),
            action: "monitor".into(),
            interval_ms: 0,
            status: "done".into(),
            rc: 7,
            output: "not running\n".into(),
            duration_ms: 5,
            finished: 1_700_000_000,
        });
        for id in ["IPaddr::10.0.0.1/24/eth0", "../../etc/passwd", ".hidden", "plain"] {
            assert!(!file_name(id).contains('/'), "{id}");
            assert!(!file_name(id).starts_with('.'), "{id}");
            assert_eq!(resource_of(&file_name(id)).as_deref(), Some(id));
            store.save(id, &record).unwrap();
        }
        let (loaded, problems) = store.load_all();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(loaded.len(), 4);
        assert_eq!(loaded["IPaddr::10.0.0.1/24/eth0"], record);
    }

    #[test]
    fn a_damaged_record_is_reported_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let path = dir.path().join("lrmd").join(file_name("broken"));
        std::fs::write(&path, "agent = 3\n").unwrap();
        let (loaded, problems) = store.load_all();
        assert!(loaded.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(path.exists());
    }
}
