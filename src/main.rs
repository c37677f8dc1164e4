//! The `teams-presence` binary: everything lives in the library.

/// The static musl build's allocator (see the `mimalloc` feature in Cargo.toml).
#[cfg(all(feature = "mimalloc", target_env = "musl"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    teams_presence::cli::main()
}
