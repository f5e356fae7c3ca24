//! Who may talk to an event log node: whoever holds the shared secret
//! (`keys.eventlog`). Every gRPC request carries, in its metadata, the
//! sender's id, the time, a random nonce and a keyed BLAKE3 MAC over them;
//! a node refuses a request whose MAC does not verify or whose time is more
//! than [`MAX_SKEW`] from its own clock. docs/SPEC.md §6.5 gives the threat
//! model.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use config::Key;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// The metadata key that carries the credential.
pub const HEADER: &str = "x-seguro-auth";

/// How far a request's clock may be from the node's.
pub const MAX_SKEW: Duration = Duration::from_secs(30);

/// Requests refused, by [`Refusal::reason`] (docs/METRICS.md).
pub const REFUSED_TOTAL: &str = "seguro_eventlog_auth_refused_total";

const CONTEXT: &[u8] = b"seguro eventlog request v1";

/// Who sends: a node id, or 0 for a client (replica agent, gatekeeper, CLI).
pub type Sender = u32;

fn mac(key: &Key, sender: Sender, millis: u64, nonce: &[u8; 8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key.as_bytes());
    h.update(CONTEXT);
    h.update(&sender.to_be_bytes());
    h.update(&millis.to_be_bytes());
    h.update(nonce);
    h.finalize()
}

/// The wall clock in milliseconds since the Unix epoch, as credentials carry it.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Adds the credential to every outgoing request.
#[derive(Clone)]
pub struct Signer {
    key: Key,
    sender: Sender,
}

impl Signer {
    pub fn new(key: Key, sender: Sender) -> Self {
        Signer { key, sender }
    }

    /// A fresh credential, for requests outside gRPC (HTTP, say).
    pub fn credential(&self) -> String {
        let millis = now_millis();
        let mut nonce = [0u8; 8];
        // The nonce only makes credentials unique; a failed draw is harmless.
        let _ = getrandom::fill(&mut nonce);
        let tag = mac(&self.key, self.sender, millis, &nonce);
        format!(
            "v1.{}.{}.{}.{}",
            self.sender,
            millis,
            hex::encode(nonce),
            tag.to_hex()
        )
    }
}

impl tonic::service::Interceptor for Signer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let value = MetadataValue::try_from(self.credential())
            .map_err(|_| Status::internal("credential is not valid metadata"))?;
        req.metadata_mut().insert(HEADER, value);
        Ok(req)
    }
}

/// Checks the credential of every incoming request.
#[derive(Clone)]
pub struct Verifier {
    key: Key,
}

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    BadMac,
    ClockSkew,
}

impl Refusal {
    pub const ALL: [Refusal; 4] = [
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::BadMac,
        Refusal::ClockSkew,
    ];

    /// The `reason` label of [`REFUSED_TOTAL`].
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::BadMac => "bad_mac",
            Refusal::ClockSkew => "clock_skew",
        }
    }
}

impl Verifier {
    pub fn new(key: Key) -> Self {
        Verifier { key }
    }

    /// The sender of a valid credential.
    pub fn verify(&self, credential: Option<&str>, now_millis: u64) -> Result<Sender, Refusal> {
        let c = credential.ok_or(Refusal::Missing)?;
        let mut parts = c.split('.');
        let (Some("v1"), Some(sender), Some(millis), Some(nonce), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(Refusal::Malformed);
        };
        let sender: Sender = sender.parse().map_err(|_| Refusal::Malformed)?;
        let millis: u64 = millis.parse().map_err(|_| Refusal::Malformed)?;
        let mut n = [0u8; 8];
        hex::decode_to_slice(nonce, &mut n).map_err(|_| Refusal::Malformed)?;
        let tag = blake3::Hash::from_hex(tag).map_err(|_| Refusal::Malformed)?;
        // blake3::Hash compares in constant time.
        if mac(&self.key, sender, millis, &n) != tag {
            return Err(Refusal::BadMac);
        }
        if now_millis.abs_diff(millis) > MAX_SKEW.as_millis() as u64 {
            return Err(Refusal::ClockSkew);
        }
        Ok(sender)
    }
}

impl tonic::service::Interceptor for Verifier {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let credential = req.metadata().get(HEADER).and_then(|v| v.to_str().ok());
        match self.verify(credential, now_millis()) {
            Ok(_) => Ok(req),
            Err(r) => {
                metrics::counter!(REFUSED_TOTAL, "reason" => r.reason()).increment(1);
                tracing::warn!(
                    reason = r.reason(),
                    "refused a request without a valid credential"
                );
                Err(Status::unauthenticated(match r {
                    Refusal::ClockSkew => {
                        "credential expired or from the future: check the hosts' clocks (NTP)"
                    }
                    _ => {
                        "not authenticated: the request must carry a credential made with the event log secret (keys.eventlog)"
                    }
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_its_own_and_refuses_other_keys_tampering_and_old_credentials() {
        let key = Key::from_bytes([1; 32]);
        let signer = Signer::new(key.clone(), 3);
        let v = Verifier::new(key);
        let c = signer.credential();
        let now = now_millis();
        assert_eq!(v.verify(Some(&c), now), Ok(3));

        let other = Signer::new(Key::from_bytes([2; 32]), 3).credential();
        assert_eq!(v.verify(Some(&other), now), Err(Refusal::BadMac));

        // Claiming to be another sender breaks the MAC.
        let forged = c.replacen("v1.3.", "v1.4.", 1);
        assert_eq!(v.verify(Some(&forged), now), Err(Refusal::BadMac));

        assert_eq!(
            v.verify(Some(&c), now + MAX_SKEW.as_millis() as u64 + 1000),
            Err(Refusal::ClockSkew)
        );
        assert_eq!(v.verify(None, now), Err(Refusal::Missing));
        assert_eq!(v.verify(Some("v1.3"), now), Err(Refusal::Malformed));
        assert_eq!(v.verify(Some("v2.3.1.00.00"), now), Err(Refusal::Malformed));
    }
}
