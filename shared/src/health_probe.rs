//! The `healthcheck` subcommand of both binaries: one HTTP GET to the process's own port, so
//! container health checks need no curl in the image.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Exits successfully if `GET path` on `bind` (the unspecified address means localhost)
/// answers 200.
pub fn check(bind: SocketAddr, path: &str) -> anyhow::Result<()> {
    let mut addr = bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).unwrap_or_default();
    anyhow::ensure!(status == "200", "GET {path} on {addr} answered {status:?}");
    Ok(())
}
