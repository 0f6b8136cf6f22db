//! A test-only copy of the `labctl` binary, built from `labctl::main_impl` (nextest's
//! pattern): cargo rebuilds it for this package's tests, so `vbox_cli` and `doctor_vbox`
//! never run a `labctl` left over from an earlier build. argv[0] is given as `labctl`, so
//! clap's usage lines read as the real binary's.

fn main() -> std::process::ExitCode {
    let rest = std::env::args_os().skip(1);
    labctl::main_impl(std::iter::once("labctl".into()).chain(rest))
}
