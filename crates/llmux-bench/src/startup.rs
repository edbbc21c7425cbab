//! `startup`: spawns a command and times spawn → first HTTP 200 from a URL, polled every 0.5 ms.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::json;

use crate::emit;

/// Sends one `GET path` on a fresh connection and returns the status code.
fn probe(addr: SocketAddr, host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_nodelay(true).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = s.read(&mut buf[n..]).ok()?;
        if r == 0 {
            break;
        }
        n += r;
    }
    std::str::from_utf8(&buf[..n]).ok()?.split(' ').nth(1)?.parse().ok()
}

/// `startup`: spawn → first 200, repeated.
pub(crate) fn startup(url: &str, runs: usize, timeout: f64, cmd: &[String]) -> anyhow::Result<()> {
    if runs == 0 || cmd.is_empty() {
        bail!("--runs must be positive and a command given");
    }
    let uri: http::Uri = url.parse()?;
    let auth = uri.authority().context("url without host")?;
    let addr = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80))
        .to_socket_addrs()?
        .next()
        .context("url host does not resolve")?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if probe(addr, auth.as_str(), path).is_some() {
        bail!("something already answers on {addr}");
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", cmd[0]))?;
        let result = loop {
            if probe(addr, auth.as_str(), path) == Some(200) {
                break Ok(t0.elapsed());
            }
            if let Some(status) = child.try_wait()? {
                break Err(anyhow::anyhow!("{} exited ({status}) before answering", cmd[0]));
            }
            if t0.elapsed().as_secs_f64() > timeout {
                break Err(anyhow::anyhow!("no 200 from {url} within {timeout} s"));
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let _ = child.kill();
        let _ = child.wait();
        times.push(result?.as_secs_f64() * 1000.0);
        // Wait until the port is free again.
        let free_by = Instant::now() + Duration::from_secs(5);
        while probe(addr, auth.as_str(), path).is_some() && Instant::now() < free_by {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let r = |x: f64| (x * 100.0).round() / 100.0;
    emit(&json!({
        "mode": "startup",
        "runs": runs,
        "min_ms": r(sorted[0]),
        "median_ms": r(sorted[sorted.len() / 2]),
        "max_ms": r(sorted[sorted.len() - 1]),
        "all_ms": times.iter().map(|t| r(*t)).collect::<Vec<_>>(),
    }));
    Ok(())
}
