//! Reading a daemon's Prometheus endpoint the way Prometheus does: an HTTP
//! GET of `/metrics`, then one sample by its series name.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The body of `GET /metrics` from `addr`.
pub fn scrape(addr: SocketAddr) -> io::Result<String> {
    match get(addr, "/metrics")? {
        (200, body) => Ok(body),
        (status, _) => Err(io::Error::other(format!("GET /metrics: status {status}"))),
    }
}

/// `GET path` over HTTP/1.0 with short timeouts: status code and body.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("no HTTP header end"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head}")))?;
    Ok((status, body.to_string()))
}

/// The value of one series in an exposition, written as it appears there:
/// `name` or `name{label="value"}`.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Scrapes `addr` every 50 ms until `series` reads `value`, for up to
/// `limit`. On time-out, says what it read last, with the whole exposition.
/// Blocking: from async code, call it in `tokio::task::block_in_place`.
pub fn wait_sample(
    addr: SocketAddr,
    series: &str,
    value: f64,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let text = scrape(addr).unwrap_or_default();
        let now = sample(&text, series);
        if now == Some(value) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{series} never became {value} on {addr} in {limit:?} (last: {now:?}); metrics:\n{text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_sample_by_series() {
        let text = "# HELP x_total x\nx_total 3\nx_total{reason=\"a\"} 4\nx_totally 9\n";
        assert_eq!(sample(text, "x_total"), Some(3.0));
        assert_eq!(sample(text, "x_total{reason=\"a\"}"), Some(4.0));
        assert_eq!(sample(text, "y"), None);
    }
}
