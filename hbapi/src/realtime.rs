//! ha.cf's `realtime` and `rtprio`, as Heartbeat applies them to its heartbeat processes: the
//! process that sends and hears heartbeats runs SCHED_RR and is locked in memory, so that
//! neither busy processes of any nice level nor memory reclaim can delay it past deadtime.
//!
//! Two deliberate differences from cluster-glue's `cl_make_realtime`:
//! - the policy carries SCHED_RESET_ON_FORK, so whatever the process starts (a helper, an
//!   agent) runs SCHED_OTHER again instead of inheriting a priority no one chose for it;
//! - memory is locked with MCL_ONFAULT: every page the process has touched, and every page it
//!   touches later, stays resident, without faulting in the whole binary and every thread
//!   stack at once (that would triple the daemon's resident size for code it never runs).
//!   The heartbeat path runs within the first keepalive, so it is locked from then on.
//!
//! mlockall is only used when RLIMIT_MEMLOCK is (or can be made) unlimited: with MCL_FUTURE
//! and a finite limit, an allocation past the limit fails later, somewhere in the middle of
//! the daemon's work. Under a finite limit the stack, heap and code are locked as far as the
//! limit allows, and the daemon says so; when not even that fits it runs unlocked, as
//! Heartbeat does ("Cannot lock ourselves into memory").

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

use crate::config::Realtime;

/// What became of the scheduling request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    /// `realtime off`.
    Unchanged,
    /// Now SCHED_RR at this priority.
    RoundRobin(u8),
    /// The kernel refused (no CAP_SYS_NICE and too small an RLIMIT_RTPRIO, or a cgroup
    /// without realtime runtime); the process runs SCHED_OTHER.
    Refused { priority: u8, error: Errno },
}

/// What became of the memory lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLock {
    /// `realtime off`.
    Unchanged,
    /// Every touched page is locked, now and later.
    Locked,
    /// RLIMIT_MEMLOCK is finite and could not be lifted: the stack, heap and code were
    /// locked as far as it allows.
    Partly { locked_bytes: u64, limit_bytes: u64 },
    /// RLIMIT_MEMLOCK is finite, could not be lifted, and is too small for even the stack:
    /// nothing was locked.
    LimitTooSmall { limit_bytes: u64 },
    /// mlockall failed.
    Failed(Errno),
}

/// Applies `settings` to the calling process. Call on the main thread before any other thread
/// exists: the policy is per thread, and threads inherit their creator's.
pub fn apply(settings: &Realtime) -> (Scheduling, MemoryLock) {
    if !settings.enabled {
        return (Scheduling::Unchanged, MemoryLock::Unchanged);
    }
    (schedule_round_robin(settings.priority), lock_memory())
}

/// Logs what [`apply`] did, at warning level for what it could not do.
pub fn log(daemon: &str, outcome: (Scheduling, MemoryLock)) {
    match outcome.0 {
        Scheduling::Unchanged => tracing::info!("{daemon}: realtime off: SCHED_OTHER, not locked in memory"),
        Scheduling::RoundRobin(priority) => tracing::info!("{daemon}: scheduled SCHED_RR, priority {priority}"),
        Scheduling::Refused { priority, error } => tracing::warn!(
            "{daemon}: realtime on, but SCHED_RR priority {priority} was refused ({error}); running SCHED_OTHER"
        ),
    }
    match outcome.1 {
        MemoryLock::Unchanged => {}
        MemoryLock::Locked => tracing::info!("{daemon}: locked in memory, every page it touches"),
        MemoryLock::Partly {
            locked_bytes,
            limit_bytes,
        } => tracing::warn!(
            "{daemon}: locked {} KiB of its stack, heap and code in memory, not all of it: \
             RLIMIT_MEMLOCK is {} KiB and could not be lifted",
            locked_bytes / 1024,
            limit_bytes / 1024
        ),
        MemoryLock::LimitTooSmall { limit_bytes } => tracing::warn!(
            "{daemon}: Cannot lock ourselves into memory: RLIMIT_MEMLOCK is {} KiB and could not be \
             lifted; running unlocked",
            limit_bytes / 1024
        ),
        MemoryLock::Failed(error) => {
            tracing::warn!("{daemon}: Cannot lock ourselves into memory: {error}; running unlocked")
        }
    }
}

fn schedule_round_robin(priority: Option<u8>) -> Scheduling {
    // Heartbeat's default (`rtprio` unset) is the policy's lowest priority: above every
    // SCHED_OTHER process, below any realtime process the administrator placed.
    // SAFETY: plain syscall wrappers without pointers to Rust memory.
    let lowest = unsafe { nix::libc::sched_get_priority_min(nix::libc::SCHED_RR) }.max(1);
    let highest = unsafe { nix::libc::sched_get_priority_max(nix::libc::SCHED_RR) }.max(lowest);
    let wanted = priority.map_or(lowest, |p| i32::from(p).clamp(lowest, highest));
    let param = nix::libc::sched_param {
        sched_priority: wanted,
    };
    // SAFETY: `param` lives across the call; pid 0 is the calling thread.
    let rc = unsafe {
        nix::libc::sched_setscheduler(0, nix::libc::SCHED_RR | nix::libc::SCHED_RESET_ON_FORK, &param)
    };
    let priority = u8::try_from(wanted).unwrap_or(u8::MAX);
    if rc == 0 {
        Scheduling::RoundRobin(priority)
    } else {
        Scheduling::Refused {
            priority,
            error: Errno::last(),
        }
    }
}

fn lock_memory() -> MemoryLock {
    if setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY).is_err() {
        // Only a finite hard limit makes this fail (the soft one may always rise to it).
        return match getrlimit(Resource::RLIMIT_MEMLOCK) {
            Ok((_, hard)) => {
                let _ = setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard);
                lock_what_fits(hard)
            }
            Err(error) => MemoryLock::Failed(error),
        };
    }
    // SAFETY: flags only.
    let rc = unsafe {
        nix::libc::mlockall(nix::libc::MCL_CURRENT | nix::libc::MCL_FUTURE | nix::libc::MCL_ONFAULT)
    };
    if rc == 0 {
        MemoryLock::Locked
    } else {
        MemoryLock::Failed(Errno::last())
    }
}

/// Under a finite limit (a container without CAP_SYS_RESOURCE; systemd's default is 8 MiB),
/// locks the mappings the heartbeat path lives in, most important first, as far as the limit
/// allows: the stack, the heap, the program's code, its other segments, the libraries' code.
fn lock_what_fits(limit_bytes: u64) -> MemoryLock {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let program = std::env::current_exe().ok();
    let mut regions = lockable_regions(&maps, program.as_deref().and_then(|p| p.to_str()));
    regions.sort_by_key(|region| region.rank);
    let mut locked = 0u64;
    for region in regions {
        let length = region.end - region.start;
        if locked + length > limit_bytes {
            continue;
        }
        // SAFETY: the range is one of this process's own mappings; locking changes no content.
        let rc = unsafe {
            nix::libc::mlock2(
                region.start as *const nix::libc::c_void,
                length as usize,
                nix::libc::MLOCK_ONFAULT,
            )
        };
        if rc == 0 {
            locked += length;
        }
    }
    if locked == 0 {
        MemoryLock::LimitTooSmall { limit_bytes }
    } else {
        MemoryLock::Partly {
            locked_bytes: locked,
            limit_bytes,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Region {
    start: u64,
    end: u64,
    rank: u8,
}

/// The mappings of `/proc/self/maps` worth locking, ranked (lower first).
fn lockable_regions(maps: &str, program: Option<&str>) -> Vec<Region> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?;
            let path = fields.nth(3).unwrap_or("");
            let executable = perms.contains('x');
            let rank = match path {
                "[stack]" => 0,
                "[heap]" => 1,
                _ if Some(path) == program && executable => 2,
                _ if Some(path) == program => 3,
                _ if path.starts_with('/') && executable => 4,
                _ => return None,
            };
            Some(Region {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                rank,
            })
        })
        .filter(|region| region.end > region.start)
        .collect()
}

/// The scheduling policy and priority of thread or process `pid` (0: the caller), as
/// `/proc/PID/sched` would show them; for tests and tools.
pub fn policy_of(pid: i32) -> Option<(i32, i32)> {
    // SAFETY: plain syscalls; `param` outlives the call.
    let policy = unsafe { nix::libc::sched_getscheduler(pid) };
    if policy < 0 {
        return None;
    }
    let mut param = nix::libc::sched_param { sched_priority: 0 };
    let rc = unsafe { nix::libc::sched_getparam(pid, &mut param) };
    (rc == 0).then_some((policy & !nix::libc::SCHED_RESET_ON_FORK, param.sched_priority))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
5581a000-5581b000 r--p 00000000 08:01 42 /usr/sbin/hbcomm
5581b000-5582b000 r-xp 00001000 08:01 42 /usr/sbin/hbcomm
5582b000-5582c000 rw-p 00011000 08:01 42 /usr/sbin/hbcomm
55900000-55921000 rw-p 00000000 00:00 0 [heap]
7f000000-7f100000 rw-p 00000000 00:00 0
7f100000-7f200000 r-xp 00028000 08:01 7 /usr/lib/x86_64-linux-gnu/libc.so.6
7f200000-7f210000 r--p 00000000 08:01 8 /usr/lib/locale/C.utf8/LC_CTYPE
7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]
7ffd2000-7ffd3000 r-xp 00000000 00:00 0 [vdso]
";

    #[test]
    fn the_stack_heap_and_code_are_chosen_in_that_order_and_nothing_else() {
        let mut regions = lockable_regions(MAPS, Some("/usr/sbin/hbcomm"));
        regions.sort_by_key(|r| r.rank);
        let chosen: Vec<(u64, u8)> = regions.iter().map(|r| (r.start, r.rank)).collect();
        assert_eq!(
            chosen,
            [
                (0x7ffd0000, 0),
                (0x55900000, 1),
                (0x5581b000, 2),
                (0x5581a000, 3),
                (0x5582b000, 3),
                (0x7f100000, 4)
            ]
        );
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(lockable_regions("nonsense\nzz-yy r-xp 0 0 0 /bin/x\n", Some("/bin/x")).is_empty());
    }
}
