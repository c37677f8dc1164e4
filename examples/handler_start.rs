//! The handler's start: from `exec` of `teams-presence handler` to the first answer on `/`,
//! the readiness probe the Functions host polls (docs/performance.md).
//!
//! ```text
//! cargo build --release --bin teams-presence --example handler_start
//! target/release/examples/handler_start target/release/teams-presence [RUNS]
//! ```
//!
//! Each run starts the binary in a fresh directory with `STORE=sqlite` and a notification
//! certificate file (what it loads at start), probes `GET /` over a new connection every
//! 0.2 ms until one answers, then stops it. Prints every run and the median.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use teams_presence::clients::graph::certs::generate_self_signed;
use teams_presence::clients::graph::testing;

/// One probe: a status line back means the handler is ready.
fn answered(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bin = PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or_else(|| "target/release/teams-presence".into()),
    );
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(25);
    anyhow::ensure!(bin.exists(), "no binary at {}", bin.display());
    // Each run starts in a fresh directory: a relative path would be looked up from there.
    let bin = std::fs::canonicalize(&bin)?;
    let work = tempfile::tempdir()?;
    let cert = work.path().join("notification.pem");
    std::fs::write(
        &cert,
        testing::key_pem(&generate_self_signed("handler-start")?),
    )?;

    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let t0 = Instant::now();
        let mut child = Command::new(&bin)
            .arg("handler")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("STORE", "sqlite")
            .env("NOTIFICATION_CERTIFICATE_PATH", &cert)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = t0 + Duration::from_secs(20);
        while !answered(port) {
            anyhow::ensure!(Instant::now() < deadline, "run {run}: no answer on /");
            std::thread::sleep(Duration::from_micros(200));
        }
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let _ = child.kill();
        let _ = child.wait();
        println!("run {run}: {ms:.1} ms");
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "handler start, exec → readiness probe answered: median {:.1} ms over {runs} runs (min {:.1}, max {:.1})",
        times[runs / 2],
        times[0],
        times[runs - 1]
    );
    Ok(())
}
