//! What every sentiment-rs binary shares and nothing else: process set-up (environment, logging),
//! the shutdown signal services wait on, and the HTTP probe behind Docker's HEALTHCHECK
//! (`healthcheck` binary), so runtime images need no curl; and the check that `.env.example`
//! shows the binaries' real defaults.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Treats environment variables set to the empty string as unset, so a compose file's
/// `NUM_THREADS: ${NUM_THREADS:-}` means "not given" rather than an invalid value.
/// Call first thing in `main`, before any thread starts (it edits the process environment).
pub fn unset_empty_env_vars() {
    for (name, value) in std::env::vars_os() {
        if value.is_empty() {
            // SAFETY: called at the start of main, while the process has one thread, so no
            // other thread can be reading the environment.
            unsafe { std::env::remove_var(name) };
        }
    }
}

/// What every binary does first, while it still has one thread: [`unset_empty_env_vars`], then
/// logging to stderr, filtered by `RUST_LOG` (default `info`), human-readable or one JSON object
/// per line when `LOG_FORMAT=json` (for log collectors).
pub fn init() {
    unset_empty_env_vars();
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` sends), for graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

/// `GET http://{host}:{port}{path}` over plain HTTP/1.1; Ok(status) or why it failed.
/// Deliberately minimal (no TLS, no redirects): it only ever talks to its own container.
pub fn probe(host: &str, port: u16, path: &str, timeout: Duration) -> Result<u16, String> {
    let address = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {host}:{port}"))?;
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    // One write: `write!` on an unbuffered stream sends each piece as its own segment.
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send request: {e}"))?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(format!("no answer from {address}: {e}")),
        }
    }
    parse_status(&head[..read]).ok_or_else(|| {
        format!(
            "not an HTTP answer from {address}: {:?}",
            String::from_utf8_lossy(&head[..read])
        )
    })
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head.get(..12)?).ok()?;
    let rest = line.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn status_line_parses() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(b"HTTP/1.1"), None);
    }

    #[test]
    fn probe_reads_the_status_and_reports_a_closed_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Read the whole request head: TCP may deliver it in pieces.
            let mut request = Vec::new();
            let mut buf = [0u8; 256];
            while !request.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "connection closed mid-request");
                request.extend_from_slice(&buf[..n]);
            }
            assert!(String::from_utf8_lossy(&request).starts_with("GET /health HTTP/1.1"));
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        });
        let status = probe("127.0.0.1", port, "/health", Duration::from_secs(5));
        server.join().unwrap();
        assert_eq!(status, Ok(503));
        // Nothing listens there any more.
        let err = probe("127.0.0.1", port, "/health", Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("cannot connect"), "{err}");
    }
}

/// The mismatches between an env file (`.env.example`: `NAME=value` lines, `#` comments) and
/// `command`'s defaults: a line naming one of the command's environment variables must show
/// that variable's default (empty for a setting without one). The compose file passes
/// `${NAME:-}`, so clap's defaults are the only ones in force, and this keeps the example
/// file telling the truth about them.
pub fn env_file_mismatches(command: &clap::Command, env_file: &str) -> Vec<String> {
    let lines = env_file
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='));
    let mut mismatches = Vec::new();
    for (name, shown) in lines {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name))
        else {
            continue;
        };
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = default.join(",");
        let flag_off = default == "false" && shown.is_empty();
        if !(same_value(&default, shown) || flag_off) {
            mismatches.push(format!("{name}={shown}, but the default is `{default}`"));
        }
    }
    mismatches
}

/// For each binary's tests: panics, listing the lines, when `env_example` (the repository's
/// `.env.example`, read by the test: images are built without it) shows other defaults than
/// `command` has ([`env_file_mismatches`]).
pub fn check_env_example(command: &clap::Command, env_example: &str) {
    let found = env_file_mismatches(command, env_example);
    assert!(found.is_empty(), ".env.example is out of date: {found:?}");
}

/// Equal as text, or as numbers (`5e-5` and `0.00005`).
fn same_value(a: &str, b: &str) -> bool {
    a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod env_file_tests {
    use super::env_file_mismatches;

    #[derive(clap::Parser)]
    struct Args {
        #[arg(long, env = "RATE", default_value_t = 5e-5)]
        rate: f64,
        #[arg(long, env = "NAME", default_value = "base")]
        name: String,
        #[arg(long, env = "THREADS")]
        threads: Option<usize>,
    }

    #[test]
    fn a_line_must_show_the_default() {
        use clap::CommandFactory;
        let cmd = Args::command();
        let good = "# comment\nRATE=0.00005\nNAME=base\nTHREADS=\nOTHER=1\n";
        assert!(env_file_mismatches(&cmd, good).is_empty());
        let bad = "RATE=1e-4\nNAME=large\nTHREADS=4\n";
        let found = env_file_mismatches(&cmd, bad);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[1].contains("NAME=large") && found[1].contains("`base`"));
    }
}
