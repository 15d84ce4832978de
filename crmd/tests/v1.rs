//! Heartbeat 3.0.6's v1 resource protocol as crmd speaks it beside a Heartbeat node: the
//! exchanges below are those of tests/data/heartbeat-3.0.6/v1-auto-failback-*.txt (two real
//! Heartbeat nodes, captured by scripts/capture-heartbeat-v1), with heartbeat-rs as bravo.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crmd::partition::{Command, Effect, Event, GroupOutcome, Work};
use crmd::policy::Scope;
use crmd::v1::{Hold, Mixed, StandbyWord, V1Message};
use hbapi::config::ClusterConfig;

fn config(auto_failback: &str, fencing: bool) -> Arc<ClusterConfig> {
    let mut text = format!(
        "[cluster]\nnodes = [\"alpha\", \"bravo\"]\nkeepalive = \"200ms\"\ndeadtime = \"1s\"\ninitdead = \"2s\"\nauto_failback = \"{auto_failback}\"\n\n[[link]]\ntype = \"ucast\"\ndevice = \"lo\"\npeers = [\"127.0.0.9\"]\n\n[auth]\nactive = 1\nkeys = [{{ id = 1, method = \"sha256\", secret = \"v1\" }}]\n"
    );
    if fencing {
        text.push_str("\n[[stonith]]\ntype = \"null\"\nhost = \"*\"\nparams = [\"hostlist=any\"]\n");
    }
    for (name, preferred) in [("web", "alpha"), ("db", "bravo")] {
        text.push_str(&format!(
            "\n[[group]]\npreferred_node = {preferred:?}\nresources = [{{ agent = {name:?} }}]\n"
        ));
    }
    let no_file = |_: &str| -> hbapi::config::Parsed<hbapi::config::AuthKeys> {
        Err(hbapi::config::ConfigError::file(Path::new("authkeys"), "none"))
    };
    match hbapi::config::parse_toml(Path::new("v1.toml"), &text, &no_file) {
        Ok((config, _)) => Arc::new(config),
        Err(error) => panic!("{error}"),
    }
}

/// bravo (ours) beside alpha (Heartbeat), on a virtual clock.
struct Bravo {
    core: Mixed,
    now: Instant,
}

fn resources(hold: Hold, stable: Option<bool>, info: Option<&str>) -> V1Message {
    V1Message::Resources {
        hold,
        full: true,
        stable,
        info: info.map(str::to_owned),
    }
}

fn ask(hold: Hold, word: StandbyWord) -> V1Message {
    V1Message::AskResources { hold, word }
}

fn sent(effects: &[Effect]) -> Vec<V1Message> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendV1(message) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn work(effects: &[Effect]) -> Vec<(String, Work)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Carry { group, work } => Some((group.clone(), *work)),
            _ => None,
        })
        .collect()
}

impl Bravo {
    fn new(auto_failback: &str, fencing: bool, running: &[&str]) -> (Bravo, Vec<Effect>) {
        let now = Instant::now();
        let running: BTreeSet<String> = running.iter().map(|g| g.to_string()).collect();
        let (core, effects) = Mixed::new(
            "bravo",
            "alpha",
            config(auto_failback, fencing),
            running,
            BTreeSet::new(),
            hbapi::comm::NodeStatus::Active,
            now,
        );
        (Bravo { core, now }, effects)
    }

    fn hear_alpha(&mut self, message: V1Message) -> Vec<Effect> {
        self.now += Duration::from_millis(50);
        self.core.message(self.now, "alpha", message)
    }

    fn event(&mut self, event: Event) -> Vec<Effect> {
        self.now += Duration::from_millis(50);
        self.core.handle(self.now, event)
    }

    fn done(&mut self, group: &str, outcome: GroupOutcome) -> Vec<Effect> {
        self.event(Event::LocalDone {
            group: group.into(),
            outcome,
        })
    }

    /// Both nodes cold-started, as in the capture; bravo ends holding db.
    fn cold_started(auto_failback: &str) -> Bravo {
        let (mut bravo, effects) = Bravo::new(auto_failback, false, &[]);
        assert!(
            sent(&effects).is_empty(),
            "crmd said starting already: {effects:?}"
        );
        // alpha's `starting`: bravo holds nothing and does nothing, so it answers stable.
        let effects = bravo.hear_alpha(V1Message::Starting);
        assert_eq!(sent(&effects), vec![resources(Hold::NONE, Some(true), None)]);
        // alpha's answer to bravo's `starting`, then alpha takes its local groups.
        let effects = bravo.hear_alpha(resources(Hold::NONE, Some(false), None));
        assert!(work(&effects).is_empty(), "{effects:?}");
        let effects = bravo.hear_alpha(resources(Hold::LOCAL, Some(true), None));
        assert_eq!(work(&effects), vec![("db".into(), Work::Start)]);
        assert_eq!(
            sent(&effects),
            vec![
                resources(Hold::NONE, Some(false), None),
                resources(Hold::LOCAL, Some(true), None)
            ]
        );
        let effects = bravo.done("db", GroupOutcome::Started);
        assert_eq!(
            sent(&effects),
            vec![resources(Hold::LOCAL, Some(true), Some("req_our_resources()"))]
        );
        bravo
    }
}

#[test]
fn cold_start_takes_only_the_local_groups_once_heartbeat_is_stable() {
    let bravo = Bravo::cold_started("off");
    assert_eq!(bravo.core.running_here(), BTreeSet::from(["db".to_string()]));
}

#[test]
fn without_a_stable_answer_local_groups_are_taken_after_heartbeats_request_delay() {
    let (mut bravo, _) = Bravo::new("off", false, &[]);
    let effects = bravo.hear_alpha(resources(Hold::NONE, Some(false), None));
    assert!(work(&effects).is_empty());
    bravo.now += crmd::v1::REQUEST_DELAY - Duration::from_millis(100);
    assert!(work(&bravo.event(Event::Tick)).is_empty());
    bravo.now += Duration::from_millis(100);
    let effects = bravo.event(Event::Tick);
    assert_eq!(work(&effects), vec![("db".into(), Work::Start)]);
}

#[test]
fn heartbeats_hb_standby_hands_everything_to_us() {
    let mut bravo = Bravo::cold_started("off");
    // alpha holds web; it wants to go standby (capture: alpha's side of 15073..15487).
    bravo.hear_alpha(resources(Hold::LOCAL, Some(true), None));
    let effects = bravo.hear_alpha(ask(Hold::ALL, StandbyWord::Me));
    assert_eq!(sent(&effects), vec![ask(Hold::ALL, StandbyWord::Other)]);
    assert!(work(&effects).is_empty());
    bravo.hear_alpha(resources(Hold::NONE, Some(false), Some("standby")));
    let effects = bravo.hear_alpha(ask(Hold::ALL, StandbyWord::Done));
    assert_eq!(work(&effects), vec![("web".into(), Work::Start)]);
    let effects = bravo.done("web", GroupOutcome::Started);
    assert_eq!(
        sent(&effects),
        vec![
            ask(Hold::ALL, StandbyWord::Done),
            resources(Hold::ALL, Some(true), None)
        ]
    );
    assert_eq!(bravo.core.running_here().len(), 2);
}

#[test]
fn our_hb_standby_is_heartbeats_three_phase_handover() {
    let mut bravo = Bravo::cold_started("off");
    bravo.hear_alpha(resources(Hold::LOCAL, Some(true), None));
    let effects = bravo.event(Event::Command(Command::Standby(Scope::All, 0)));
    assert_eq!(sent(&effects), vec![ask(Hold::ALL, StandbyWord::Me)]);
    assert!(work(&effects).is_empty(), "nothing stops before alpha agrees");
    let effects = bravo.hear_alpha(ask(Hold::ALL, StandbyWord::Other));
    assert_eq!(
        sent(&effects),
        vec![resources(Hold::NONE, Some(false), Some("standby"))]
    );
    assert_eq!(work(&effects), vec![("db".into(), Work::Stop)]);
    let effects = bravo.done("db", GroupOutcome::Stopped);
    assert_eq!(sent(&effects), vec![ask(Hold::ALL, StandbyWord::Done)]);
    bravo.hear_alpha(resources(Hold::ALL, Some(true), None));
    let effects = bravo.hear_alpha(ask(Hold::ALL, StandbyWord::Done));
    assert_eq!(sent(&effects), vec![resources(Hold::NONE, Some(true), None)]);
    assert!(bravo.core.running_here().is_empty());
}

#[test]
fn standby_requests_are_refused_while_the_peer_is_in_flux() {
    let (mut bravo, _) = Bravo::new("off", false, &[]);
    let effects = bravo.hear_alpha(ask(Hold::ALL, StandbyWord::Me));
    assert!(
        sent(&effects).is_empty() && work(&effects).is_empty(),
        "{effects:?}"
    );
}

#[test]
fn a_crashed_heartbeat_node_holding_groups_is_fenced_before_takeover() {
    let (mut bravo, _) = Bravo::new("off", true, &[]);
    bravo.hear_alpha(resources(Hold::LOCAL, Some(true), None));
    bravo.done("db", GroupOutcome::Started);
    let effects = bravo.event(Event::NodeStatus {
        node: "alpha".into(),
        status: hbapi::comm::NodeStatus::Dead,
    });
    assert!(
        work(&effects).is_empty(),
        "nothing starts before the fence: {effects:?}"
    );
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Fence { node, .. } if node == "alpha")));
    bravo.event(Event::FenceRequested {
        node: "alpha".into(),
        result: Ok(7),
    });
    let effects = bravo.event(Event::FenceFinished {
        op_id: 7,
        ok: false,
        message: "device busy".into(),
    });
    assert!(work(&effects).is_empty(), "a failed fence starts nothing");
    bravo.now += Duration::from_secs(6);
    let effects = bravo.event(Event::Tick);
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Fence { .. })),
        "retried: {effects:?}"
    );
    bravo.event(Event::FenceRequested {
        node: "alpha".into(),
        result: Ok(8),
    });
    let effects = bravo.event(Event::FenceFinished {
        op_id: 8,
        ok: true,
        message: "off".into(),
    });
    assert_eq!(work(&effects), vec![("web".into(), Work::Start)]);
    let effects = bravo.done("web", GroupOutcome::Started);
    // Heartbeat's mach_down message, then its req_our_resources() one (nothing left to take).
    assert_eq!(
        sent(&effects),
        vec![
            V1Message::Resources {
                hold: Hold::FOREIGN,
                full: false,
                stable: None,
                info: Some("mach_down".into())
            },
            resources(Hold::ALL, Some(true), Some("req_our_resources()"))
        ]
    );
}

#[test]
fn a_clean_stop_of_heartbeat_is_taken_over_without_fencing() {
    let mut bravo = Bravo::cold_started("off");
    bravo.hear_alpha(resources(Hold::LOCAL, Some(true), None));
    bravo.hear_alpha(resources(Hold::NONE, Some(false), Some("shutdown")));
    let effects = bravo.hear_alpha(V1Message::Shutdone);
    assert_eq!(work(&effects), vec![("web".into(), Work::Start)]);
    let effects = bravo.event(Event::NodeStatus {
        node: "alpha".into(),
        status: hbapi::comm::NodeStatus::Dead,
    });
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Fence { .. })),
        "{effects:?}"
    );
}

#[test]
fn auto_failback_hands_the_returning_nodes_groups_back_once_it_is_stable() {
    // bravo ran alone and holds everything; alpha (Heartbeat) starts.
    let (mut bravo, effects) = Bravo::new("on", false, &["web", "db"]);
    assert!(sent(&effects).is_empty());
    let effects = bravo.hear_alpha(V1Message::Starting);
    assert_eq!(sent(&effects), vec![resources(Hold::ALL, Some(true), None)]);
    bravo.hear_alpha(resources(Hold::NONE, Some(false), None));
    // alpha sees bravo holds its groups, becomes stable holding nothing: failback starts.
    let effects = bravo.hear_alpha(resources(Hold::NONE, Some(true), None));
    assert!(
        sent(&effects).contains(&ask(Hold::FOREIGN, StandbyWord::Me)),
        "{effects:?}"
    );
    let effects = bravo.hear_alpha(ask(Hold::FOREIGN, StandbyWord::Other));
    assert_eq!(work(&effects), vec![("web".into(), Work::Stop)]);
    let effects = bravo.done("web", GroupOutcome::Stopped);
    assert_eq!(sent(&effects), vec![ask(Hold::FOREIGN, StandbyWord::Done)]);
    assert_eq!(bravo.core.running_here(), BTreeSet::from(["db".to_string()]));
}

#[test]
fn with_auto_failback_off_the_groups_stay() {
    let (mut bravo, _) = Bravo::new("off", false, &["web", "db"]);
    bravo.hear_alpha(V1Message::Starting);
    bravo.hear_alpha(resources(Hold::NONE, Some(false), None));
    let effects = bravo.hear_alpha(resources(Hold::NONE, Some(true), None));
    assert!(!sent(&effects)
        .iter()
        .any(|m| matches!(m, V1Message::AskResources { .. })));
    assert!(work(&effects).is_empty());
}

#[test]
fn shutdown_waits_for_a_stable_peer_then_gives_everything_up() {
    let (mut bravo, _) = Bravo::new("off", false, &[]);
    bravo.hear_alpha(resources(Hold::NONE, Some(false), None));
    // Still negotiating with a live peer: the stop waits.
    let effects = bravo.event(Event::Shutdown);
    assert!(
        work(&effects).is_empty() && sent(&effects).is_empty(),
        "{effects:?}"
    );
    let effects = bravo.hear_alpha(resources(Hold::LOCAL, Some(true), None));
    assert_eq!(work(&effects), vec![("db".into(), Work::Start)]);
    let effects = bravo.done("db", GroupOutcome::Started);
    assert_eq!(
        sent(&effects),
        vec![
            resources(Hold::LOCAL, Some(true), Some("req_our_resources()")),
            resources(Hold::NONE, Some(false), Some("shutdown"))
        ]
    );
    assert_eq!(work(&effects), vec![("db".into(), Work::Stop)]);
    let effects = bravo.done("db", GroupOutcome::Stopped);
    assert!(effects.contains(&Effect::Left { clean: true }), "{effects:?}");
}

#[test]
fn heartbeats_hb_takeover_makes_us_go_standby() {
    let mut bravo = Bravo::cold_started("off");
    bravo.hear_alpha(resources(Hold::LOCAL, Some(true), None));
    let effects = bravo.hear_alpha(V1Message::Takeover { hold: Hold::ALL });
    assert_eq!(sent(&effects), vec![ask(Hold::ALL, StandbyWord::Me)]);
}

#[test]
fn messages_round_trip_and_carry_the_marker() {
    for message in [
        V1Message::Starting,
        resources(Hold::FOREIGN, Some(true), Some("mach_down")),
        ask(Hold::LOCAL, StandbyWord::Done),
        V1Message::Takeover { hold: Hold::ALL },
        V1Message::IpRequest { group: "web".into() },
    ] {
        let (msg_type, _, body) = message.encode();
        assert!(body.contains_key(crmd::v1::MARKER));
        assert_eq!(V1Message::decode(msg_type, &body), Ok(Some(message)));
    }
    let bad = std::collections::HashMap::from([("rsc_hold".to_string(), "most".to_string())]);
    assert!(V1Message::decode("resource", &bad).is_err());
    assert_eq!(V1Message::decode("crmd", &bad), Ok(None));
}

#[test]
fn every_v1_message_two_heartbeat_nodes_exchanged_is_understood() {
    let mut seen = std::collections::BTreeSet::new();
    for name in ["v1-auto-failback-off.txt", "v1-auto-failback-on.txt"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/heartbeat-3.0.6")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            // "MS SENDER TYPE field=value …"; values have no spaces except nodelist's.
            let mut words = line.split_whitespace();
            let (Some(_), Some(_), Some(msg_type)) = (words.next(), words.next(), words.next()) else {
                continue;
            };
            let body: std::collections::HashMap<String, String> = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            match V1Message::decode(msg_type, &body) {
                Ok(Some(message)) => {
                    seen.insert(msg_type.to_owned());
                    // What we would send back in its place reads the same.
                    let (again_type, to, mut again) = message.encode();
                    // The addressee travels as hbcomm's `dest`, which it hands back.
                    if !to.is_empty() {
                        again.insert("dest".into(), to);
                    }
                    assert_eq!(again_type, msg_type);
                    assert_eq!(V1Message::decode(again_type, &again), Ok(Some(message)), "{line}");
                }
                Ok(None) => assert!(
                    ["reqnodes", "repnodes", "stonith"].contains(&msg_type),
                    "{name}: a message type crmd does not know: {line}"
                ),
                Err(error) => panic!("{name}: {line}: {error}"),
            }
        }
    }
    for expected in [
        "starting",
        "resource",
        "ask_resources",
        "hb_takeover",
        "ip-request-resp",
        "shutdone",
    ] {
        assert!(
            seen.contains(expected),
            "the captures have no {expected}: {seen:?}"
        );
    }
}

#[test]
fn a_legacy_heartbeat_nodes_ip_request_is_answered_after_the_group_is_released() {
    let (mut bravo, _) = Bravo::new("legacy", false, &["web", "db"]);
    let effects = bravo.hear_alpha(V1Message::IpRequest { group: "web".into() });
    assert_eq!(work(&effects), vec![("web".into(), Work::Stop)]);
    assert!(
        sent(&effects).is_empty(),
        "no answer before the stop: {effects:?}"
    );
    let effects = bravo.done("web", GroupOutcome::Stopped);
    assert_eq!(
        sent(&effects),
        vec![V1Message::IpRequestResp {
            requester: "alpha".into(),
            group: "web".into(),
            held: true,
            ok: true
        }]
    );
    // A group not held here is answered at once.
    let effects = bravo.hear_alpha(V1Message::IpRequest { group: "web".into() });
    assert!(
        matches!(
            &sent(&effects)[..],
            [V1Message::IpRequestResp { held: false, .. }]
        ),
        "{effects:?}"
    );
}

#[test]
fn a_peer_that_never_says_it_is_stable_is_asked() {
    // alpha answered in the middle of a takeover (not stable) and then took bravo for stable
    // without a word: bravo takes its groups after the request delay, then asks.
    let (mut bravo, _) = Bravo::new("off", false, &[]);
    bravo.hear_alpha(resources(Hold::ALL, Some(false), None));
    bravo.now += crmd::v1::REQUEST_DELAY;
    let effects = bravo.event(Event::Tick);
    assert!(
        work(&effects).is_empty(),
        "alpha holds bravo's groups: {effects:?}"
    );
    assert!(!bravo.core.is_settled(), "alpha's stability is unknown");
    bravo.now = bravo.core.next_deadline();
    let effects = bravo.event(Event::Tick);
    assert_eq!(
        sent(&effects),
        vec![
            resources(Hold::NONE, Some(false), None),
            resources(Hold::NONE, Some(true), None)
        ]
    );
    // Heartbeat answers the change with its own state.
    bravo.hear_alpha(resources(Hold::ALL, Some(true), None));
    assert!(bravo.core.is_settled());
}
