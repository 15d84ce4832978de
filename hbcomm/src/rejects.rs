//! Packets this node rejects, told to the administrator once per source and interval rather
//! than per packet (FAQ 12, 13 and 15: a wrong key, a foreign cluster on the same segment,
//! with another key or with ours but nodes we do not have). Pure: the time is passed in.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How often one source's rejects are logged.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Sources remembered at once; a flood from many addresses cannot grow the table past it.
const MAX_SOURCES: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Source {
    logged_at: Instant,
    suppressed: u64,
}

/// One log line per source (an address, or a node name) per [`INTERVAL`], with how many
/// went unlogged since the last.
#[derive(Debug)]
pub struct RejectLog<K> {
    sources: HashMap<K, Source>,
}

impl<K> Default for RejectLog<K> {
    fn default() -> Self {
        RejectLog {
            sources: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> RejectLog<K> {
    /// A packet from `source` was rejected at `now`: `Some(n)` when it is to be logged (`n`
    /// rejects from it went unlogged since its last line), `None` when it is only counted.
    pub fn reject(&mut self, source: K, now: Instant) -> Option<u64> {
        if let Some(entry) = self.sources.get_mut(&source) {
            if now.saturating_duration_since(entry.logged_at) < INTERVAL {
                entry.suppressed += 1;
                return None;
            }
            let suppressed = entry.suppressed;
            *entry = Source {
                logged_at: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if self.sources.len() >= MAX_SOURCES {
            self.sources
                .retain(|_, entry| now.saturating_duration_since(entry.logged_at) < INTERVAL);
            if self.sources.len() >= MAX_SOURCES {
                // Every slot is recent: a flood of sources. Log nothing more until one ages.
                return None;
            }
        }
        self.sources.insert(
            source,
            Source {
                logged_at: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

/// The node name an unauthenticated packet claims (`src=NAME`), for the log only: read from
/// the first bytes without decoding, at most 64 characters of a node name's alphabet.
pub fn claimed_node(packet: &[u8]) -> Option<String> {
    let head = &packet[..packet.len().min(1024)];
    let at = head.windows(4).position(|w| w == b"src=")? + 4;
    let name: String = head[at..]
        .iter()
        .take(64)
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        .map(|b| char::from(*b))
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn one_line_per_source_per_interval_with_the_count_in_between() {
        let mut log: RejectLog<IpAddr> = RejectLog::default();
        let start = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(log.reject(a, start), Some(0));
        for i in 1..=5 {
            assert_eq!(log.reject(a, start + Duration::from_secs(i)), None);
        }
        assert_eq!(log.reject(b, start + Duration::from_secs(6)), Some(0));
        assert_eq!(log.reject(a, start + INTERVAL), Some(5));
        assert_eq!(log.reject(a, start + INTERVAL + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_flood_of_sources_cannot_grow_the_table() {
        let mut log: RejectLog<IpAddr> = RejectLog::default();
        let start = Instant::now();
        let logged = (0..1000u32)
            .filter(|i| {
                let source = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                log.reject(source, start).is_some()
            })
            .count();
        assert_eq!(logged, MAX_SOURCES);
        assert!(log.sources.len() <= MAX_SOURCES);
        // Once they age, new sources are logged again.
        let later = start + INTERVAL;
        assert_eq!(log.reject("192.168.0.1".parse().unwrap(), later), Some(0));
    }

    #[test]
    fn the_claimed_name_is_read_without_trusting_the_packet() {
        assert_eq!(
            claimed_node(b">>>\nt=status\nsrc=bravo\nseq=1\n<<<\n").as_deref(),
            Some("bravo")
        );
        assert_eq!(
            claimed_node(b"###\n8:t=status,9:src=alpha,").as_deref(),
            Some("alpha")
        );
        assert_eq!(claimed_node(b"src=\x1b[31mevil").as_deref(), None);
        assert_eq!(claimed_node(b"garbage").as_deref(), None);
        let long = format!("src={}", "x".repeat(500));
        assert_eq!(claimed_node(long.as_bytes()).map(|n| n.len()), Some(64));
    }
}
