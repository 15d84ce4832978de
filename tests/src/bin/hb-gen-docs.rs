//! Writes the manual pages (`DIR/man/NAME.1`) and shell completions
//! (`DIR/completions/{bash,zsh,fish}/…`) of every command from its clap definition:
//! `heartbeat`, `hb_mon`, `stonith`, `meatclient`, and the Heartbeat-compatible commands that
//! parse by hand but are described with clap for this (`cl_status`, `hb_standby`,
//! `hb_takeover`). `scripts/gen-docs` runs it; `scripts/package` with `--package`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// The names the Debian package installs `stonith` and `meatclient` under: cluster-glue,
/// which stonithd needs for its `external/*` plugins, owns /usr/sbin/stonith and
/// /usr/sbin/meatclient.
const PACKAGE_NAMES: [(&str, &str); 2] = [("stonith", "hb_stonith"), ("meatclient", "hb_meatclient")];

fn commands(package: bool) -> Vec<clap::Command> {
    let installed = |command: clap::Command| match PACKAGE_NAMES
        .iter()
        .find(|(cargo, _)| package && command.get_name() == *cargo)
    {
        Some((_, name)) => command.name(*name).bin_name(*name),
        None => command,
    };
    vec![
        heartbeat::cli::Args::command(),
        hb_tools::monitor::Args::command(),
        installed(hb_tools::cli::StonithArgs::command()),
        installed(hb_tools::cli::MeatclientArgs::command()),
        hb_tools::cli::CleanupArgs::command(),
        hb_tools::docs::cl_status(),
        hb_tools::docs::hb_standby(),
        hb_tools::docs::hb_takeover(),
    ]
}

fn write(dir: &Path, package: bool) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    for command in commands(package) {
        let name = command.get_name().to_owned();
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone()).render(&mut page)?;
        let path = man.join(format!("{name}.1"));
        std::fs::write(&path, page)?;
        written.push(path);
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let shell_dir = dir.join("completions").join(shell.to_string());
            std::fs::create_dir_all(&shell_dir)?;
            let path = clap_complete::generate_to(shell, &mut command.clone(), &name, &shell_dir)?;
            written.push(path);
        }
    }
    Ok(written)
}

fn main() -> std::process::ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let package = args.first().is_some_and(|a| a == "--package");
    if package {
        args.remove(0);
    }
    let (Some(dir), 1) = (args.first().map(PathBuf::from), args.len()) else {
        eprintln!("usage: hb-gen-docs [--package] DIR\n  --package: the names the .deb installs (hb_stonith, hb_meatclient)");
        return std::process::ExitCode::from(2);
    };
    match write(&dir, package) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("hb-gen-docs: {}: {error}", dir.display());
            std::process::ExitCode::FAILURE
        }
    }
}
