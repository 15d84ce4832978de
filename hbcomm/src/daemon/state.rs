//! What hbcomm keeps across restarts: the heartbeat generation and the node's uuid.
//!
//! The generation goes up by one at every start and never backwards: peers drop packets of an
//! older generation as replays. It is written to a temporary file, fsync'd, renamed over the
//! old one, and the directory fsync'd. A lost file is not silently replaced by wall time: the
//! fallback is said loudly in the log, since a clock set back would then reopen old packets.

use std::path::{Path, PathBuf};

/// File holding the generation (decimal).
pub const GENERATION_FILE: &str = "hb_generation";
/// File holding the node uuid (16 raw bytes).
pub const UUID_FILE: &str = "hb_uuid";

/// Errors reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

fn error(path: &Path, message: impl std::fmt::Display) -> StateError {
    StateError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    hbapi::statefile::replace(path, bytes, 0o644).map_err(|e| error(path, e))
}

/// Reads the last generation, stores and returns the next one.
pub fn next_generation(state_dir: &Path) -> Result<u32, StateError> {
    let path = state_dir.join(GENERATION_FILE);
    let next = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let last: u32 = text
                .trim()
                .parse()
                .map_err(|_| error(&path, format!("not a generation number: {:?}", text.trim())))?;
            last.checked_add(1)
                .ok_or_else(|| error(&path, "generation number exhausted"))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seconds = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1);
            let from_clock = u32::try_from(seconds).unwrap_or(u32::MAX).max(1);
            tracing::warn!(
                path = %path.display(),
                generation = from_clock,
                "NO GENERATION FILE: starting from the wall clock. If this node ran before and its state directory was lost, peers may take its packets for replays until the clock passes the old generation; if the clock was set back, old packets could be replayed. Keep {} on persistent storage.",
                state_dir.display()
            );
            from_clock
        }
        Err(e) => return Err(error(&path, e)),
    };
    write_durably(&path, format!("{next}\n").as_bytes())?;
    Ok(next)
}

/// The node's uuid, created once.
pub fn node_uuid(state_dir: &Path) -> Result<[u8; 16], StateError> {
    let path = state_dir.join(UUID_FILE);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 16 => {
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(&bytes);
            Ok(uuid)
        }
        Ok(_) => Err(error(&path, "not a 16-byte uuid")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut uuid = [0u8; 16];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut uuid))
                .map_err(|e| error(Path::new("/dev/urandom"), e))?;
            // RFC 4122 version 4, variant 1.
            uuid[6] = (uuid[6] & 0x0f) | 0x40;
            uuid[8] = (uuid[8] & 0x3f) | 0x80;
            write_durably(&path, &uuid)?;
            Ok(uuid)
        }
        Err(e) => Err(error(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_only_goes_up_and_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = next_generation(dir.path()).unwrap();
        let second = next_generation(dir.path()).unwrap();
        assert_eq!(second, first + 1);
        std::fs::write(dir.path().join(GENERATION_FILE), "41\n").unwrap();
        assert_eq!(next_generation(dir.path()).unwrap(), 42);
        std::fs::write(dir.path().join(GENERATION_FILE), "garbage").unwrap();
        assert!(next_generation(dir.path())
            .unwrap_err()
            .to_string()
            .contains("not a generation number"));
    }

    #[test]
    fn uuid_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(node_uuid(dir.path()).unwrap(), node_uuid(dir.path()).unwrap());
    }
}
