//! Files the daemons keep across restarts. They may hold secrets (lrmd's records carry OCF
//! parameters, passwords among them; stonithd's history says who fenced whom), so their
//! directories are private to root and the files are written mode 0600. A replaced file is
//! written beside the old one under a name no other writer uses, fsync'd, renamed over it, and
//! the directory fsync'd: a reader sees the old file or the new one, never a torn one, and two
//! writers cannot rename each other's half-written file.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of a private state directory.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of a private state file.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its parents) private to its owner, or makes an existing one private:
/// a directory left readable by an older version is tightened, and the caller is told so it
/// can say it once.
pub fn private_dir(dir: &Path) -> std::io::Result<Tightened> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)?;
    tighten(dir, PRIVATE_DIR_MODE)
}

/// Whether a file or directory had to be made private.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tightened {
    /// It already was.
    No,
    /// Its mode was this.
    From(u32),
}

/// Removes group and other permissions from `path` (to `mode` at most).
pub fn tighten(path: &Path, mode: u32) -> std::io::Result<Tightened> {
    let current = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if current & 0o077 == 0 {
        return Ok(Tightened::No);
    }
    std::fs::set_permissions(path, Permissions::from_mode(current & mode))?;
    Ok(Tightened::From(current))
}

/// Replaces `path` with `bytes` (mode `mode`), durably and atomically (see the module).
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let temporary = path.with_file_name(temporary_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_private_dir_is_created_private_and_an_open_one_is_tightened() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b");
        assert_eq!(private_dir(&fresh).unwrap(), Tightened::No);
        assert_eq!(mode(&fresh), 0o700);
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, Permissions::from_mode(0o755)).unwrap();
        assert_eq!(private_dir(&open).unwrap(), Tightened::From(0o755));
        assert_eq!(mode(&open), 0o700);
    }

    #[test]
    fn replace_writes_private_files_and_leaves_no_temporary_behind() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("history.toml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        replace(&path, b"new", PRIVATE_FILE_MODE).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["history.toml"]);
    }

    #[test]
    fn concurrent_writers_never_leave_a_torn_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state");
        let writers: Vec<_> = (0..8u8)
            .map(|writer| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let body = vec![b'a' + writer; 64 * 1024];
                    for _ in 0..20 {
                        replace(&path, &body, PRIVATE_FILE_MODE).unwrap();
                    }
                })
            })
            .collect();
        let reader = {
            let path = path.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    if let Ok(bytes) = std::fs::read(&path) {
                        assert_eq!(bytes.len(), 64 * 1024, "torn");
                        assert!(bytes.iter().all(|b| *b == bytes[0]), "mixed");
                    }
                }
            })
        };
        for writer in writers {
            writer.join().unwrap();
        }
        reader.join().unwrap();
    }
}
