fn main() -> std::process::ExitCode {
    carve::cli::main()
}
