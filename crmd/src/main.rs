fn main() -> std::process::ExitCode {
    crmd::main()
}
