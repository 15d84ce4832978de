//! The lab's watchdog: what a hardware watchdog does to a machine, done to a lab node's
//! cgroup. A test node's ha.cf names a FIFO as its `watchdog` device; a thread of the harness
//! reads it as a driver would take writes: any byte arms it and starts the timer over, `V`
//! disarms it (Linux's magic close — written only as the device is closed), and when the
//! timer runs out the node is reset: for the fault harness ([`reset_cgroup`]) its cgroup is
//! killed and the ledger says "NODE off all", as the power switch does. Closing the FIFO
//! without `V` (the stack killed) leaves it armed, as a driver without `nowayout` would be.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the FIFO is looked at: the stand-in's resolution.
const RESOLUTION: Duration = Duration::from_millis(5);

/// What the stand-in saw.
#[derive(Debug, Default)]
struct State {
    armed_until: Option<Instant>,
    tickles: u64,
    reset_at: Option<Instant>,
}

/// One node's stand-in watchdog.
pub struct StandIn {
    /// The FIFO: the node's `watchdog` device.
    pub path: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    /// A FIFO `NODE.watchdog` in `dir`, watched from now on: when not written for `timeout`
    /// while armed, `reset` runs (once per expiry).
    pub fn new(dir: &Path, node: &str, timeout: Duration, reset: impl Fn() + Send + 'static) -> StandIn {
        let path = dir.join(format!("{node}.watchdog"));
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
        // Read and write: the FIFO never reads as closed while hbcomm comes and goes, and
        // hbcomm's non-blocking open finds a reader.
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buffer = [0u8; 256];
                while !stop.load(Ordering::Relaxed) {
                    let read = fifo.read(&mut buffer).unwrap_or(0);
                    let now = Instant::now();
                    let mut state = state.lock().expect("stand-in state");
                    for byte in &buffer[..read] {
                        if *byte == b'V' {
                            state.armed_until = None;
                        } else {
                            state.armed_until = Some(now + timeout);
                            state.tickles += 1;
                        }
                    }
                    if state.armed_until.is_some_and(|until| now >= until) {
                        state.armed_until = None;
                        state.reset_at = Some(now);
                        drop(state);
                        reset();
                        continue;
                    }
                    drop(state);
                    if read == 0 {
                        std::thread::sleep(RESOLUTION);
                    }
                }
            })
        };
        StandIn {
            path,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// When it reset the node, if it did.
    pub fn reset_at(&self) -> Option<Instant> {
        self.state.lock().expect("stand-in state").reset_at
    }

    /// Whether it is armed (written to and not disarmed).
    pub fn armed(&self) -> bool {
        self.state.lock().expect("stand-in state").armed_until.is_some()
    }

    /// How many times it was written to.
    pub fn tickles(&self) -> u64 {
        self.state.lock().expect("stand-in state").tickles
    }
}

/// The fault harness's reset: every process of the node's cgroup ends at once, and the ledger
/// writes off what ran there.
pub fn reset_cgroup(node: &str, cgroup: &Path, ledger: &Path) {
    let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(cgroup.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(RESOLUTION);
    }
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(ledger) {
        let _ = writeln!(file, "{node} off all");
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
