//! The stats file a probing peer keeps (the demo's, `make run`), which
//! `seguro status --probe FILE` shows beside the cluster's own metrics.

use serde::{Deserialize, Serialize};

/// What the peer saw: counts since it started, round-trip times of the
/// last 10 s. Written whole, as one JSON object, at every update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStats {
    /// Where the peer sends (the ship's public address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub sent: u64,
    pub answered: u64,
    /// Answers to a request already answered.
    pub duplicates: u64,
    /// Answers to no request the peer sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<u64>,
    /// answered / sent; 1 before anything is sent.
    pub answered_ratio: f64,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p99_ms: Option<f64>,
    /// The highest event number an answer named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_unix_ms: Option<u64>,
}
