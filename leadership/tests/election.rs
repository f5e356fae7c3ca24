//! The election library against a real etcd: campaign, epochs, observe,
//! resign, losing a term.

use std::time::Duration;

use config::{ReplicaId, Role};
use seguro_leadership::election::{self, Election, LeaderView, LossReason, Term};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

const TTL: Duration = Duration::from_secs(2);
const ROOT: &str = "/seguro/test";

fn id(n: u32) -> ReplicaId {
    ReplicaId::new(n).unwrap()
}

/// A real etcd as Seguro runs it (TLS, client certificates, RBAC), and a
/// client of it as replica 1 (every replica has the same rights in etcd).
async fn etcd() -> (testkit::Etcd, election::Client, testkit::Pki) {
    let (etcd, pki) = tokio::task::block_in_place(|| {
        let pki = testkit::Pki::temporary("test").unwrap();
        let etcd = testkit::Etcd::start_tls(&pki, ROOT, &[id(1), id(2), id(3)]).unwrap();
        (etcd, pki)
    });
    let client = etcd.client(&pki, Role::Replica(id(1))).await.unwrap();
    (etcd, client, pki)
}

async fn wait_view(
    rx: &mut watch::Receiver<LeaderView>,
    what: &str,
    f: impl Fn(&LeaderView) -> bool,
) -> LeaderView {
    let seen = match timeout(Duration::from_secs(15), rx.wait_for(|v| f(v))).await {
        Ok(Ok(v)) => Some(*v),
        _ => None,
    };
    seen.unwrap_or_else(|| panic!("observer never saw {what}; last view {:?}", *rx.borrow()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_resign_and_observe() {
    let (_etcd, client, _pki) = etcd().await;
    let election = Election::new(client.clone(), ROOT, TTL);
    let mut view = election.observe();
    wait_view(&mut view, "a first read", |v| v.confirmed_at.is_some()).await;
    assert_eq!(view.borrow().term, None);

    let one = election.campaign(id(1)).await;
    let e1 = one.epoch();
    let v = wait_view(&mut view, "replica 1 lead", |v| v.term.is_some()).await;
    assert_eq!(
        v.term,
        Some(Term {
            leader: id(1),
            epoch: e1
        })
    );
    let mut kv = client.clone();
    let got = kv.get(format!("{ROOT}/leader"), None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"1");
    assert_eq!(got.kvs()[0].lease(), one.lease_id());

    // Replica 2 campaigns while 1 leads: it waits.
    let two = tokio::spawn({
        let election = election.clone();
        async move { election.campaign(id(2)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!two.is_finished(), "replica 2 won while replica 1 led");

    // Resigning hands over at once, not after a TTL.
    let resigned = Instant::now();
    one.resign().await.unwrap();
    let two = timeout(Duration::from_secs(1), two)
        .await
        .expect("replica 2 wins within a second of the resignation")
        .unwrap();
    let e2 = two.epoch();
    assert!(e2 > e1, "epochs grow: {e1} then {e2}");
    let v = wait_view(&mut view, "replica 2 lead", |v| {
        v.term.is_some_and(|t| t.leader == id(2))
    })
    .await;
    assert_eq!(v.term.unwrap().epoch, e2);
    assert!(
        resigned.elapsed() < TTL,
        "handover took {:?}",
        resigned.elapsed()
    );

    // The view stays confirmed while etcd answers.
    tokio::time::sleep(TTL).await;
    assert!(view.borrow().is_confirmed(Instant::now(), TTL));
    assert_eq!(two.loss(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_ends_the_term_and_dropping_releases_it() {
    let (_etcd, client, _pki) = etcd().await;
    let election = Election::new(client.clone(), ROOT, TTL);

    let one = election.campaign(id(1)).await;
    let mut kv = client.clone();
    kv.delete(format!("{ROOT}/leader"), None).await.unwrap();
    let reason = timeout(Duration::from_secs(5), one.lost())
        .await
        .expect("the leader notices its key is gone");
    assert_eq!(reason, LossReason::KeyLost);
    drop(one);

    // Dropping a leadership revokes its lease: the next campaign wins well
    // before the old lease's TTL.
    let two = election.campaign(id(2)).await;
    let started = Instant::now();
    drop(two);
    let three = timeout(Duration::from_secs(1), election.campaign(id(3)))
        .await
        .expect("dropping a leadership frees the key at once");
    assert!(started.elapsed() < TTL);
    assert_eq!(three.loss(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_etcd_ends_the_term_within_a_ttl() {
    let (mut etcd, client, _pki) = etcd().await;
    let election = Election::new(client, ROOT, TTL);
    let one = election.campaign(id(1)).await;
    let mut view = election.observe();
    wait_view(&mut view, "the leader", |v| v.term.is_some()).await;

    let killed = Instant::now();
    etcd.kill();
    let reason = timeout(TTL * 3, one.lost())
        .await
        .expect("the leader steps down without etcd");
    let after = killed.elapsed();
    assert_eq!(reason, LossReason::KeepAliveTimeout);
    assert!(
        after <= TTL + Duration::from_millis(500),
        "stepped down after {after:?}"
    );
    // The observer's last confirmation is no older than the kill: it
    // expires within a TTL of it.
    let expires = view.borrow().confirmation_expires(TTL).unwrap();
    assert!(expires <= killed + TTL, "confirmed past the kill");
    tokio::time::sleep_until(expires + Duration::from_millis(10)).await;
    assert!(!view.borrow().is_confirmed(Instant::now(), TTL));

    // etcd returns: the observer confirms again, and a campaign succeeds
    // once the old lease is gone (revoked by the stepped-down leader).
    etcd.restart().unwrap();
    wait_view(&mut view, "etcd again", |v| {
        v.is_confirmed(Instant::now(), TTL)
    })
    .await;
    let again = timeout(Duration::from_secs(15), election.campaign(id(2)))
        .await
        .expect("a new term after etcd returns");
    assert!(again.epoch() > one.epoch());
}
