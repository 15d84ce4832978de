//! Debian's sample ha.cf, haresources and authkeys (package `heartbeat`, installed by
//! `.ci/run`): every example they show must read as Heartbeat reads it.

use std::path::Path;
use std::process::Command;

use hbapi::config::{parse_authkeys, parse_ha_cf, parse_haresources, AuthMethod};

const DOC: &str = "/usr/share/doc/heartbeat";

fn sample(name: &str) -> String {
    let gz = format!("{DOC}/{name}.gz");
    let plain = format!("{DOC}/{name}");
    if Path::new(&gz).exists() {
        let output = Command::new("zcat").arg(&gz).output().expect("zcat");
        assert!(output.status.success());
        String::from_utf8(output.stdout).expect("utf-8 sample")
    } else {
        std::fs::read_to_string(&plain).unwrap_or_else(|_| {
            panic!("{plain}(.gz) missing: install Debian's heartbeat package (.ci/run does)")
        })
    }
}

/// The sample's example lines: `#directive value…` with the `#` removed.
fn examples(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let rest = line.strip_prefix('#')?;
            let directive: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let after = &rest[directive.len()..];
            (!directive.is_empty() && after.starts_with([' ', '\t'])).then(|| (index + 1, rest.to_owned()))
        })
        .collect()
}

#[test]
fn every_example_of_the_sample_ha_cf_is_accepted() {
    let text = sample("ha.cf");
    // The file as shipped: every line a comment except `auto_failback on`; Heartbeat refuses
    // it for want of nodes and media, and so do we.
    let error = parse_ha_cf(Path::new("ha.cf"), &text).unwrap_err().to_string();
    assert!(
        error.contains("no heartbeat media defined") && error.contains("no nodes defined"),
        "{error}"
    );

    let examples = examples(&text);
    assert!(examples.len() > 30, "found only {} examples", examples.len());
    let mut refused = Vec::new();
    for (line, example) in &examples {
        let config = format!("node alpha bravo\nbcast lo\nauto_failback on\n{example}\n");
        if let Err(error) = parse_ha_cf(Path::new("ha.cf"), &config) {
            refused.push(format!("line {line}: {example:?}: {error}"));
        }
    }
    // The one example that is a list of choices rather than a value, which Heartbeat refuses too.
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0].contains("msgfmt") && refused[0].contains("expected classic or netstring"),
        "{refused:?}"
    );
}

#[test]
fn every_example_of_the_sample_haresources_is_accepted() {
    let text = sample("haresources");
    let examples: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .filter(|rest| rest.starts_with("just.linux-ha.org") || rest.starts_with("node1"))
        .map(str::to_owned)
        .collect();
    assert!(examples.len() >= 5, "{examples:?}");
    let nodes = vec!["just.linux-ha.org".to_owned(), "node1".to_owned()];
    for example in &examples {
        let (groups, _) = parse_haresources(Path::new("haresources"), example, &nodes)
            .unwrap_or_else(|error| panic!("{example:?}: {error}"));
        assert_eq!(groups.len(), 1, "{example}");
        assert!(!groups[0].resources.is_empty());
    }
    let (groups, _) = parse_haresources(
        Path::new("haresources"),
        "just.linux-ha.org\t135.9.216.3/28/eth0/135.9.216.12 httpd",
        &nodes,
    )
    .unwrap();
    assert_eq!(groups[0].resources[0].agent, "IPaddr");
    assert_eq!(groups[0].resources[0].args, ["135.9.216.3/28/eth0/135.9.216.12"]);
}

#[test]
fn the_sample_authkeys_uncommented_is_accepted() {
    let text = sample("authkeys");
    let uncommented: String = text
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .filter(|rest| rest.starts_with("auth ") || rest.starts_with(|c: char| c.is_ascii_digit()))
        .map(|rest| format!("{rest}\n"))
        .collect();
    let (keys, _) = parse_authkeys(Path::new("authkeys"), &uncommented).unwrap();
    assert_eq!(keys.active, 1);
    assert_eq!(keys.active_key().unwrap().method, AuthMethod::Crc);
    assert_eq!(keys.keys[&2].method, AuthMethod::Sha1);
    assert_eq!(keys.keys[&2].secret, "HI!");
    assert_eq!(keys.keys[&3].secret, "Hello!");
}
