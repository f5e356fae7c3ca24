//! Seguro's integration tests: one binary, a module per area, each test
//! starting the real `seguro` binary and the real parts it needs (etcd,
//! Prometheus, network namespaces, XDP) through `testkit`. Tests that
//! share something exclusive run in the test groups `.config/nextest.toml`
//! names.

mod ames_decode;
mod attacks;
mod certs;
mod chaos;
mod cluster;
mod config_check;
mod edge_box;
mod etcd_grant;
mod eventlog_cluster;
mod ffi;
mod gatekeeper_daemon;
mod lazyfs;
mod lb_fanout;
mod observability;
mod pier;
mod status;
mod vere;
