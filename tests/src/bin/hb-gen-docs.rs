//! Writes the manual pages (`DIR/man/NAME.1`) and shell completions
//! (`DIR/completions/{bash,zsh,fish}/…`) of every command from its clap definition:
//! `heartbeat`, `hb_mon`, `stonith`, `meatclient`, and the Heartbeat-compatible commands that
//! parse by hand but are described with clap for this (`cl_status`, `hb_standby`,
//! `hb_takeover`). `scripts/gen-docs` runs it.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn commands() -> Vec<clap::Command> {
    vec![
        hbcomm::master::cli::Args::command(),
        hb_tools::monitor::Args::command(),
        hb_tools::cli::StonithArgs::command(),
        hb_tools::cli::MeatclientArgs::command(),
        hb_tools::cli::CleanupArgs::command(),
        hb_tools::docs::cl_status(),
        hb_tools::docs::hb_standby(),
        hb_tools::docs::hb_takeover(),
    ]
}

fn write(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    for command in commands() {
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
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: hb-gen-docs DIR");
        return std::process::ExitCode::from(2);
    };
    match write(&dir) {
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
