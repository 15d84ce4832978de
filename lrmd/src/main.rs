fn main() -> std::process::ExitCode {
    lrmd::main()
}
