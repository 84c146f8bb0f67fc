//! `--healthcheck`: asks the running service on this machine whether it is
//! ready (`GET /health/ready` → 200) and exits 0 if so, 1 otherwise.
//!
//! Minimal container images (distroless) have no shell and no curl, so the
//! service binary is its own probe. It reads the same layered configuration
//! as the service, so it finds the port however it was set.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::ConfigError;
use crate::host::ServiceHostBuilder;
use crate::readiness::READY_PATH;

/// The command-line flag [`ServiceHostBuilder::run`] answers with a probe.
pub const HEALTHCHECK_FLAG: &str = "--healthcheck";

/// How long the probe waits to connect, and then for the answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The configuration could not be loaded.
    #[error("cannot load the configuration: {0}")]
    Config(#[from] ConfigError),
    /// Connecting, sending or reading failed.
    #[error("GET http://{addr}{READY_PATH}: {source}")]
    Io {
        /// Where the probe connected.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// The service answered, but not `200`.
    #[error("GET http://{addr}{READY_PATH}: expected status 200, got `{status_line}`")]
    NotReady {
        /// Where the probe connected.
        addr: SocketAddr,
        /// The answer's status line.
        status_line: String,
    },
}

/// Probes the service the builder's configuration describes; prints why on
/// failure.
pub fn run(host: &ServiceHostBuilder) -> ExitCode {
    let result = host
        .load_config()
        .map_err(ProbeError::from)
        .and_then(|config| {
            probe(probe_addr(
                &config.chassis().http.host,
                config.chassis().http.port,
            ))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("healthcheck: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The address to probe: a wildcard listen address is probed on loopback.
pub fn probe_addr(host: &str, port: u16) -> SocketAddr {
    let ip = match host.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    SocketAddr::new(ip, port)
}

/// `GET /health/ready` on `addr`; `Ok` on a 200 answer.
pub fn probe(addr: SocketAddr) -> Result<(), ProbeError> {
    let io = |source| ProbeError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let request = format!("GET {READY_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    // The status line is all we need; read until its end (or the close).
    let mut head = Vec::new();
    let mut buf = [0_u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default().to_owned();
    if status_line.split(' ').nth(1) == Some("200") {
        Ok(())
    } else {
        Err(ProbeError::NotReady { addr, status_line })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        assert_eq!(
            probe_addr("0.0.0.0", 8080),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(probe_addr("::", 8080), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(probe_addr("10.1.2.3", 80), "10.1.2.3:80".parse().unwrap());
        assert_eq!(probe_addr("localhost", 80), "127.0.0.1:80".parse().unwrap());
    }

    #[test]
    fn nothing_listening_is_an_io_error_naming_the_address() {
        // Bind then drop: a port that was free a moment ago.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = probe(addr).unwrap_err();
        assert!(matches!(err, ProbeError::Io { .. }), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    /// A one-shot server answering every connection with `status_line`.
    fn answering(status_line: &'static str) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buf = [0_u8; 1024];
                let _ = stream.read(&mut buf);
                let _ = write!(stream, "{status_line}\r\ncontent-length: 0\r\n\r\n");
            }
        });
        addr
    }

    #[test]
    fn ready_answer_passes_and_unready_answer_fails_with_the_status() {
        probe(answering("HTTP/1.1 200 OK")).expect("200 is ready");
        let err = probe(answering("HTTP/1.1 503 Service Unavailable")).unwrap_err();
        assert!(matches!(err, ProbeError::NotReady { .. }), "{err}");
        assert!(err.to_string().contains("503 Service Unavailable"), "{err}");
    }
}
