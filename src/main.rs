//! The `teams-presence` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    teams_presence::cli::main()
}
