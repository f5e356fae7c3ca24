//! A daemon's metrics from a test: one series by name, and waiting for one
//! to reach a value (scraped with `telemetry`, the one scrape client).

use std::net::SocketAddr;
use std::time::Duration;

use crate::wait::{self, TimedOut};

/// How long one scrape may take.
const SCRAPE: Duration = Duration::from_secs(5);

/// One series of `addr`'s metrics (`name` or `name{label="value"}`), if
/// it answers and has it.
pub fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    telemetry::scrape_blocking(addr, SCRAPE).ok()?.value(series)
}

/// Scrapes `addr` until `series` satisfies `ok`, for up to `limit`: the
/// value. On time-out, says what it read last. Blocking: from async code,
/// call it in `tokio::task::block_in_place`.
pub fn wait_metric(
    addr: SocketAddr,
    series: &str,
    limit: Duration,
    ok: impl Fn(f64) -> bool,
) -> Result<f64, TimedOut> {
    wait::until(
        limit,
        format_args!("{series} on {addr}"),
        || match telemetry::scrape_blocking(addr, SCRAPE) {
            Err(e) => Err(e.to_string()),
            Ok(m) => match m.value(series) {
                Some(v) if ok(v) => Ok(v),
                Some(v) => Err(format!("{series} = {v}")),
                None => Err(format!("no {series} among {} families", m.families.len())),
            },
        },
    )
}
