//! `cl_status <sub-command> …`: Heartbeat's status command.

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    hb_tools::cl_status::main(&args).await
}
