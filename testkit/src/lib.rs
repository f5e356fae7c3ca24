//! Real parts for Seguro's tests and benchmarks, started and stopped by the
//! test itself: an etcd server on loopback, a cluster of event log nodes,
//! free ports.

pub mod etcd;
pub mod eventlog;
pub mod port;

pub use etcd::Etcd;
pub use port::free_port;
