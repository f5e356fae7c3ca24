//! The fan-out's Prometheus metrics; docs/METRICS.md lists them under
//! "Edge fan-out".
//!
//! Both engines keep their counts in a [`Counters`] (the kernel per CPU, the
//! relay in memory). Every half second the supervisor hands the current sum
//! to [`Exporter::export`], which adds what changed since the last call to
//! the Prometheus counters, attributing per-replica counts to the replica
//! that owns the slot at that moment.

use std::net::SocketAddr;

use lb_abi::{CLASS_NAMES, Counters, DROP_NAMES, MAX_REPLICAS};
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::Error;
use crate::plan::Slots;

/// Turns counter snapshots into Prometheus counters.
pub struct Exporter {
    last: Counters,
}

impl Exporter {
    /// Serves `/metrics` on `addr`; needs a tokio runtime.
    pub fn install(addr: SocketAddr) -> Result<Self, Error> {
        telemetry::serve(PrometheusBuilder::new(), addr, "lb")?;
        describe();
        counter!("seguro_lb_passed_total").absolute(0);
        counter!("seguro_lb_fragments_total").absolute(0);
        for result in ["ok", "error"] {
            counter!("seguro_lb_reloads_total", "result" => result).absolute(0);
        }
        Ok(Self {
            last: Counters::ZERO,
        })
    }

    /// Adds what changed since the last snapshot.
    pub fn export(&mut self, now: &Counters, slots: &Slots) {
        let last = std::mem::replace(&mut self.last, *now);
        let delta = |now: u64, last: u64| now.wrapping_sub(last);
        for (tag, class) in CLASS_NAMES.iter().enumerate() {
            add(
                "seguro_lb_packets_total",
                "class",
                class,
                delta(now.packets[tag], last.packets[tag]),
            );
            add(
                "seguro_lb_bytes_total",
                "class",
                class,
                delta(now.bytes[tag], last.bytes[tag]),
            );
        }
        for (i, reason) in DROP_NAMES.iter().enumerate() {
            add(
                "seguro_lb_dropped_total",
                "reason",
                reason,
                delta(now.dropped[i], last.dropped[i]),
            );
        }
        counter!("seguro_lb_passed_total").increment(delta(now.passed, last.passed));
        counter!("seguro_lb_fragments_total").increment(delta(now.fragments, last.fragments));
        for slot in 0..MAX_REPLICAS {
            let Some(id) = slots.owner(slot) else {
                continue;
            };
            let id = id.to_string();
            add(
                "seguro_lb_copies_total",
                "replica",
                &id,
                delta(now.copies[slot], last.copies[slot]),
            );
            add(
                "seguro_lb_copies_skipped_total",
                "replica",
                &id,
                delta(now.skipped[slot], last.skipped[slot]),
            );
            add(
                "seguro_lb_clone_failures_total",
                "replica",
                &id,
                delta(now.clone_failures[slot], last.clone_failures[slot]),
            );
        }
    }

    /// The replica set after a start or reload.
    pub fn replicas(&self, configured: usize, unresolved: usize) {
        gauge!("seguro_lb_replicas").set(configured as f64);
        gauge!("seguro_lb_replicas_unresolved").set(unresolved as f64);
    }

    pub fn reloaded(&self, ok: bool) {
        counter!("seguro_lb_reloads_total", "result" => if ok { "ok" } else { "error" })
            .increment(1);
    }

    /// Which engine runs: `xdp-native`, `xdp-generic` or `userspace`.
    pub fn mode(&self, mode: &'static str) {
        gauge!("seguro_lb_mode", "mode" => mode).set(1.0);
    }
}

fn add(name: &'static str, label: &'static str, value: &str, by: u64) {
    // Registering every series up front (even at zero) lets dashboards and
    // alerts see them before the first packet.
    counter!(name, label => value.to_owned()).increment(by);
}

fn describe() {
    describe_counter!(
        "seguro_lb_packets_total",
        "Packets to the ship's address, by class"
    );
    describe_counter!(
        "seguro_lb_bytes_total",
        "UDP payload bytes of packets to the ship's address, by class"
    );
    describe_counter!(
        "seguro_lb_dropped_total",
        "Packets to the ship's address dropped, by reason"
    );
    describe_counter!(
        "seguro_lb_passed_total",
        "Packets not for the ship, passed to the edge box's stack untouched"
    );
    describe_counter!(
        "seguro_lb_fragments_total",
        "First IP fragments to the ship's port passed to the edge box's stack to reassemble"
    );
    describe_counter!("seguro_lb_copies_total", "Copies sent to each replica");
    describe_counter!(
        "seguro_lb_copies_skipped_total",
        "Copies not sent because the replica's next hop was unresolved"
    );
    describe_counter!(
        "seguro_lb_clone_failures_total",
        "Copies the kernel or socket failed to send"
    );
    describe_counter!("seguro_lb_reloads_total", "Replica set reloads, by result");
    describe_gauge!("seguro_lb_replicas", "Replicas in the config");
    describe_gauge!(
        "seguro_lb_replicas_unresolved",
        "Replicas whose next hop is unresolved"
    );
    describe_gauge!("seguro_lb_mode", "1 for the fan-out engine in use");
}
