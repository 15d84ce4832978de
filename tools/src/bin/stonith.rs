//! `stonith`: cluster-glue's command, with the same options, output and exit codes.
//!
//! `-L`, `-h`, `-n` and `-m` need no daemon. `-l`, `-S` and `-T` act on the device given by
//! `-t` and its parameters directly, as glue does; `-T` without `-t` asks the running stonithd
//! to fence with the cluster's configured devices (queued, retried, recorded). Unlike glue,
//! errors always go to stderr (glue sends them to syslog when stdin is not a terminal).

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use futures_util::StreamExt;
use hb_tools::cli::StonithArgs as Args;

use fencing::{exit, Device, PluginDirs, PluginError};
use hb_tools::{json_string, json_strings};

const USAGE: &str = "usage:
\t stonith [-svh] -L
\t stonith [-svh] -t stonith-device-type -n
\t stonith [-svh] -t stonith-device-type -m
\t stonith [-svh] -t stonith-device-type {-p stonith-device-parameters | -F stonith-device-parameters-file | -E | name=value...} [-c count] -lS
\t stonith [-svh] -t stonith-device-type {-p stonith-device-parameters | -F stonith-device-parameters-file | -E | name=value...} [-c count] -T {reset|on|off} nodename
\t stonith [-s] -T {reset|on|off} nodename          (through the running stonithd and the cluster's devices)

where:
\t-L\tlist supported stonith device types
\t-l\tlist hosts controlled by this stonith device
\t-S\treport stonith device status
\t-s\tsilent
\t-v\tverbose
\t-n\toutput the config names of stonith-device-parameters
\t-m\tdisplay meta-data of the stonith device type
\t-h\tdisplay detailed help message with stonith device description(s)
\t--json\tlistings (-L, -l, -n) as JSON
";

fn fail(silent: bool, error: &PluginError) -> ExitCode {
    if !silent {
        eprintln!("stonith: {error}");
    }
    ExitCode::from(error.exit_code())
}

async fn help(dirs: &PluginDirs) {
    hb_tools::out!("{USAGE}\nSTONITH -t device types and associated configuration details:\n");
    for device_type in fencing::list_types(dirs) {
        let Ok(family) = fencing::resolve(&device_type, dirs) else {
            continue;
        };
        let names = family.config_names().await.unwrap_or_default();
        hb_tools::out!(
            "\n\nSTONITH Device: {device_type} - {}\nList of valid parameter names for {device_type} STONITH device:\n",
            family.description().await
        );
        for name in &names {
            hb_tools::outln!("\t{name}");
        }
        hb_tools::outln!("For Config info [-p] syntax, give each of the above parameters in order as\nthe -p value.\nArguments are separated by white space.\nConfig file [-F] syntax is the same as -p, except # at the start of a line\ndenotes a comment");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("{error}\n{USAGE}");
            return ExitCode::from(exit::INVALID);
        }
    };
    let _ = (args.verbose, args.debug, args.count);
    let dirs = PluginDirs::from_env();
    if args.help {
        help(&dirs).await;
        return ExitCode::SUCCESS;
    }
    if args.list_types {
        let types = fencing::list_types(&dirs);
        if args.json {
            hb_tools::outln!("{}", json_strings(&types));
        } else {
            for device_type in types {
                hb_tools::outln!("{device_type}");
            }
        }
        return ExitCode::SUCCESS;
    }
    let Some(device_type) = args.device_type.clone() else {
        return match (&args.action, args.rest.as_slice()) {
            (Some(action), [node]) => through_stonithd(action, node, args.silent).await,
            _ => {
                eprint!("{USAGE}");
                ExitCode::from(exit::INVALID)
            }
        };
    };
    let family = match fencing::resolve(&device_type, &dirs) {
        Ok(family) => family,
        Err(error) => return fail(args.silent, &error),
    };
    let names = match family.config_names().await {
        Ok(names) => names,
        Err(error) => return fail(args.silent, &error),
    };
    if args.names {
        if args.json {
            hb_tools::outln!("{}", json_strings(&names));
        } else {
            // cluster-glue prints each name followed by two spaces.
            hb_tools::outln!("{}", names.iter().map(|n| format!("{n}  ")).collect::<String>());
        }
        return ExitCode::SUCCESS;
    }
    if args.meta_data {
        return match family.meta_data(&device_type).await {
            Ok(xml) => {
                hb_tools::out!("{xml}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(args.silent, &error),
        };
    }

    let mut params = BTreeMap::new();
    let mut node = None;
    for arg in &args.rest {
        match arg.split_once('=') {
            Some((name, value)) => {
                params.insert(name.to_owned(), value.to_owned());
            }
            None => node = Some(arg.clone()),
        }
    }
    let text = match (&args.params, &args.params_file) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(file)) => match fencing::read_config_file(file) {
            Ok(text) => Some(text),
            Err(error) => return fail(args.silent, &error),
        },
        _ => None,
    };
    if let Some(text) = text {
        match fencing::parse_params(&text, &names) {
            Ok(parsed) => params.extend(parsed),
            Err(error) => return fail(args.silent, &error),
        }
    }
    if args.from_env {
        for name in &names {
            if let Ok(value) = std::env::var(name) {
                params.insert(name.clone(), value);
            }
        }
    }
    let device = match Device::new(&device_type, &device_type, params, &dirs) {
        Ok(device) => device,
        Err(error) => return fail(args.silent, &error),
    };
    let local = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    if args.status {
        if let Err(error) = device.status().await {
            return fail(args.silent, &error);
        }
    }
    if args.list_hosts {
        match device.hosts(&local).await {
            Ok(hosts) if args.json => hb_tools::outln!("{}", json_strings(&hosts)),
            Ok(hosts) => {
                for host in hosts {
                    hb_tools::outln!("{host}");
                }
            }
            Err(error) => return fail(args.silent, &error),
        }
    }
    if let Some(action) = &args.action {
        let Some(node) = node else {
            eprint!("{USAGE}");
            return ExitCode::from(exit::INVALID);
        };
        let hosts = device.hosts(&local).await.unwrap_or_default();
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(&node)) && !device.fences_any_host() {
            return fail(
                args.silent,
                &PluginError::BadHost {
                    host: node,
                    hosts: hosts.join(" "),
                },
            );
        }
        if device.waits_for_operator() {
            return fail(
                args.silent,
                &PluginError::Config("meatware waits for `meatclient -c NODE` through stonithd: run `stonith -T reset NODE` without -t on a node where the cluster runs".into()),
            );
        }
        let outcome = device
            .fence(
                action,
                &node,
                &local,
                std::future::pending(),
                std::future::pending(),
            )
            .await;
        match outcome {
            Ok(message) => {
                if !args.silent && !message.is_empty() {
                    hb_tools::outln!("{message}");
                }
            }
            Err(error) => return fail(args.silent, &error),
        }
    }
    ExitCode::SUCCESS
}

/// `stonith -T ACTION NODE` without a device: the cluster's stonithd fences with its devices.
async fn through_stonithd(action: &str, node: &str, silent: bool) -> ExitCode {
    let Some(connection) = hb_tools::connect().await else {
        eprintln!(
            "stonith: -T without -t needs the running cluster (no cluster bus found); give a device with -t"
        );
        return ExitCode::from(exit::BAD_CONFIG);
    };
    let proxy = match hbapi::stonith::StonithProxy::new(&connection).await {
        Ok(proxy) => proxy,
        Err(error) => {
            eprintln!("stonith: {error}");
            return ExitCode::from(exit::OOPS);
        }
    };
    let Ok(mut finished) = proxy.receive_fence_finished().await else {
        return ExitCode::from(exit::OOPS);
    };
    let action = if action == "reset" { "reboot" } else { action };
    let op_id = match proxy
        .fence(node, action, "requested with the stonith command")
        .await
    {
        Ok(op_id) => op_id,
        Err(error) => {
            eprintln!("stonith: {error}");
            return ExitCode::from(exit::ACCESS);
        }
    };
    while let Some(signal) = finished.next().await {
        let Ok(args) = signal.args() else { continue };
        if args.record.op_id != op_id {
            continue;
        }
        let record = args.record;
        if !silent {
            hb_tools::outln!(
                "{{\"target\":{},\"device\":{},\"ok\":{},\"message\":{}}}",
                json_string(&record.target),
                json_string(&record.device),
                record.ok,
                json_string(&record.message)
            );
        }
        return if record.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(exit::RESET_FAILED)
        };
    }
    ExitCode::from(exit::OOPS)
}
