//! One edge box running both daemons that use the ship's public address, at
//! once: `seguro lb` in userspace mode, whose relay binds `ship.public` to
//! receive the peers' packets, and `seguro gatekeeper`, which sends the
//! leader's effects from `ship.public` through a raw socket and binds
//! nothing there. Both start, and both work: a peer's packet reaches the
//! replica from the peer's own lane, and the leader's effect reaches the
//! peer from the ship's address.
//!
//! On loopback (all of 127/8 is this host's), against a real etcd and a real
//! event log node. Needs root (raw sockets), as CI runs.

use std::time::Duration;

use ames::{Body, Packet, Prelude, Ship};
use config::{Key, LbMode, Optimism, ReplicaId};
use leadership::{Election, Sealer};
use testkit::{Daemon, Lab};
use tokio::net::UdpSocket;
use tokio::task::block_in_place;
use tokio::time::timeout;

const TTL: Duration = Duration::from_secs(2);
const CLUSTER: &str = "edge-test";
const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_and_the_gatekeeper_share_the_ships_address() {
    let replica = UdpSocket::bind("127.0.1.1:0").await.unwrap();
    let peer = UdpSocket::bind("127.0.0.4:0").await.unwrap();
    let lane = peer.local_addr().unwrap();
    let mut lab = block_in_place(|| {
        let mut lab = Lab::new(env!("CARGO_BIN_EXE_seguro"), CLUSTER, 1)?;
        lab.start_etcd()?;
        let f = lab.file_mut();
        f.optimism = Some(Optimism::Leader);
        f.lb.mode = Some(LbMode::Userspace);
        f.etcd.lease_ttl = Some(TTL);
        f.replicas[0].ames = replica.local_addr()?;
        lab.write_config()?;
        lab.start(Daemon::Eventlog(1))?;
        std::io::Result::Ok(lab)
    })
    .unwrap();
    let public = lab.file().ship.public;
    let (gk, lb) = (Daemon::Gatekeeper(1), Daemon::Lb);

    // The relay binds the ship's address first; the gatekeeper starts
    // beside it (it used to bind the same address and port, and fail).
    block_in_place(|| {
        lab.start(lb.clone()).unwrap();
        lab.wait(LIMIT, "the relay is ready", |lab| {
            lab.log(&lb).contains("ready")
        });
        lab.start(gk.clone()).unwrap();
        lab.wait(LIMIT, "the gatekeeper is active", |lab| {
            lab.metric(&gk, "seguro_gatekeeper_active") == Some(1.0)
        });
    });

    // A peer's packet to the ship reaches the replica, from the peer's lane.
    let packet = Packet {
        prelude: Prelude::new(Ship::new(0x1234), Ship::new(0x5678)),
        body: Body::Ames(b"to the ship".to_vec()),
    }
    .to_bytes();
    peer.send_to(&packet, public).await.unwrap();
    let mut buf = vec![0; 2048];
    let (n, from) = timeout(Duration::from_secs(5), replica.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("the relay delivered nothing\n{}", lab.logs_tail(40)))
        .unwrap();
    assert_eq!((from, &buf[..n]), (lane, packet.as_slice()));

    // The replica leads, fences the log, commits an event and sends its
    // effect to the gatekeeper: the peer gets it from the ship's address.
    let one = config::Role::Replica(ReplicaId::new(1).unwrap());
    let client = leadership::election::connect(&[lab.etcd_endpoint()], &lab.credentials(one))
        .await
        .unwrap();
    let election = Election::new(client, &format!("/seguro/{CLUSTER}"), TTL);
    let leadership = election.campaign(ReplicaId::new(1).unwrap()).await;
    let epoch = leadership.epoch();
    block_in_place(|| {
        lab.wait(LIMIT, "the gatekeeper sees the leader", |lab| {
            lab.metric(&gk, "seguro_gatekeeper_epoch") == Some(epoch.get() as f64)
        })
    });
    let cfg = testkit::load_config(&lab.config_path());
    let events = eventlog::Client::new(&cfg, lab.credentials(one));
    let last = events.fence(epoch).await.unwrap();
    let event = last.next();
    events
        .appender(epoch, event)
        .append(event, 1, bytes::Bytes::from_static(b"e"))
        .await
        .unwrap();
    let key = Key::load(&lab.keys_dir().join("replica-1.key")).unwrap();
    let mut sealer = Sealer::new(ReplicaId::new(1).unwrap(), epoch, key);
    let envelope = sealer.seal(event, lane.into(), b"from the ship").unwrap();
    let replica_side = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    replica_side
        .send_to(&envelope, lab.file().gatekeeper.listen)
        .await
        .unwrap();
    let (n, from) = timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("the effect never reached the peer\n{}", lab.logs_tail(40)))
        .unwrap();
    assert_eq!((from, &buf[..n]), (public, b"from the ship".as_slice()));

    // Both still run, and both stop cleanly.
    for daemon in [gk, lb] {
        let status = block_in_place(|| lab.stop(&daemon, Duration::from_secs(10)));
        assert!(
            status.is_some_and(|s| s.success()),
            "seguro {daemon}: {status:?}\n{}",
            lab.logs_tail(40)
        );
    }
    drop(leadership);
}
