//! Reading a daemon's Prometheus endpoint the way Prometheus does: an HTTP
//! GET of `/metrics`, then one sample by its series name.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The body of `GET /metrics` from `addr`.
pub fn scrape(addr: SocketAddr) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("no HTTP header end"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(io::Error::other(format!(
            "GET /metrics: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(body.to_string())
}

/// The value of one series in an exposition, written as it appears there:
/// `name` or `name{label="value"}`.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
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
