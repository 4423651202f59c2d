//! The `pgisolate` command.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(pgisolate_cli::main_from(std::env::args_os().collect()))
}
