fn main() -> std::process::ExitCode {
    ipfail::main()
}
