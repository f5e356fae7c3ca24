//! Real parts for Seguro's tests and benchmarks, started and stopped by the
//! test itself: an etcd server on loopback, free ports.

pub mod etcd;
pub mod port;

pub use etcd::Etcd;
pub use port::free_port;
