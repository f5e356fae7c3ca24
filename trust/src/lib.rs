//! Who a Seguro peer is, and how it proves it.
//!
//! Every TCP connection between Seguro's parts (Raft between event log
//! nodes, the event log's clients, checkpoint transfers, etcd) is mutual
//! TLS 1.3 under one cluster CA. A certificate names one
//! [`config::Identity`] (`replica-3.<cluster>.seguro`, `edge...`,
//! `admin...`): the server checks the client's, the client checks that the
//! server is the peer it meant to reach, and services authorise each
//! request by the identity of the certificate it came with.
//!
//! - [`issue`]: making the cluster's CA and issuing certificates
//!   (`seguro certs`); [`inspect`]: what a certificate file says
//!   (`seguro certs show`).
//! - [`check`]: the [`config::CertCheck`] that `seguro config check` and
//!   every daemon load their config with.
//! - [`pem`]: reading certificates, keys and CA bundles from files.
//! - [`Credentials`]: one process's certificate, key and trusted CAs,
//!   reloaded in place on SIGHUP; the rustls configs built from them.
//! - [`server`]: a TLS listener for tonic that yields only connections whose
//!   client proved an identity; [`client`]: a connector for tonic channels
//!   that checks the server's identity.
//! - [`peer`]: the identity a connection or request proved.

pub mod check;
pub mod client;
mod credentials;
pub mod inspect;
pub mod issue;
pub mod peer;
pub mod pem;
pub mod server;

pub use credentials::{Credentials, Files, TlsError};
pub use peer::{Peer, peer_of};
