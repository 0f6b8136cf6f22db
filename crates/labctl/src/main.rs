fn main() -> std::process::ExitCode {
    labctl::main_impl(std::env::args_os())
}
