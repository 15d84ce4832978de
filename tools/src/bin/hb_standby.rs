//! `hb_standby [all|foreign|local|failback]`: this node gives up groups (Heartbeat's command).

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    hb_tools::standby::main(hb_tools::standby::Which::Standby, &args).await
}
