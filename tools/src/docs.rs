//! clap descriptions of the commands that parse their arguments by hand to stay
//! byte-compatible with Heartbeat (`cl_status`, `hb_standby`, `hb_takeover`): they are not
//! used to parse, only to generate manual pages and shell completions like the other
//! commands'. The tests below hold them to the real parsers.

use clap::{Arg, ArgAction, Command};

fn flag(letter: char, help: &'static str) -> Arg {
    let id = match letter {
        'm' => "human",
        'v' => "verbose",
        'p' => "ping",
        'n' => "normal",
        _ => "flag",
    };
    Arg::new(id).short(letter).action(ArgAction::SetTrue).help(help)
}

fn sub(name: &'static str, about: &'static str) -> Command {
    Command::new(name)
        .about(about)
        .arg(flag(
            'm',
            "Answer in a sentence (cl_status's human-readable form)",
        ))
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .help("Print the same facts as JSON"),
        )
}

fn node() -> Arg {
    Arg::new("node-name").required(true).help("A node of the cluster")
}

/// `cl_status`, as Heartbeat 3.0.6 documents it.
pub fn cl_status() -> Command {
    Command::new("cl_status")
        .about("Heartbeat's cluster status command, answered from heartbeat-rs's bus")
        .long_about(
            "Heartbeat's cluster status command: the same sub-commands, output and exit codes as \
             Heartbeat 3.0.6's cl_status (0 success or up, 1 down or stopped, 11 bad sub-command or \
             option, 12 timeout, 13 other errors), answered from heartbeat-rs's bus. When the suite \
             is down it says \"Heartbeat is stopped on this machine.\"",
        )
        .subcommand_required(true)
        .subcommand(
            sub("hbstatus", "Whether heartbeat runs on this machine")
                .arg(flag('v', "Also print listnodes -v")),
        )
        .subcommand(
            sub("listnodes", "The cluster's nodes")
                .arg(flag('p', "Only ping nodes"))
                .arg(flag('n', "Only normal nodes"))
                .arg(flag('v', "Also type and status, then listhblinks -v")),
        )
        .subcommand(sub("nodestatus", "A node's status: init, up, active or dead").arg(node()))
        .subcommand(sub("nodetype", "A node's type: normal or ping").arg(node()))
        .subcommand(
            sub("listhblinks", "The links a node is heard on")
                .arg(node())
                .arg(flag('v', "With each link's status")),
        )
        .subcommand(
            sub("hblinkstatus", "One link's status: up or dead")
                .arg(node())
                .arg(Arg::new("link-name").required(true).help("The link (interface)")),
        )
        .subcommand(
            sub(
                "clientstatus",
                "Whether a cluster client (a daemon on the bus) is online",
            )
            .arg(node())
            .arg(
                Arg::new("client-id")
                    .required(true)
                    .help("The client: crmd, lrmd, stonithd, ipfail…"),
            )
            .arg(Arg::new("timeout").help("Milliseconds to wait for the answer")),
        )
        .subcommand(sub(
            "rscstatus",
            "Which resources this node holds: all, local, foreign or none",
        ))
        .subcommand(
            sub("hbparameter", "A cluster parameter's value (ha.cf's directives)")
                .alias("parameter")
                .arg(
                    Arg::new("parameter-name")
                        .short('p')
                        .required(true)
                        .help("keepalive, deadtime, warntime, initdead, udpport, auto_failback…"),
                ),
        )
}

fn scope() -> Arg {
    Arg::new("scope")
        .value_parser(["all", "local", "foreign", "failback"])
        .default_value("all")
        .help("Which groups: all, this node's own (local), the others' (foreign; failback is foreign)")
}

/// `hb_standby`.
pub fn hb_standby() -> Command {
    Command::new("hb_standby")
        .about("Give up this node's resource groups to the other nodes (Heartbeat's hb_standby)")
        .arg(scope())
}

/// `hb_takeover`.
pub fn hb_takeover() -> Command {
    Command::new("hb_takeover")
        .about("Take resource groups over to this node (Heartbeat's hb_takeover)")
        .arg(scope())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_cl_status_sub_command_and_flag_is_what_the_parser_takes() {
        let documented = cl_status();
        let mut names: Vec<String> = Vec::new();
        for sub in documented.get_subcommands() {
            names.push(sub.get_name().to_owned());
            names.extend(sub.get_all_aliases().map(str::to_owned));
            for name in std::iter::once(sub.get_name()).chain(sub.get_all_aliases()) {
                let taken = crate::cl_status::flags_of(name)
                    .unwrap_or_else(|| panic!("{name} documented, not parsed"));
                let shorts: String = sub.get_arguments().filter_map(|a| a.get_short()).collect();
                let parsed: String = taken.chars().filter(|c| *c != ':').collect();
                let mut shorts: Vec<char> = shorts.chars().collect();
                let mut parsed: Vec<char> = parsed.chars().collect();
                shorts.sort();
                parsed.sort();
                assert_eq!(shorts, parsed, "{name}: documented flags vs parsed ones");
            }
        }
        for parsed in [
            "hbstatus",
            "listnodes",
            "nodestatus",
            "nodetype",
            "listhblinks",
            "hblinkstatus",
            "clientstatus",
            "rscstatus",
            "hbparameter",
            "parameter",
        ] {
            assert!(
                names.iter().any(|n| n == parsed),
                "{parsed} parsed, not documented"
            );
        }
        documented.debug_assert();
    }

    #[test]
    fn the_scopes_documented_are_the_ones_accepted() {
        for command in [hb_standby(), hb_takeover()] {
            command.clone().debug_assert();
            for scope in ["all", "local", "foreign", "failback"] {
                assert!(
                    command
                        .clone()
                        .try_get_matches_from([command.get_name(), scope])
                        .is_ok(),
                    "{scope}"
                );
            }
            assert!(command
                .clone()
                .try_get_matches_from([command.get_name(), "everything"])
                .is_err());
        }
    }
}
