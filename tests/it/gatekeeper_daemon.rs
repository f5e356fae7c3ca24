//! `seguro gatekeeper` as operators run it, against a real etcd and a real
//! event log node: two edge-box gatekeepers, one forwards and the other
//! stands by and takes over within TTL + 1 s when the active one is killed
//! (-9); under `quorum`, effects wait for their events to commit and leave
//! in order.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use config::{Key, Optimism, ReplicaId};
use eventlog::EventNum;
use leadership::{Election, Sealer};
use testkit::{Daemon, Lab};
use tokio::net::UdpSocket;
use tokio::task::block_in_place;
use tokio::time::{Instant, sleep, timeout};

const TTL: Duration = Duration::from_secs(2);
const LIMIT: Duration = Duration::from_secs(20);

/// One edge box's gatekeeper: its daemon and addresses.
struct EdgeBox {
    daemon: Daemon,
    listen: SocketAddr,
    public: SocketAddr,
}

/// A lab with etcd and a one-node event log (a quorum of one) for the
/// gatekeepers' commit watch.
fn lab(optimism: Optimism) -> Lab {
    block_in_place(|| {
        let mut lab = Lab::new(env!("CARGO_BIN_EXE_seguro"), "gk-test", 1)?;
        lab.start_etcd()?;
        let f = lab.file_mut();
        f.optimism = Some(optimism);
        f.etcd.lease_ttl = Some(TTL);
        lab.write_config()?;
        lab.start(Daemon::Eventlog(1))?;
        std::io::Result::Ok(lab)
    })
    .unwrap()
}

/// Edge box `n`'s gatekeeper, with the ship's public address on `ip`: its
/// own config, written; not started.
fn edge_box(lab: &mut Lab, n: u8, ip: Ipv4Addr) -> EdgeBox {
    let mut file = lab.file().clone();
    file.ship.public = SocketAddr::new(IpAddr::V4(ip), testkit::free_port());
    file.gatekeeper.listen = lab.fresh_addr();
    file.gatekeeper.metrics = Some(lab.fresh_addr());
    let daemon = Daemon::Gatekeeper(n);
    let config = lab.write_config_as(&daemon.to_string(), &file).unwrap();
    lab.set_config(daemon.clone(), Some(config));
    EdgeBox {
        daemon,
        listen: file.gatekeeper.listen,
        public: file.ship.public,
    }
}

/// A client of the test's event log, patient enough for its first election.
fn log_client(lab: &Lab) -> eventlog::Client {
    let eventlog = lab
        .replica(1)
        .eventlog
        .expect("the lab gives it an address");
    eventlog::Client::with_options(
        vec![(config::ReplicaId::new(1).unwrap(), eventlog)],
        lab.credentials(config::Role::Replica(config::ReplicaId::new(1).unwrap())),
        eventlog::ClientOptions {
            request_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(30),
            append_timeout: Duration::from_secs(30),
            batch: config::BatchLimits {
                max_events: 16,
                max_bytes: 1 << 20,
                max_linger: Duration::from_millis(1),
            },
            max_event_bytes: 1 << 20,
            max_in_flight: 8,
        },
    )
}

/// Waits until `series` reads `value` on the box's /metrics.
fn wait_metric(lab: &mut Lab, b: &EdgeBox, series: &str, value: f64) {
    block_in_place(|| {
        lab.wait(
            LIMIT,
            &format!("{series} = {value} on {}", b.daemon),
            |lab| lab.metric(&b.daemon, series) == Some(value),
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gatekeeper_forwards_and_the_standby_takes_over_within_ttl_plus_1s() {
    let mut lab = lab(Optimism::Leader);
    let key = Key::load(&lab.keys_dir().join("replica-1.key")).unwrap();
    let a = edge_box(&mut lab, 1, Ipv4Addr::new(127, 0, 0, 2));
    let b = edge_box(&mut lab, 2, Ipv4Addr::new(127, 0, 0, 3));

    // A starts first and becomes active; B stands by.
    block_in_place(|| lab.start(a.daemon.clone())).unwrap();
    wait_metric(&mut lab, &a, "seguro_gatekeeper_active", 1.0);
    block_in_place(|| lab.start(b.daemon.clone())).unwrap();
    wait_metric(&mut lab, &b, "seguro_gatekeeper_active", 0.0);

    // This test is replica 1, and leads.
    let one = config::Role::Replica(ReplicaId::new(1).unwrap());
    let client = leadership::election::connect(&[lab.etcd_endpoint()], &lab.credentials(one))
        .await
        .unwrap();
    let election = Election::new(client.clone(), "/seguro/gk-test", TTL);
    let leadership = election.campaign(ReplicaId::new(1).unwrap()).await;
    let epoch = leadership.epoch();
    wait_metric(&mut lab, &a, "seguro_gatekeeper_epoch", epoch.get() as f64);
    wait_metric(&mut lab, &b, "seguro_gatekeeper_epoch", epoch.get() as f64);
    // As a new leader does (SPEC §6.3): fence the log at its epoch.
    let events = log_client(&lab);
    let last = events.fence(epoch).await.unwrap();

    // The peer, and the leader appending one event every 20 ms and sending
    // its effect to both boxes once it is durable.
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let lane = peer.local_addr().unwrap();
    let sender = {
        let mut sealer = Sealer::new(ReplicaId::new(1).unwrap(), epoch, key.clone());
        let appender = events.appender(epoch, last.next());
        let to = [a.listen, b.listen];
        tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            for event in last.get() + 1.. {
                appender
                    .append(EventNum(event), 1, bytes::Bytes::from_static(b"e"))
                    .await
                    .unwrap();
                let d = sealer.seal(EventNum(event), lane.into(), b"ack").unwrap();
                for addr in to {
                    socket.send_to(&d, addr).await.unwrap();
                }
                sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut buf = vec![0; 2048];
    let mut recv = async |wait: Duration| -> Option<SocketAddr> {
        let (_, from) = timeout(wait, peer.recv_from(&mut buf)).await.ok()?.unwrap();
        Some(from)
    };

    // Only A forwards.
    let mut from_a = 0;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        match recv(Duration::from_secs(5)).await {
            Some(from) => {
                assert_eq!(from, a.public, "only the active gatekeeper forwards");
                from_a += 1;
            }
            None => panic!("no effect arrived\n{}", lab.logs_tail(40)),
        }
    }
    // One every 20 ms when idle; a loaded 2-core CI machine commits fewer.
    assert!(from_a >= 3, "{from_a} effects in a second");
    let metrics_b = block_in_place(|| lab.scrape(&b.daemon)).unwrap();
    assert!(
        metrics_b
            .value("seguro_gatekeeper_dropped_total{reason=\"standby\"}")
            .unwrap()
            > 0.0
    );
    assert_eq!(
        metrics_b.value("seguro_gatekeeper_forwarded_total"),
        Some(0.0)
    );

    // kill -9 the active one: the standby takes over when its lease expires.
    let killed = Instant::now();
    block_in_place(|| lab.kill(&a.daemon));
    // What A sent before it died is queued already (loopback delivers in
    // the send); after that, only B may forward.
    while let Some(from) = recv(Duration::ZERO).await {
        assert_eq!(from, a.public, "the standby forwarded while A was active");
    }
    let takeover = match recv(TTL * 3).await {
        Some(from) if from == b.public => killed.elapsed(),
        Some(from) => panic!("{from} forwarded after the active gatekeeper died"),
        None => panic!("the standby never took over\n{}", lab.logs_tail(40)),
    };
    eprintln!("standby forwarded {takeover:?} after the active gatekeeper was killed");
    assert!(
        takeover <= TTL + Duration::from_secs(1),
        "takeover took {takeover:?}\n{}",
        lab.logs_tail(40)
    );
    wait_metric(&mut lab, &b, "seguro_gatekeeper_active", 1.0);

    // A clean stop resigns the key at once and exits 0.
    sender.abort();
    let status = block_in_place(|| lab.stop(&b.daemon, Duration::from_secs(10)));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        lab.logs_tail(40)
    );
    // Read as the operator: a replica may not see the gatekeeper key.
    let mut kv = leadership::election::connect(
        &[lab.etcd_endpoint()],
        &lab.credentials(config::Role::Admin),
    )
    .await
    .unwrap();
    let key = kv.get("/seguro/gk-test/gatekeeper", None).await.unwrap();
    assert!(
        key.kvs().is_empty(),
        "the gatekeeper key is released on exit"
    );
    drop(leadership);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_quorum_effects_wait_for_their_events_and_leave_in_order() {
    let mut lab = lab(Optimism::Quorum);
    let key = Key::load(&lab.keys_dir().join("replica-1.key")).unwrap();
    let a = edge_box(&mut lab, 1, Ipv4Addr::new(127, 0, 0, 2));
    block_in_place(|| lab.start(a.daemon.clone())).unwrap();
    wait_metric(&mut lab, &a, "seguro_gatekeeper_active", 1.0);

    let one = config::Role::Replica(ReplicaId::new(1).unwrap());
    let etcd_client = leadership::election::connect(&[lab.etcd_endpoint()], &lab.credentials(one))
        .await
        .unwrap();
    let election = Election::new(etcd_client, "/seguro/gk-test", TTL);
    let leadership = election.campaign(ReplicaId::new(1).unwrap()).await;
    let epoch = leadership.epoch();
    wait_metric(&mut lab, &a, "seguro_gatekeeper_epoch", epoch.get() as f64);
    let client = log_client(&lab);
    let last = client.fence(epoch).await.unwrap();

    // Ten effects for events the log does not have yet: all held.
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let lane = peer.local_addr().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sealer = Sealer::new(ReplicaId::new(1).unwrap(), epoch, key);
    let events: Vec<u64> = (last.get() + 1..=last.get() + 10).collect();
    for &n in &events {
        let d = sealer
            .seal(EventNum(n), lane.into(), &n.to_be_bytes())
            .unwrap();
        socket.send_to(&d, a.listen).await.unwrap();
    }
    wait_metric(&mut lab, &a, "seguro_gatekeeper_held_effects", 10.0);
    let mut buf = [0u8; 64];
    assert!(
        timeout(Duration::from_millis(500), peer.recv_from(&mut buf))
            .await
            .is_err(),
        "nothing leaves before its event commits"
    );

    // Commit them: the effects leave, in order.
    let appender = client.appender(epoch, last.next());
    let appended: Vec<_> = events
        .iter()
        .map(|&n| appender.append(EventNum(n), 1, bytes::Bytes::from_static(b"e")))
        .collect();
    for &n in &events {
        let (len, from) = timeout(Duration::from_secs(10), peer.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("effect of event {n} never left\n{}", lab.logs_tail(40)))
            .unwrap();
        assert_eq!(from, a.public);
        assert_eq!(&buf[..len], &n.to_be_bytes(), "in order");
    }
    for commit in appended {
        commit.await.unwrap();
    }
    wait_metric(&mut lab, &a, "seguro_gatekeeper_held_effects", 0.0);
    let status = block_in_place(|| lab.stop(&a.daemon, Duration::from_secs(10)));
    assert!(status.is_some_and(|s| s.success()));
    drop(leadership);
}

#[test]
fn without_cap_net_raw_it_says_so_and_exits_77() {
    // Root, with CAP_NET_RAW gone from the bounding set: the raw socket
    // that sends from the ship's address is refused before etcd is asked.
    testkit::require_root("drops CAP_NET_RAW with setpriv");
    let lab = Lab::new(env!("CARGO_BIN_EXE_seguro"), "t", 1).unwrap();
    let config = lab.config_path();
    let out = Command::new("setpriv")
        .args(["--inh-caps=-net_raw", "--bounding-set=-net_raw"])
        .arg(env!("CARGO_BIN_EXE_seguro"))
        .args(["gatekeeper", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(
        stderr.contains("the gatekeeper needs CAP_NET_RAW to send from the ship's address"),
        "{stderr}"
    );
}
