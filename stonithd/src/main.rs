fn main() -> std::process::ExitCode {
    stonithd::main()
}
