//! `heartbeat`: the master process of a heartbeat-rs node.

fn main() -> std::process::ExitCode {
    heartbeat::cli::main()
}
