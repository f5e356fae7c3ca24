//! `seguro lb`: start an engine, keep it current, stop it cleanly.

use std::path::PathBuf;
use std::time::Duration;

use config::{Config, KeyCheck, LbMode, Overrides};
use lb_abi::Counters;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};
use tracing::{error, info, warn};

use crate::kernel::Programs;
use crate::metrics::Exporter;
use crate::nexthop::{Hop, NextHops, Unresolved};
use crate::plan::{Desired, Slots};
use crate::relay::Relay;
use crate::watch::ConfigWatch;
use crate::{Error, interface_index, privilege};

/// How often counters are summed and exported.
const EXPORT_EVERY: Duration = Duration::from_millis(500);
/// How often next hops are looked up again.
const RESOLVE_EVERY: Duration = Duration::from_secs(1);
/// How long a start or reload waits for the kernel to resolve new next hops
/// before it reports them unresolved (they are retried every second after).
const RESOLVE_WAIT: Duration = Duration::from_secs(2);

/// Runs the fan-out for `config` (read from `path` with `overrides`) until
/// SIGTERM or SIGINT, then detaches everything.
///
/// Reloads on SIGHUP and when `path` changes: the replica set and
/// `lb.drop_malformed` take effect at once; `ship.public` and the other
/// `[lb]` settings need a restart. A reload that does not validate keeps the
/// running set and logs why.
pub async fn run(path: PathBuf, overrides: Overrides, config: Config) -> Result<(), Error> {
    let lb = config.lb.clone();
    // Before anything is attached: a SIGTERM during the start then waits
    // for the loop below and detaches cleanly, rather than killing the
    // process with a clsact filter left behind.
    let signal = |kind: SignalKind| signal(kind).map_err(Error::io("installing a signal handler"));
    let (mut term, mut int, mut hup) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::interrupt())?,
        signal(SignalKind::hangup())?,
    );
    privilege::check(lb.mode)?;
    let ifindex = interface_index(&lb.interface)?;
    let mut slots = Slots::default();
    let mut desired = Desired::new(&config, &mut slots)?;
    let mut exporter = Exporter::install(lb.metrics)?;
    // Watching from before the start, so that no change is missed.
    let mut watch = match ConfigWatch::new(&path) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot watch the config file; reload with SIGHUP");
            None
        }
    };
    let mut engine = Engine::start(&lb).await?;
    exporter.mode(engine.name());
    let unresolved = engine.apply(&desired, true).await?;
    exporter.replicas(desired.replicas.len(), unresolved);
    exporter.export(&engine.counters()?, &slots);
    let (xdp_prog, tc_prog) = engine.program_ids();
    info!(
        interface = %lb.interface,
        ifindex,
        mode = engine.name(),
        tc = engine.tc_name(),
        xdp_prog,
        tc_prog,
        ship = %desired.ship,
        replicas = desired.replicas.len(),
        unresolved,
        metrics = %lb.metrics,
        "ready"
    );

    let mut export = interval(EXPORT_EVERY);
    let mut resolve = interval(RESOLVE_EVERY);
    export.set_missed_tick_behavior(MissedTickBehavior::Delay);
    resolve.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut running = config;
    let why = loop {
        let changed = async {
            match watch.as_mut() {
                Some(w) => w.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => {
                reload("SIGHUP", &path, &overrides, &mut running, &mut desired, &mut slots, &mut engine, &mut exporter).await;
            }
            () = changed => {
                reload("the config file changed", &path, &overrides, &mut running, &mut desired, &mut slots, &mut engine, &mut exporter).await;
            }
            _ = export.tick() => match engine.counters() {
                Ok(c) => exporter.export(&c, &slots),
                Err(e) => warn!(error = %e, "reading counters"),
            },
            _ = resolve.tick() => match engine.apply(&desired, false).await {
                Ok(unresolved) => exporter.replicas(desired.replicas.len(), unresolved),
                Err(e) => warn!(error = %e, "refreshing next hops"),
            },
        }
    };
    info!(signal = why, "stopping");
    if let Ok(c) = engine.counters() {
        exporter.export(&c, &slots);
    }
    engine.stop().await?;
    info!("detached");
    Ok(())
}

/// Applies the config at `path` again, keeping the running set if it does
/// not validate.
#[allow(clippy::too_many_arguments)]
async fn reload(
    why: &str,
    path: &std::path::Path,
    overrides: &Overrides,
    running: &mut Config,
    desired: &mut Desired,
    slots: &mut Slots,
    engine: &mut Engine,
    exporter: &mut Exporter,
) {
    let mut new = match Config::load(path, overrides, KeyCheck::Skip) {
        Ok((new, warnings)) => {
            for w in warnings.iter() {
                warn!("{w}");
            }
            new
        }
        Err(diagnostics) => {
            for d in diagnostics.iter() {
                error!("{d}");
            }
            error!(
                reason = why,
                "reload refused: the config has errors; keeping the running replica set"
            );
            exporter.reloaded(false);
            return;
        }
    };
    // What only a restart can change stays as it is.
    let restart = [
        (
            "ship.public",
            running.ship.public.to_string(),
            new.ship.public.to_string(),
        ),
        (
            "lb.interface",
            running.lb.interface.clone(),
            new.lb.interface.clone(),
        ),
        (
            "lb.mode",
            running.lb.mode.to_string(),
            new.lb.mode.to_string(),
        ),
        (
            "lb.tc_attach",
            running.lb.tc_attach.to_string(),
            new.lb.tc_attach.to_string(),
        ),
        (
            "lb.metrics",
            running.lb.metrics.to_string(),
            new.lb.metrics.to_string(),
        ),
    ];
    for (key, old, now) in restart {
        if old != now {
            warn!(key, running = %old, config = %now, "changing this needs a restart; keeping the running value");
        }
    }
    new.ship = running.ship.clone();
    new.lb.interface = running.lb.interface.clone();
    new.lb.mode = running.lb.mode;
    new.lb.tc_attach = running.lb.tc_attach;
    new.lb.metrics = running.lb.metrics;
    // Counts so far belong to the slots' current owners.
    if let Ok(c) = engine.counters() {
        exporter.export(&c, slots);
    }
    let mut next_slots = slots.clone();
    let next = match Desired::new(&new, &mut next_slots) {
        Ok(next) => next,
        Err(e) => {
            error!(reason = why, error = %e, "reload refused; keeping the running replica set");
            exporter.reloaded(false);
            return;
        }
    };
    match engine.apply(&next, true).await {
        Ok(unresolved) => {
            info!(
                reason = why,
                before = %listed(desired),
                after = %listed(&next),
                unresolved,
                drop_malformed = next.drop_malformed,
                "reloaded"
            );
            exporter.replicas(next.replicas.len(), unresolved);
            exporter.reloaded(true);
            *desired = next;
            *slots = next_slots;
            *running = new;
        }
        Err(e) => {
            error!(reason = why, error = %e, "reload failed; keeping the running replica set");
            exporter.reloaded(false);
        }
    }
}

/// The engine doing the copying.
enum Engine {
    Kernel {
        programs: Box<Programs>,
        hops: NextHops,
        /// The hops last published, to publish only on a change.
        published: Option<(Desired, Vec<Hop>)>,
        /// The relay that fans out the datagrams the edge box's stack
        /// reassembles from the fragments the programs pass it (if it could
        /// not start, the programs drop first fragments instead).
        fragments: Fragments,
    },
    Relay {
        relay: Option<Relay>,
        published: Option<Desired>,
    },
}

impl Engine {
    async fn start(lb: &config::LbConfig) -> Result<Engine, Error> {
        match lb.mode {
            LbMode::Userspace => Ok(Engine::Relay {
                relay: None,
                published: None,
            }),
            LbMode::Xdp | LbMode::XdpGeneric => {
                let hops = NextHops::new()?;
                let mut programs = Box::new(Programs::load()?);
                programs.attach(&lb.interface, lb.mode, lb.tc_attach)?;
                Ok(Engine::Kernel {
                    programs,
                    hops,
                    published: None,
                    fragments: Fragments::NotStarted,
                })
            }
        }
    }

    /// Makes `desired` current and returns how many replicas cannot be sent
    /// copies yet. With `wait`, gives the kernel a moment to resolve new
    /// next hops first.
    async fn apply(&mut self, desired: &Desired, wait: bool) -> Result<usize, Error> {
        match self {
            Engine::Kernel {
                programs,
                hops,
                published,
                fragments,
            } => {
                let reassemble = fragments.apply(desired);
                let addrs = desired.addrs();
                let deadline = Instant::now() + RESOLVE_WAIT;
                let mut found = hops.resolve(&addrs).await?;
                loop {
                    let changed = published
                        .as_ref()
                        .is_none_or(|(d, h)| d != desired || *h != found);
                    if changed {
                        let mut plan = desired.kernel_plan(&found);
                        plan.reassemble = u32::from(reassemble);
                        programs.publish(&plan)?;
                        log_hops(
                            desired,
                            &found,
                            published.as_ref().map(|(_, h)| h.as_slice()),
                        );
                        *published = Some((desired.clone(), found.clone()));
                    }
                    let pending = found.contains(&Hop::Unresolved(Unresolved::NoNeighbour));
                    if !wait || !pending || Instant::now() >= deadline {
                        break;
                    }
                    sleep(Duration::from_millis(50)).await;
                    found = hops.resolve(&addrs).await?;
                }
                Ok(found.iter().filter(|h| !h.is_ready()).count())
            }
            Engine::Relay { relay, published } => {
                if published.as_ref() != Some(desired) {
                    match relay {
                        Some(r) => r.publish(desired),
                        None => *relay = Some(Relay::start(desired)?),
                    }
                    *published = Some(desired.clone());
                }
                // The kernel routes the relay's copies itself.
                Ok(0)
            }
        }
    }

    fn counters(&self) -> Result<Counters, Error> {
        match self {
            Engine::Kernel {
                programs,
                fragments,
                ..
            } => {
                let mut counters = programs.counters()?;
                if let Fragments::Running(relay, _) = fragments {
                    counters.add(&relay.counters());
                }
                Ok(counters)
            }
            Engine::Relay { relay, .. } => {
                Ok(relay.as_ref().map_or(Counters::ZERO, Relay::counters))
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Engine::Kernel { programs, .. } => {
                programs.attachment().map_or("xdp", |(x, _)| x.as_str())
            }
            Engine::Relay { .. } => "userspace",
        }
    }

    fn tc_name(&self) -> &'static str {
        match self {
            Engine::Kernel { programs, .. } => {
                programs.attachment().map_or("none", |(_, tc)| tc.as_str())
            }
            Engine::Relay { .. } => "none",
        }
    }

    fn program_ids(&self) -> (u32, u32) {
        match self {
            Engine::Kernel { programs, .. } => programs.ids().unwrap_or((0, 0)),
            Engine::Relay { .. } => (0, 0),
        }
    }

    async fn stop(self) -> Result<(), Error> {
        match self {
            Engine::Kernel {
                mut programs,
                fragments,
                ..
            } => {
                let detached = programs.detach();
                if let Fragments::Running(relay, _) = fragments {
                    relay.stop().await;
                }
                detached
            }
            Engine::Relay { relay, .. } => {
                if let Some(r) = relay {
                    r.stop().await;
                }
                Ok(())
            }
        }
    }
}

/// The kernel engine's relay for reassembled datagrams.
enum Fragments {
    NotStarted,
    /// With the replica set it was last given.
    Running(Relay, Box<Desired>),
    /// It could not start (logged); first fragments are dropped and counted.
    Off,
}

impl Fragments {
    /// Starts the relay on the first call, gives it `desired` on the later
    /// ones; whether it runs.
    fn apply(&mut self, desired: &Desired) -> bool {
        match self {
            Fragments::NotStarted => match Relay::start(desired) {
                Ok(relay) => {
                    *self = Fragments::Running(relay, Box::new(desired.clone()));
                    true
                }
                Err(e) => {
                    warn!(
                        error = %e,
                        "no relay for fragmented datagrams: their first fragments are dropped \
                         (seguro_lb_dropped_total{{reason=\"fragment\"}})"
                    );
                    *self = Fragments::Off;
                    false
                }
            },
            Fragments::Running(relay, given) => {
                if **given != *desired {
                    relay.publish(desired);
                    **given = desired.clone();
                }
                true
            }
            Fragments::Off => false,
        }
    }
}

/// Logs each replica whose next hop changed state.
fn log_hops(desired: &Desired, now: &[Hop], before: Option<&[Hop]>) {
    for (i, (replica, hop)) in desired.replicas.iter().zip(now).enumerate() {
        let was = before.and_then(|b| b.get(i));
        if was.is_some_and(|w| w.is_ready() == hop.is_ready()) {
            continue;
        }
        match hop {
            Hop::Ready { ifindex, dmac, .. } => info!(
                replica = %replica.id,
                ames = %replica.ames,
                ifindex,
                next_hop_mac = %mac(dmac),
                "next hop resolved"
            ),
            Hop::Unresolved(why) => warn!(
                replica = %replica.id,
                ames = %replica.ames,
                "copies skipped until the next hop resolves: {why}"
            ),
        }
    }
}

/// `1=10.0.1.1:34543 2=...`: the replica set, for logs.
fn listed(desired: &Desired) -> String {
    let each: Vec<String> = desired
        .replicas
        .iter()
        .map(|r| format!("{}={}", r.id, r.ames))
        .collect();
    each.join(" ")
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
