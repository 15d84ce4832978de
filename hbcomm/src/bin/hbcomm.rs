//! `hbcomm`: heartbeats, membership and cluster messages of a heartbeat-rs node.

fn main() -> std::process::ExitCode {
    hbcomm::daemon::main()
}
