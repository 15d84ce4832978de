//! `heartbeat`: the master process of a heartbeat-rs node.

fn main() -> std::process::ExitCode {
    hbcomm::master::cli::main()
}
