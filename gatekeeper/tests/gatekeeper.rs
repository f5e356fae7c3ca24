//! The gatekeeper against a real etcd, with real sockets on loopback: only
//! the current leader's authentic, new, durable effects leave, from the
//! ship's public address; everything else is counted and dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use config::{Key, Optimism, ReplicaId, Role};
use leadership::{CommitState, Epoch, EventNum};
use leadership::{Election, Keyring, Sealer};
use seguro_gatekeeper::stats::Snapshot;
use seguro_gatekeeper::{DropReason, Gatekeeper, Settings, Stats};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

const TTL: Duration = Duration::from_secs(2);
const ROOT: &str = "/seguro/gk-test";

fn id(n: u32) -> ReplicaId {
    ReplicaId::new(n).unwrap()
}

/// etcd, a gatekeeper, a peer that effects go to, and a replica-side socket
/// that envelopes come from.
struct Rig {
    etcd: testkit::Etcd,
    _pki: testkit::Pki,
    client: leadership::election::Client,
    keys: Vec<Key>,
    stats: Arc<Stats>,
    listen: SocketAddr,
    public: SocketAddr,
    peer: UdpSocket,
    sender: UdpSocket,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), seguro_gatekeeper::Error>>>,
}

/// A real etcd as Seguro runs it (TLS, client certificates, a role per
/// identity) for this test's cluster, and its certificates.
fn tls_etcd() -> (testkit::Etcd, testkit::Pki) {
    tokio::task::block_in_place(|| {
        let pki = testkit::Pki::temporary("test").unwrap();
        let etcd = testkit::Etcd::start_tls(&pki, ROOT, &[id(1), id(2), id(3)]).unwrap();
        (etcd, pki)
    })
}

impl Rig {
    async fn start(optimism: Optimism, commits: Option<watch::Receiver<CommitState>>) -> Rig {
        // All of 127/8 is local: a distinct source shows who sent. It is
        // written in the effects' headers, not bound (raw sends, as root).
        Rig::start_at(optimism, commits, "127.0.0.2:34543", "127.0.0.3:0").await
    }

    /// A rig whose ship's public address and peer are `public` and `peer`.
    async fn start_at(
        optimism: Optimism,
        commits: Option<watch::Receiver<CommitState>>,
        public: &str,
        peer: &str,
    ) -> Rig {
        let (etcd, pki) = tls_etcd();
        // The test campaigns as the replicas; the gatekeeper is the edge box.
        let client = etcd.client(&pki, Role::Replica(id(1))).await.unwrap();
        let edge = etcd.client(&pki, Role::Edge).await.unwrap();
        let keys: Vec<Key> = (0..3).map(|_| Key::generate().unwrap()).collect();
        let mut ring = Keyring::new();
        for (i, k) in keys.iter().enumerate() {
            ring.insert(id(i as u32 + 1), k.clone());
        }
        let settings = Settings {
            root: ROOT.into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            public: public.parse().unwrap(),
            keys: ring,
            optimism,
            hold_limit: 1000,
            hold_timeout: Duration::from_secs(30),
            stateless_rate: 1000,
            lease_ttl: TTL,
            name: "test gatekeeper".into(),
            socket: Default::default(),
        };
        let gk = Gatekeeper::bind(settings).unwrap();
        let (stats, listen, public) = (gk.stats(), gk.listen_addr(), gk.public_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gk.run(edge, commits, async move {
            let _ = stopped.await;
        }));
        Rig {
            etcd,
            _pki: pki,
            client,
            keys,
            stats,
            listen,
            public,
            peer: UdpSocket::bind(peer).await.unwrap(),
            sender: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn election(&self) -> Election {
        Election::new(self.client.clone(), ROOT, TTL)
    }

    fn sealer(&self, replica: u32, epoch: Epoch) -> Sealer {
        Sealer::new(id(replica), epoch, self.keys[replica as usize - 1].clone())
    }

    fn lane(&self) -> SocketAddr {
        self.peer.local_addr().unwrap()
    }

    async fn send(&self, datagram: &[u8]) {
        self.sender.send_to(datagram, self.listen).await.unwrap();
    }

    async fn send_effect(&self, sealer: &mut Sealer, event: u64, payload: &[u8]) {
        let e = sealer
            .seal(EventNum(event), self.lane().into(), payload)
            .unwrap();
        self.send(&e).await;
    }

    /// The next effect the peer receives, checking it came from the ship's
    /// public address; `None` if none arrives within `wait`.
    async fn recv(&self, wait: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0; 65536];
        let (n, from) = timeout(wait, self.peer.recv_from(&mut buf))
            .await
            .ok()?
            .unwrap();
        assert_eq!(from, self.public, "effects leave from the ship's address");
        Some(buf[..n].to_vec())
    }

    async fn wait_stats(&self, what: &str, f: impl Fn(&Snapshot) -> bool) -> Snapshot {
        testkit::wait::until_async(Duration::from_secs(15), what, || async {
            let s = self.stats.snapshot();
            if f(&s) { Ok(s) } else { Err(format!("{s:?}")) }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Active, confirmed, and following `replica` in `epoch`.
    async fn wait_leader(&self, replica: u32, epoch: Epoch) {
        self.wait_stats(
            &format!("following replica {replica} in epoch {epoch}"),
            |s| {
                s.active
                    && !s.fail_closed
                    && s.leader == u64::from(replica)
                    && s.epoch == epoch.get()
            },
        )
        .await;
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_speaks_and_a_change_silences_the_old_one() {
    let rig = Rig::start(Optimism::Leader, None).await;
    let one = rig.election().campaign(id(1)).await;
    let e1 = one.epoch();
    rig.wait_leader(1, e1).await;

    let mut s1 = rig.sealer(1, e1);
    rig.send_effect(&mut s1, 1, b"from 1").await;
    assert_eq!(rig.recv(Duration::from_secs(5)).await.unwrap(), b"from 1");
    // Replica 2 signs correctly, but does not lead.
    let mut s2_old = rig.sealer(2, e1);
    rig.send_effect(&mut s2_old, 1, b"from 2 early").await;
    rig.wait_stats("not_leader counted", |s| {
        s.dropped(DropReason::NotLeader) == 1
    })
    .await;

    // Replica 2 campaigns; replica 1 resigns; replica 2 leads in a new epoch.
    let election = rig.election();
    let two = tokio::spawn(async move { election.campaign(id(2)).await });
    one.resign().await.unwrap();
    let two = two.await.unwrap();
    let e2 = two.epoch();
    assert!(e2 > e1);
    rig.wait_leader(2, e2).await;

    // From the moment the change is seen, replica 1's envelopes are dropped
    // (whatever epoch they claim) and replica 2's leave.
    rig.send_effect(&mut s1, 2, b"from 1 late").await;
    let mut s1_new = rig.sealer(1, e2);
    rig.send_effect(&mut s1_new, 2, b"from 1 in 2's epoch")
        .await;
    rig.send_effect(&mut s2_old, 2, b"from 2 in the old epoch")
        .await;
    let mut s2 = rig.sealer(2, e2);
    rig.send_effect(&mut s2, 2, b"from 2").await;
    assert_eq!(rig.recv(Duration::from_secs(5)).await.unwrap(), b"from 2");
    assert_eq!(rig.recv(Duration::from_millis(300)).await, None);
    let s = rig.stats.snapshot();
    assert_eq!(s.forwarded, 2);
    assert_eq!(s.dropped(DropReason::NotLeader), 3);
    assert_eq!(s.dropped(DropReason::StaleEpoch), 1);
    assert_eq!(s.leadership_changes, 1);
    drop(two);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unknown_replayed_and_truncated_never_leave() {
    let rig = Rig::start(Optimism::Leader, None).await;
    let one = rig.election().campaign(id(1)).await;
    let e = one.epoch();
    rig.wait_leader(1, e).await;
    let lane = rig.lane();

    // Signed with replica 2's key while claiming to be replica 1.
    let mut forger = Sealer::new(id(1), e, rig.keys[1].clone());
    rig.send_effect(&mut forger, 1, b"forged").await;
    // A replica the gatekeeper has no key for.
    let mut stranger = Sealer::new(id(9), e, Key::generate().unwrap());
    rig.send_effect(&mut stranger, 1, b"stranger").await;
    // A good one, then the very same datagram again.
    let mut s1 = rig.sealer(1, e);
    let good = s1.seal(EventNum(1), lane.into(), b"good").unwrap();
    rig.send(&good).await;
    assert_eq!(rig.recv(Duration::from_secs(5)).await.unwrap(), b"good");
    rig.send(&good).await;
    // A good envelope cut short, and one with a byte changed.
    let next = s1.seal(EventNum(2), lane.into(), b"cut short").unwrap();
    rig.send(&next[..next.len() - 1]).await;
    let mut flipped = next.clone();
    flipped[45] ^= 0x40;
    rig.send(&flipped).await;
    rig.send(b"not an envelope at all").await;
    // The real envelope 2 still goes: nothing above consumed its sequence.
    rig.send(&next).await;
    assert_eq!(
        rig.recv(Duration::from_secs(5)).await.unwrap(),
        b"cut short"
    );
    assert_eq!(rig.recv(Duration::from_millis(300)).await, None);

    let s = rig
        .wait_stats("every drop counted", |s| s.dropped_total() == 6)
        .await;
    assert_eq!(s.forwarded, 2);
    assert_eq!(s.dropped(DropReason::BadMac), 2);
    assert_eq!(s.dropped(DropReason::UnknownReplica), 1);
    assert_eq!(s.dropped(DropReason::Replay), 1);
    assert_eq!(s.dropped(DropReason::Malformed), 2);
    assert_eq!(s.received, 8);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_it_fails_closed_within_a_ttl_and_resumes_after() {
    let mut rig = Rig::start(Optimism::Leader, None).await;
    // The replica's lease is long, so that its term survives the outage and
    // the gatekeeper's behaviour alone is under test.
    let election = Election::new(rig.client.clone(), ROOT, Duration::from_secs(60));
    let one = election.campaign(id(1)).await;
    let e = one.epoch();
    rig.wait_leader(1, e).await;

    // A replica sending an effect every 20 ms.
    let sender = {
        let (listen, lane, mut sealer) = (rig.listen, rig.lane(), rig.sealer(1, e));
        tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            for event in 1.. {
                let d = sealer.seal(EventNum(event), lane.into(), b"tick").unwrap();
                socket.send_to(&d, listen).await.unwrap();
                sleep(Duration::from_millis(20)).await;
            }
        })
    };
    for _ in 0..5 {
        rig.recv(Duration::from_secs(5))
            .await
            .expect("effects flow");
    }

    let killed = Instant::now();
    tokio::task::block_in_place(|| rig.etcd.kill());
    let mut last = killed;
    while killed.elapsed() < TTL + Duration::from_millis(1500) {
        if rig.recv(Duration::from_millis(100)).await.is_some() {
            last = Instant::now();
        }
    }
    let stopped_after = last - killed;
    eprintln!("forwarding stopped {stopped_after:?} after etcd was killed");
    assert!(
        stopped_after <= TTL + Duration::from_millis(250),
        "still forwarding {stopped_after:?} after etcd went away"
    );
    let s = rig.stats.snapshot();
    assert!(s.fail_closed);
    assert!(s.dropped(DropReason::FailClosed) > 0);

    let restarted = Instant::now();
    tokio::task::block_in_place(|| rig.etcd.restart()).unwrap();
    rig.recv(Duration::from_secs(15))
        .await
        .expect("forwarding resumes once etcd is back");
    eprintln!(
        "forwarding resumed {:?} after etcd restarted",
        restarted.elapsed()
    );
    assert!(!rig.stats.snapshot().fail_closed);
    sender.abort();
    drop(one);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_quorum_effects_wait_for_the_commit_index_and_leave_in_order() {
    let (commit_tx, commit_rx) = watch::channel(CommitState::default());
    let rig = Rig::start(Optimism::Quorum, Some(commit_rx)).await;
    let one = rig.election().campaign(id(1)).await;
    let e = one.epoch();
    rig.wait_leader(1, e).await;
    let commit = |committed: u64, epoch: Epoch| CommitState {
        committed: EventNum(committed),
        epoch,
        leader_durable: EventNum(committed),
        all_durable: EventNum(committed),
    };

    // The log is far ahead, but has not applied this leader's fence: the
    // log and etcd do not agree on who leads yet, so everything waits.
    commit_tx.send_replace(commit(100, Epoch(e.get() - 1)));
    let mut s1 = rig.sealer(1, e);
    for event in 1..=20u64 {
        rig.send_effect(&mut s1, event, &event.to_be_bytes()).await;
    }
    rig.wait_stats("20 effects held", |s| s.held == 20).await;
    assert_eq!(rig.recv(Duration::from_millis(300)).await, None);

    // Fenced, committed up to 5: events 1..=5 leave, in order.
    commit_tx.send_replace(commit(5, e));
    for event in 1..=5u64 {
        let got = rig.recv(Duration::from_secs(5)).await.expect("released");
        assert_eq!(got, event.to_be_bytes());
    }
    assert_eq!(rig.recv(Duration::from_millis(300)).await, None);
    assert_eq!(rig.stats.snapshot().held, 15);

    // A new effect of a committed event queues behind the held ones.
    commit_tx.send_replace(commit(20, e));
    for event in 6..=20u64 {
        let got = rig.recv(Duration::from_secs(5)).await.expect("released");
        assert_eq!(got, event.to_be_bytes());
    }
    rig.send_effect(&mut s1, 20, b"now").await;
    assert_eq!(rig.recv(Duration::from_secs(5)).await.unwrap(), b"now");

    // Held when the leader changes: dropped, never sent.
    rig.send_effect(&mut s1, 21, b"never").await;
    rig.wait_stats("event 21 held", |s| s.held == 1).await;
    let election = rig.election();
    let two = tokio::spawn(async move { election.campaign(id(2)).await });
    one.resign().await.unwrap();
    let two = two.await.unwrap();
    rig.wait_leader(2, two.epoch()).await;
    let s = rig
        .wait_stats("the held effect dropped", |s| s.held == 0)
        .await;
    assert_eq!(s.dropped(DropReason::StaleEpoch), 1);
    // Even once the log says 21 is committed in the old epoch.
    commit_tx.send_replace(commit(21, e));
    assert_eq!(rig.recv(Duration::from_millis(300)).await, None);
    assert_eq!(rig.stats.snapshot().forwarded, 21);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_without_a_commit_watch_is_refused() {
    let (etcd, pki) = tls_etcd();
    let client = etcd.client(&pki, Role::Edge).await.unwrap();
    let settings = Settings {
        root: ROOT.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        public: "127.0.0.2:34543".parse().unwrap(),
        keys: Keyring::new(),
        optimism: Optimism::Quorum,
        hold_limit: 10,
        hold_timeout: Duration::from_secs(1),
        stateless_rate: 1000,
        lease_ttl: TTL,
        name: "x".into(),
        socket: Default::default(),
    };
    let gk = Gatekeeper::bind(settings).unwrap();
    let err = gk
        .run(client, None, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        seguro_gatekeeper::Error::NoCommitWatch(Optimism::Quorum)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_an_ipv6_ship_address_lanes_of_the_other_family_count_as_send_failures() {
    let rig = Rig::start_at(Optimism::Leader, None, "[::1]:34543", "[::1]:0").await;
    let leader = rig.election().campaign(id(1)).await;
    let epoch = leader.epoch();
    rig.wait_leader(1, epoch).await;
    let mut sealer = rig.sealer(1, epoch);
    // Nothing can send to an IPv4 lane from an IPv6 address: refused in its
    // place, and the next effect still leaves.
    let v4 = sealer
        .seal(
            EventNum(1),
            "127.0.0.3:9".parse::<SocketAddr>().unwrap().into(),
            b"v4",
        )
        .unwrap();
    let v6 = sealer.seal(EventNum(2), rig.lane().into(), b"v6").unwrap();
    rig.send(&v4).await;
    rig.send(&v6).await;
    assert_eq!(rig.recv(Duration::from_secs(5)).await.unwrap(), b"v6");
    let s = rig
        .wait_stats("the IPv4 lane counted", |s| {
            s.dropped(DropReason::SendFailed) == 1
        })
        .await;
    assert_eq!(s.forwarded, 1);
    rig.stop().await;
    drop(leader);
}
