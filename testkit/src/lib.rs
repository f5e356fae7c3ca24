//! Real parts for Seguro's tests and benchmarks, started and stopped by the
//! test itself: an etcd server on loopback, free ports, network namespaces
//! and the edge box's topology in them, hand-made Ethernet frames.

pub mod edge;
pub mod etcd;
pub mod frame;
pub mod netns;
pub mod port;

pub use etcd::Etcd;
pub use port::free_port;
