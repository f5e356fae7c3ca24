//! The event log as real `seguro eventlog` processes on loopback, over
//! mutual TLS, with a real etcd whose leader key says who holds each epoch
//! (writers campaign for their terms as agents do): kill -9 the leader
//! during appends, restart and wipe replicas, truncate behind the
//! watermarks, change the membership, fill the disk, damage the log, and
//! talk to it with another CA's certificate.
//!
//! Every acknowledged event must be present, in order, with the content the
//! writer gave it, on every node that claims to have it.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use config::ReplicaId;
use config::Role as Who;
use eventlog::{AppendError, Client, ClientError, ClientOptions, Epoch, EventNum, ReadError, Role};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use testkit::process::Supervisor;
use testkit::{Daemon, Lab, wait};

/// Event log nodes `1..=n` on loopback, none started, and etcd running.
fn cluster(n: u8) -> Lab {
    let mut c = Lab::new(env!("CARGO_BIN_EXE_seguro"), "test", n).expect("cluster files");
    c.start_etcd().expect("etcd starts");
    c.write_config().unwrap();
    c
}

/// Event log nodes `1..=n` on loopback, all started, and etcd running.
fn started(n: u8) -> Lab {
    let mut c = cluster(n);
    for id in 1..=u32::from(n) {
        start(&mut c, id);
    }
    c
}

fn rid(id: u32) -> ReplicaId {
    ReplicaId::new(id).unwrap()
}

/// Replica `id`'s event log node.
fn node(id: u32) -> Daemon {
    Daemon::Eventlog(id.try_into().expect("a small replica id"))
}

/// Replica `id`'s event log node's client address.
fn addr(c: &Lab, id: u32) -> String {
    let r = c.replica(id.try_into().expect("a small replica id"));
    r.eventlog
        .expect("the lab gives every node an address")
        .to_string()
}

fn start(c: &mut Lab, id: u32) {
    c.start(node(id)).unwrap();
}

fn stop(c: &mut Lab, id: u32) {
    c.stop(&node(id), Duration::from_secs(10));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client of the log presenting `role`'s certificate.
fn client_as(c: &Lab, role: Who, append_timeout: Duration) -> Client {
    let config = testkit::load_config(&c.config_path());
    let mut opts = ClientOptions::from_config(&config);
    opts.append_timeout = append_timeout;
    opts.deadline = Duration::from_secs(20);
    let nodes = config.replicas.iter().map(|r| (r.id, r.eventlog)).collect();
    Client::with_options(nodes, c.credentials(role), opts)
}

/// Replica `id`'s client, as its agent has.
fn client(c: &Lab, id: u32, append_timeout: Duration) -> Client {
    client_as(c, Who::Replica(rid(id)), append_timeout)
}

/// Replica `id`'s term: its leader key in etcd, and the epoch it holds.
async fn term(c: &Lab, id: u32) -> (leadership::Leadership, Epoch) {
    let leadership = c.term(id.try_into().unwrap()).await;
    let epoch = leadership.epoch();
    (leadership, epoch)
}

/// The event the writer appends as number `n`.
fn data(n: u64) -> Bytes {
    Bytes::from(format!("event {n} ").repeat(8))
}

fn mug(n: u64) -> u32 {
    (n.wrapping_mul(2_654_435_761) >> 7) as u32
}

/// Waits until `f` returns `Some`, up to `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait::until_async(limit, what, f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_healthy(client: &Client, voters: usize) {
    eventually(
        Duration::from_secs(30),
        "a leader and every voter up",
        || async {
            let nodes = client.cluster_status().await;
            let leader = nodes
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok())
                .find(|s| s.role == Role::Leader)?;
            let up = leader
                .members
                .iter()
                .filter(|m| m.voter)
                .filter(|m| {
                    nodes.iter().any(|(a, r)| {
                        a == &m.addr
                            && r.as_ref()
                                .is_ok_and(|s| s.role == Role::Leader || s.role == Role::Follower)
                    })
                })
                .count();
            (up == voters && leader.members.iter().filter(|m| m.voter).count() == voters)
                .then_some(())
        },
    )
    .await
}

async fn leader_id(client: &Client) -> u32 {
    eventually(Duration::from_secs(30), "a leader", || async {
        client
            .cluster_status()
            .await
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .find(|s| s.role == Role::Leader)
            .map(|s| s.id)
    })
    .await
}

/// Replica `id`'s last applied event, once it has caught up to `at_least`.
async fn caught_up(client: &Client, c: &Lab, id: u32, at_least: u64) -> u64 {
    let addr = addr(c, id);
    eventually(
        Duration::from_secs(60),
        &format!("replica {id} to catch up"),
        || async {
            let s = client
                .node_status(&addr, Duration::from_secs(2))
                .await
                .ok()?;
            (s.last_event.get() >= at_least).then_some(s.last_event.get())
        },
    )
    .await
}

/// Reads `from..=to` from replica `id` alone and checks every event is the
/// writer's.
async fn check_node(client: &Client, c: &Lab, id: u32, from: u64, to: u64) {
    let addr = addr(c, id);
    let mut stream = std::pin::pin!(client.read_from(&addr, EventNum(from), Some(EventNum(to))));
    let mut expect = from;
    while let Some(e) = stream.next().await {
        let e = e.unwrap_or_else(|err| panic!("reading replica {id} at {expect}: {err}"));
        assert_eq!(e.num.get(), expect, "replica {id}: events out of order");
        assert_eq!(
            e.data,
            data(expect),
            "replica {id}: event {expect} holds other data"
        );
        assert_eq!(
            e.mug,
            mug(expect),
            "replica {id}: event {expect} has another mug"
        );
        expect += 1;
    }
    assert_eq!(
        expect,
        to + 1,
        "replica {id} stopped at {expect}, before {to}"
    );
}

/// Appends events `from..` for `run_for`, up to `window` outstanding,
/// recovering from failures as a writer does; returns the highest event
/// acknowledged and how many appends failed.
async fn write(
    client: &Client,
    epoch: Epoch,
    from: u64,
    run_for: Duration,
    window: usize,
) -> (u64, usize) {
    let appender = client.appender(epoch, EventNum(from));
    let started = Instant::now();
    let mut pending = FuturesOrdered::new();
    let mut acked = from - 1;
    let mut failures = 0;
    let mut next = from;
    loop {
        let writing = started.elapsed() < run_for;
        if writing && pending.len() < window && appender.failure().is_none() {
            // Appended now, in order; awaited later.
            let n = next;
            let fut = appender_append(&appender, n);
            pending.push_back(async move { (n, fut.await) });
            next += 1;
            continue;
        }
        match pending.next().await {
            Some((n, Ok(last))) => {
                assert!(last.get() >= n, "event {n} acknowledged with last {last}");
                acked = acked.max(n);
            }
            Some((n, Err(e))) => {
                tracing_note(n, &e);
                failures += 1;
                if pending.is_empty() {
                    let last = appender.recover().await.expect("the writer recovers");
                    next = last.get() + 1;
                }
            }
            None if !writing => return (acked, failures),
            None => {
                if appender.failure().is_some() {
                    let last = appender.recover().await.expect("the writer recovers");
                    next = last.get() + 1;
                }
            }
        }
    }
}

fn tracing_note(n: u64, e: &AppendError) {
    eprintln!("append of event {n} failed: {e}");
}

fn appender_append(a: &eventlog::Appender, n: u64) -> eventlog::AppendFuture {
    a.append(EventNum(n), mug(n), data(n))
}

#[test]
fn killing_the_leader_during_appends_loses_no_acknowledged_event() {
    let mut c = started(3);
    let rt = runtime();
    rt.block_on(async {
        let client = client(&c, 1, Duration::from_secs(20));
        wait_healthy(&client, 3).await;
        // Replica 2 held an older term; replica 1 leads now.
        let (older, old_epoch) = term(&c, 2).await;
        drop(older);
        let (lead, epoch) = term(&c, 1).await;
        assert!(epoch > old_epoch);
        let first = client.fence(epoch).await.unwrap();
        assert_eq!(first, EventNum(0));

        // Write for 5 s; kill -9 the leader 1.5 s in.
        let writer = {
            let client = client.clone();
            tokio::spawn(async move { write(&client, epoch, 1, Duration::from_secs(5), 256).await })
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let victim = leader_id(&client).await;
        c.kill(&node(victim));
        let (acked, failures) = writer.await.unwrap();
        println!("acknowledged up to {acked}, {failures} failed appends; killed leader {victim}");
        assert!(acked > 100, "too few events were written ({acked})");

        // Every acknowledged event is on both survivors, in order.
        let survivors: Vec<u32> = (1..=3).filter(|i| *i != victim).collect();
        let mut lasts = Vec::new();
        for &id in &survivors {
            let last = caught_up(&client, &c, id, acked).await;
            check_node(&client, &c, id, 1, last).await;
            lasts.push(last);
        }
        // The killed node restarts and catches up from the log.
        start(&mut c, victim);
        let last = lasts.iter().copied().max().unwrap();
        let back = caught_up(&client, &c, victim, last).await;
        check_node(&client, &c, victim, 1, back).await;

        // A writer with an older epoch is fenced off.
        let deposed = self::client(&c, 2, Duration::from_secs(20));
        let stale = deposed.appender(old_epoch, EventNum(back + 1));
        let err = appender_append(&stale, back + 1).await.unwrap_err();
        assert_eq!(err, AppendError::StaleEpoch { highest: epoch });
        // ... and so is every later event of that writer.
        assert_eq!(
            appender_append(&stale, back + 2).await.unwrap_err(),
            AppendError::StaleEpoch { highest: epoch }
        );
        // A gap and a duplicate are refused with where the log ends.
        let writer = client.appender(epoch, EventNum(back + 5));
        assert_eq!(
            appender_append(&writer, back + 5).await.unwrap_err(),
            AppendError::Gap {
                expected: EventNum(back + 1)
            }
        );
        let writer = client.appender(epoch, EventNum(back));
        assert_eq!(
            writer
                .append(EventNum(back), 1, Bytes::from_static(b"other"))
                .await
                .unwrap_err(),
            AppendError::Duplicate {
                last: EventNum(back)
            }
        );
        // An oversize event is refused naming it and the limit.
        let writer = client.appender(epoch, EventNum(back + 1));
        let big = Bytes::from(vec![0u8; (1 << 20) + 1]);
        assert_eq!(
            writer.append(EventNum(back + 1), 0, big).await.unwrap_err(),
            AppendError::EventTooLarge {
                event: EventNum(back + 1),
                size: (1 << 20) + 1,
                limit: 1 << 20
            }
        );
        // A newer epoch takes over after its fence.
        drop(lead);
        let (_next, newer) = term(&c, 3).await;
        let client = self::client(&c, 3, Duration::from_secs(20));
        assert_eq!(client.fence(newer).await.unwrap(), EventNum(back));
        let writer = client.appender(newer, EventNum(back + 1));
        assert_eq!(
            appender_append(&writer, back + 1).await.unwrap(),
            EventNum(back + 1)
        );
        let commit = client.commit_watch();
        let mut commit = commit;
        let state = eventually(Duration::from_secs(10), "the commit watch", || {
            let s = *commit.borrow_and_update();
            async move { (s.committed.get() == back + 1).then_some(s) }
        })
        .await;
        assert_eq!(state.epoch, newer);
        assert!(state.leader_durable >= state.committed);
        assert!(state.all_durable <= state.leader_durable);
    });
    // The logs never diverged: every node holds the same events.
    for id in 1..=3 {
        assert!(
            !c.log(&node(id)).contains("panicked"),
            "replica {id} panicked:\n{}",
            c.log(&node(id))
        );
    }
}

/// Lines of node `id`'s log saying it could not reach `addr`.
fn unreachable_lines(c: &Lab, id: u32, addr: &str) -> usize {
    c.log(&node(id))
        .lines()
        .filter(|l| l.contains("Unreachable") && l.contains(addr))
        .count()
}

/// The leader retries a node that is down after a backoff (openraft's,
/// 200 ms), not in a loop: a busy loop burned a core on the leader and
/// wrote thousands of warnings a second while a replica was down, and the
/// cluster answered late after every failover.
#[test]
fn a_node_that_is_down_is_retried_after_a_backoff_not_in_a_loop() {
    let mut c = started(3);
    let rt = runtime();
    rt.block_on(async {
        let client = client(&c, 1, Duration::from_secs(20));
        wait_healthy(&client, 3).await;
        let (_lead, epoch) = term(&c, 1).await;
        client.fence(epoch).await.unwrap();
        let leader = leader_id(&client).await;
        let down = (1..=3).find(|&id| id != leader).unwrap();
        let down_addr = addr(&c, down);
        c.kill(&node(down));
        let before = unreachable_lines(&c, leader, &down_addr);
        // Appends for 3 s, each one for the node that is down too.
        let (acked, _) = write(&client, epoch, 1, Duration::from_secs(3), 64).await;
        assert!(acked > 100, "too few events were written ({acked})");
        let tries = unreachable_lines(&c, leader, &down_addr) - before;
        println!("{tries} failed tries to reach node {down} in 3 s of appends");
        // About 15 at one per backoff; the loop made tens of thousands.
        assert!(
            tries <= 150,
            "node {leader} tried to reach node {down} {tries} times in 3 s"
        );
        // Back, the node is replicated to again and catches up.
        start(&mut c, down);
        let last = caught_up(&client, &c, down, acked).await;
        check_node(&client, &c, down, 1, last).await;
    });
}

#[test]
fn a_wiped_replica_recovers_from_a_snapshot_after_truncation() {
    let mut c = started(3);
    let rt = runtime();
    rt.block_on(async {
        let client = client(&c, 1, Duration::from_secs(20));
        wait_healthy(&client, 3).await;
        let (_lead, epoch) = term(&c, 1).await;
        let (acked, _) = write(&client, epoch, 1, Duration::from_secs(1), 128).await;
        assert!(acked >= 300, "too few events ({acked})");

        // Every replica checkpoints event 200 (each says so for itself): the
        // log is purged up to it.
        for id in 1..=3 {
            let own = self::client(&c, id, Duration::from_secs(20));
            own.set_watermark(rid(id), EventNum(200)).await.unwrap();
        }
        for id in 1..=3 {
            let addr = addr(&c, id);
            eventually(
                Duration::from_secs(30),
                "the Raft log to be purged",
                || async {
                    let s = client
                        .node_status(&addr, Duration::from_secs(2))
                        .await
                        .ok()?;
                    (s.purge_point == EventNum(200)
                        && s.purged_index.is_some()
                        && s.snapshot_index.is_some())
                    .then_some(())
                },
            )
            .await;
        }
        // Reading below the purge point says so.
        let mut r = std::pin::pin!(client.read(EventNum(150), Some(EventNum(250))));
        assert_eq!(
            r.next().await.unwrap().unwrap_err(),
            ReadError::Purged {
                first_available: EventNum(201)
            }
        );

        // Replica 3 loses its disk and comes back empty: it installs a
        // snapshot, then follows the log.
        let victim: u32 = 3;
        c.wipe(victim as u8).unwrap();
        let (more, _) = write(&client, epoch, acked + 1, Duration::from_millis(500), 64).await;
        start(&mut c, victim);
        let last = caught_up(&client, &c, victim, more).await;
        let addr = addr(&c, victim);
        let s = client
            .node_status(&addr, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(s.purge_point, EventNum(200));
        assert!(
            s.snapshot_index.is_some(),
            "replica {victim} did not install a snapshot"
        );
        check_node(&client, &c, victim, 201, last).await;

        // A replica that was only down catches up from the log.
        c.kill(&node(2));
        let (more2, _) = write(&client, epoch, more + 1, Duration::from_millis(500), 64).await;
        start(&mut c, 2);
        let last2 = caught_up(&client, &c, 2, more2).await;
        check_node(&client, &c, 2, 201, last2).await;
    });
}

#[test]
fn membership_changes_from_3_to_4_to_3_and_status_reports_it() {
    let mut c = started(3);
    let rt = runtime();
    let (lead, epoch) = rt.block_on(async {
        let client = client(&c, 1, Duration::from_secs(20));
        wait_healthy(&client, 3).await;
        term(&c, 1).await
    });

    // `seguro eventlog status` on the cluster's config (as the admin).
    let config = c.config_path();
    let config = config.to_str().unwrap();
    let out = c.run_seguro(&["eventlog", "status", "-c", config]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("healthy: 3 of 3 voters up"), "{text}");
    assert_eq!(text.matches("follower").count(), 2, "{text}");
    let out = c
        .run_seguro(&["eventlog", "status", "-c", config, "--json"])
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["voters"].as_array().unwrap().len(), 3);

    // Replica 4 joins with a config that lists it.
    c.add_replica(4).unwrap();
    let four = c.write_config_as("four", c.file()).unwrap();
    let four = four.to_str().unwrap().to_string();
    c.start_with(node(4), Path::new(&four)).unwrap();
    let out = c
        .run_seguro(&["eventlog", "add-replica", "-c", &four, "--id", "4"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.block_on(async {
        let client = client(&c, 1, Duration::from_secs(20));
        wait_healthy(&client, 4).await;
        let (acked, _) = write(&client, epoch, 1, Duration::from_millis(500), 64).await;
        let last = caught_up(&client, &c, 4, acked).await;
        check_node(&client, &c, 4, 1, last).await;
    });
    let out = c.run_seguro(&["eventlog", "status", "-c", &four]).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("healthy: 4 of 4 voters up"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // ... and leaves again.
    let out = c
        .run_seguro(&["eventlog", "remove-replica", "-c", &four, "--id", "4"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop(&mut c, 4);
    // Its certificate still names a replica of the cluster, but its Raft
    // traffic is no longer taken: a removed node cannot call elections.
    let leader_node = (1..=3)
        .find(|&i| {
            c.metric(&node(i), "seguro_eventlog_is_leader")
                .is_some_and(|v| v == 1.0)
        })
        .expect("a leader among 1 to 3");
    let not_member = "seguro_eventlog_auth_refused_total{reason=\"not_a_member\"}";
    let before = c.metric(&node(leader_node), not_member).unwrap_or(0.0);
    let removed = c.credentials(Who::Replica(rid(4)));
    let vote = rt.block_on(async {
        let channel = eventlog_client::Channels::new(removed)
            .get(&addr(&c, leader_node), rid(leader_node))
            .unwrap();
        eventlog_client::proto::raft_client::RaftClient::new(channel)
            .vote(eventlog_client::proto::RaftMessage {
                data: Bytes::from_static(&[0; 32]),
            })
            .await
    });
    assert_eq!(
        vote.map(drop).map_err(|s| s.code()),
        Err(tonic::Code::PermissionDenied),
        "a removed replica's vote"
    );
    assert_eq!(c.metric(&node(leader_node), not_member), Some(before + 1.0));
    rt.block_on(async {
        let client = client(&c, 1, Duration::from_secs(20));
        wait_healthy(&client, 3).await;
        let last = client.fence(epoch).await.unwrap();
        let writer = client.appender(epoch, last.next());
        appender_append(&writer, last.get() + 1).await.unwrap();
    });
    drop(lead);
    let out = c.run_seguro(&["eventlog", "status", "-c", config]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("healthy: 3 of 3 voters up"));
}

#[test]
fn a_client_of_another_ca_is_refused() {
    let c = started(1);
    let rt = runtime();
    rt.block_on(async {
        let good = client(&c, 1, Duration::from_secs(5));
        wait_healthy(&good, 1).await;
        // An attacker's own CA, and a certificate from it naming replica 1.
        // The cluster's CA certificate is no secret: it trusts the node.
        let other = testkit::Pki::new(c.dir().join("other-ca"), "test").unwrap();
        let mut files = other.issue(Who::Replica(rid(1))).unwrap();
        let bundle = c.dir().join("other-ca/both.crt");
        let mut both = std::fs::read(c.pki().ca_path()).unwrap();
        both.extend(std::fs::read(&files.ca).unwrap());
        std::fs::write(&bundle, both).unwrap();
        files.ca = bundle;
        let forged = trust::Credentials::load(other.identity(Who::Replica(rid(1))), files).unwrap();
        let config = testkit::load_config(&c.config_path());
        let bad = Client::with_options(
            vec![(rid(1), c.replica(1).eventlog.unwrap())],
            forged,
            ClientOptions::from_config(&config),
        );
        let err = bad
            .node_status(&addr(&c, 1), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(&err, ClientError::Unavailable(_)), "{err}");
        let (_lead, epoch) = term(&c, 1).await;
        assert!(bad.fence(epoch).await.is_err());
        // Nothing was written, and the node counted the refusals.
        assert_eq!(good.fence(epoch).await.unwrap(), EventNum(0));
    });
    let refused = c
        .metric(
            &node(1),
            "seguro_eventlog_auth_refused_total{reason=\"unknown_ca\"}",
        )
        .unwrap();
    assert!(refused >= 1.0, "{refused} refusals counted");
}

#[test]
fn a_torn_tail_is_cut_and_a_damaged_record_stops_the_node() {
    let mut c = started(1);
    let rt = runtime();
    let (_lead, epoch) = rt.block_on(term(&c, 1));
    let acked = rt.block_on(async {
        let client = client(&c, 1, Duration::from_secs(10));
        wait_healthy(&client, 1).await;
        write(&client, epoch, 1, Duration::from_millis(500), 32)
            .await
            .0
    });
    stop(&mut c, 1);
    let log_dir = c.node_dir(1).join("log");
    let chunk = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .unwrap();

    // A torn tail: the last record cut short. The node starts, and (being
    // alone) may lose only that unacknowledged-by-anyone-else record.
    let len = std::fs::metadata(&chunk).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&chunk)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    start(&mut c, 1);
    rt.block_on(async {
        let client = client(&c, 1, Duration::from_secs(10));
        wait_healthy(&client, 1).await;
        let last = client.fence(epoch).await.unwrap();
        assert!(
            last.get() + 1 >= acked,
            "lost more than the torn record: {last} < {acked}"
        );
        check_node(&client, &c, 1, 1, last.get()).await;
    });
    stop(&mut c, 1);

    // A damaged record in the middle: the node refuses to start and says
    // where.
    let mut bytes = std::fs::read(&chunk).unwrap();
    let needle = data(acked / 2);
    let at = bytes
        .windows(needle.len())
        .position(|w| w == &needle[..])
        .expect("the event is in the chunk");
    bytes[at + 3] ^= 0x55;
    std::fs::write(&chunk, &bytes).unwrap();
    start(&mut c, 1);
    let status = c
        .wait_exit(&node(1), Duration::from_secs(20))
        .expect("the node must stop");
    assert!(!status.success());
    let log = c.log(&node(1));
    assert!(log.contains(&chunk.display().to_string()), "{log}");
    assert!(
        log.contains("corrupt record") && log.contains("at byte"),
        "{log}"
    );
}

/// A tmpfs of `size` mounted at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> std::io::Result<Tmpfs> {
        std::fs::create_dir_all(dir)?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&out.stderr).to_string(),
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_fails_appends_without_acking_and_the_cluster_recovers() {
    testkit::require_root("mounts a tmpfs");
    let mut c = cluster(3);
    let mnt = c.dir().join("disk");
    let _tmpfs = Tmpfs::mount(&mnt, "48m").expect("mount a tmpfs (the test runs as root)");
    c.file_mut().eventlog.data_dir = Some(mnt.clone());
    c.write_config().unwrap();
    for id in 1..=3 {
        start(&mut c, id);
    }
    let rt = runtime();
    rt.block_on(async {
        let client = client(&c, 1, Duration::from_secs(4));
        wait_healthy(&client, 3).await;
        let (first_term, epoch) = term(&c, 1).await;
        let (acked, _) = write(&client, epoch, 1, Duration::from_millis(500), 64).await;
        assert!(acked > 0);

        // Fill the disk: what is left is not enough for the next batches.
        let filler = mnt.join("filler");
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=1M"])
            .arg(format!("of={}", filler.display()))
            .output();
        let writer = client.appender(epoch, EventNum(acked + 1));
        let mut failed = 0;
        for n in acked + 1..acked + 200 {
            let big = Bytes::from(vec![n as u8; 64 << 10]);
            match writer.append(EventNum(n), 0, big).await {
                Ok(_) => {}
                Err(e) => {
                    assert!(
                        !e.is_rejection() || matches!(e, AppendError::Timeout(_)),
                        "{e}"
                    );
                    failed += 1;
                    break;
                }
            }
        }
        assert!(failed > 0, "appends kept succeeding on a full disk");

        // Free the disk: the nodes restart Raft from disk and go on, and the
        // writer's next term begins.
        std::fs::remove_file(&filler).unwrap();
        wait_healthy(&client, 3).await;
        drop(first_term);
        let (_second_term, next) = term(&c, 1).await;
        let last = eventually(
            Duration::from_secs(60),
            "the log to accept writes again",
            || async { client.fence(next).await.ok() },
        )
        .await;
        assert!(
            last.get() >= acked,
            "acknowledged events were lost: {last} < {acked}"
        );
        let writer = client.appender(next, last.next());
        assert_eq!(
            writer
                .append(last.next(), 7, data(last.get() + 1))
                .await
                .unwrap(),
            last.next()
        );
        for id in 1..=3 {
            caught_up(&client, &c, id, acked).await;
            check_node(&client, &c, id, 1, acked).await;
        }
    });
    let logs: String = (1..=3).map(|id| c.log(&node(id))).collect();
    assert!(
        logs.contains("restarting it from disk"),
        "no node saw its storage fail:\n{logs}"
    );
    // Nothing on disk is damaged: every node restarts from it.
    for id in 1..=3 {
        c.kill(&node(id));
    }
    for id in 1..=3 {
        start(&mut c, id);
    }
    rt.block_on(async {
        let client = client(&c, 1, Duration::from_secs(10));
        wait_healthy(&client, 3).await;
    });
    for id in 1..=3 {
        stop(&mut c, id);
    }
}

#[test]
fn the_example_loopback_config_runs_a_healthy_cluster() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/local.toml");
    let data = tempfile::tempdir().unwrap();
    let mut nodes = Supervisor::new(data.path().join("logs")).unwrap();
    for id in 1..=3u8 {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_seguro"));
        cmd.arg("eventlog")
            .arg("-c")
            .arg(&example)
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(data.path());
        nodes.start(Daemon::Eventlog(id), cmd).unwrap();
    }
    let text = wait::until(Duration::from_secs(30), "a healthy cluster", || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_seguro"))
            .args(["eventlog", "status", "-c"])
            .arg(&example)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && text.contains("healthy: 3 of 3 voters up") {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text.contains("leader") && text.contains("127.0.0.1:4711"),
        "{text}"
    );
    for id in 1..=3 {
        let status = nodes.stop(&Daemon::Eventlog(id), Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "a node did not stop cleanly: {status:?}"
        );
    }
}

/// Node `id`'s metrics.
fn scrape(c: &Lab, id: u32) -> telemetry::Exposition {
    c.scrape(&node(id))
        .unwrap_or_else(|e| panic!("scraping node {id}: {e}"))
}

fn metric(m: &telemetry::Exposition, name: &str) -> f64 {
    m.value(name)
        .unwrap_or_else(|| panic!("no {name} in\n{m:?}"))
}

#[test]
fn the_appender_merges_concurrent_appends_into_batches() {
    let c = started(1);
    let rt = runtime();
    rt.block_on(async {
        let config = testkit::load_config(&c.config_path());
        let mut opts = ClientOptions::from_config(&config);
        opts.batch.max_events = 100;
        opts.batch.max_linger = Duration::from_millis(20);
        let nodes = vec![(rid(1), c.replica(1).eventlog.unwrap())];
        let client = Client::with_options(nodes, c.credentials(Who::Replica(rid(1))), opts);
        wait_healthy(&client, 1).await;
        let (_lead, epoch) = term(&c, 1).await;
        let before = metric(&scrape(&c, 1), "seguro_eventlog_append_batches_total");
        let appender = client.appender(epoch, EventNum(1));
        let futures: Vec<_> = (1..=1000).map(|n| appender_append(&appender, n)).collect();
        for (i, f) in futures.into_iter().enumerate() {
            let last = f.await.unwrap();
            assert!(
                last.get() > i as u64,
                "event {} acknowledged with last {last}",
                i + 1
            );
        }
        let text = scrape(&c, 1);
        let batches = metric(&text, "seguro_eventlog_append_batches_total") - before;
        assert_eq!(metric(&text, "seguro_eventlog_append_events_total"), 1000.0);
        assert!(
            (10.0..=20.0).contains(&batches),
            "1000 events took {batches} batches of at most 100"
        );
        // A lone event waits for the linger, then goes alone.
        let t0 = Instant::now();
        assert_eq!(
            appender_append(&appender, 1001).await.unwrap(),
            EventNum(1001)
        );
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(20),
            "waited only {waited:?}"
        );
    });
}

/// Appends events with `epoch` from `from` until the first failure or
/// `run_for`; returns the acknowledged events and the failure.
async fn write_until_refused(
    client: &Client,
    epoch: Epoch,
    from: u64,
    run_for: Duration,
) -> (Vec<u64>, Option<AppendError>) {
    let appender = client.appender(epoch, EventNum(from));
    let started = Instant::now();
    let mut pending = FuturesOrdered::new();
    let mut acked = Vec::new();
    let mut failure = None;
    let mut next = from;
    loop {
        if failure.is_none() && started.elapsed() < run_for && pending.len() < 64 {
            let n = next;
            let fut = appender.append(
                EventNum(n),
                epoch.get() as u32,
                Bytes::from(format!("{epoch}:{n}")),
            );
            pending.push_back(async move { (n, fut.await) });
            next += 1;
            continue;
        }
        match pending.next().await {
            Some((n, Ok(_))) => acked.push(n),
            Some((_, Err(e))) => {
                failure.get_or_insert(e);
            }
            None => return (acked, failure),
        }
    }
}

#[test]
fn two_writers_that_both_believe_they_lead_cannot_interleave_or_fork_the_log() {
    let c = started(3);
    let rt = runtime();
    rt.block_on(async {
        let old_client = client(&c, 1, Duration::from_secs(20));
        wait_healthy(&old_client, 3).await;
        // The old leader (replica 1) keeps writing after its term ended and
        // the new one (replica 2's) has won and fenced the log.
        let (old_term, old_epoch) = term(&c, 1).await;
        let old = {
            let client = old_client.clone();
            tokio::spawn(async move {
                write_until_refused(&client, old_epoch, 1, Duration::from_secs(3)).await
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(old_term);
        let (_new_term, new_epoch) = term(&c, 2).await;
        let client = client(&c, 2, Duration::from_secs(20));
        let fenced_at = client.fence(new_epoch).await.unwrap();
        let (new_acked, new_failure) = write_until_refused(
            &client,
            new_epoch,
            fenced_at.get() + 1,
            Duration::from_secs(1),
        )
        .await;
        let (old_acked, old_failure) = old.await.unwrap();
        assert!(
            new_failure.is_none(),
            "the new leader failed: {new_failure:?}"
        );
        assert_eq!(
            old_failure,
            Some(AppendError::StaleEpoch { highest: new_epoch })
        );
        assert!(!new_acked.is_empty() && !old_acked.is_empty());
        // The old leader's acknowledged events all come before the fence.
        assert!(
            old_acked.iter().all(|n| *n <= fenced_at.get()),
            "an old-epoch event after the fence"
        );

        // One history: epochs never go back, no gaps, and each event is its
        // writer's; the same on every node.
        let mut logs = Vec::new();
        for id in 1..=3 {
            let last = caught_up(&client, &c, id, *new_acked.last().unwrap()).await;
            let addr = addr(&c, id);
            let events: Vec<_> = client
                .read_from(&addr, EventNum(1), Some(EventNum(last)))
                .map(|e| e.unwrap())
                .collect()
                .await;
            assert_eq!(events.len() as u64, last, "replica {id} has a gap");
            for pair in events.windows(2) {
                assert!(
                    pair[0].epoch <= pair[1].epoch,
                    "replica {id}: epochs interleave at {}",
                    pair[1].num
                );
            }
            for e in &events {
                assert_eq!(
                    e.data,
                    Bytes::from(format!("{}:{}", e.epoch, e.num)),
                    "replica {id}"
                );
            }
            logs.push(events);
        }
        assert!(
            logs.windows(2).all(|w| w[0] == w[1]),
            "the replicas' logs differ"
        );
        for n in old_acked {
            assert_eq!(logs[0][n as usize - 1].epoch, old_epoch);
        }
        for n in new_acked {
            assert_eq!(logs[0][n as usize - 1].epoch, new_epoch);
        }
    });
}

/// A CA rotation as docs/DEPLOY.md walks through it, on a running node:
/// SIGHUP makes it reload its CA bundle and its certificate; with both CAs
/// in the bundle, clients of either are accepted; a bundle that does not
/// load leaves the node on what it had.
#[test]
fn a_node_reloads_its_ca_bundle_and_certificate_on_sighup() {
    let mut c = started(1);
    let rt = runtime();
    let old = client(&c, 1, Duration::from_secs(5));
    rt.block_on(wait_healthy(&old, 1));
    let me = Who::Replica(rid(1));
    let served = c.pki().files(me);

    // The new CA, and replica 1's certificate from it, trusting both.
    let new = testkit::Pki::new(c.dir().join("new-ca"), "test").unwrap();
    let new_pair = new.issue(me).unwrap();
    let both = c.dir().join("both.crt");
    let mut bundle = std::fs::read(&served.ca).unwrap();
    bundle.extend(std::fs::read(new.ca_path()).unwrap());
    std::fs::write(&both, &bundle).unwrap();
    let config = testkit::load_config(&c.config_path());
    let client_of = |files: trust::Files| {
        let credentials = trust::Credentials::load(new.identity(me), files).unwrap();
        Client::with_options(
            vec![(rid(1), c.replica(1).eventlog.unwrap())],
            credentials,
            ClientOptions::from_config(&config),
        )
    };
    let status =
        |client: &Client| rt.block_on(client.node_status(&addr(&c, 1), Duration::from_secs(2)));
    let newcomer = client_of(trust::Files {
        ca: both.clone(),
        ..new_pair.clone()
    });
    assert!(
        status(&newcomer).is_err(),
        "the node does not trust the new CA yet"
    );

    // Step 1: every host's bundle holds both CAs.
    std::fs::write(&served.ca, &bundle).unwrap();
    c.signal(&node(1), libc::SIGHUP);
    let newcomer = client_of(trust::Files {
        ca: both.clone(),
        ..new_pair.clone()
    });
    rt.block_on(eventually(
        Duration::from_secs(10),
        "the new CA trusted",
        || async {
            newcomer
                .node_status(&addr(&c, 1), Duration::from_secs(2))
                .await
                .ok()
        },
    ));
    assert!(status(&old).is_ok(), "the old CA's clients still are");

    // Step 2: the node's own certificate from the new CA: a client that
    // trusts only the new CA now accepts the node.
    let new_only = client_of(new_pair.clone());
    assert!(
        status(&new_only).is_err(),
        "the node still shows the old CA's certificate"
    );
    std::fs::copy(&new_pair.cert, &served.cert).unwrap();
    std::fs::copy(&new_pair.key, &served.key).unwrap();
    c.signal(&node(1), libc::SIGHUP);
    let new_only = client_of(new_pair.clone());
    rt.block_on(eventually(
        Duration::from_secs(10),
        "the new certificate served",
        || async {
            new_only
                .node_status(&addr(&c, 1), Duration::from_secs(2))
                .await
                .ok()
        },
    ));

    // A bundle that does not load: the node says so and keeps serving.
    std::fs::write(&served.ca, "not a certificate\n").unwrap();
    c.signal(&node(1), libc::SIGHUP);
    rt.block_on(eventually(
        Duration::from_secs(10),
        "the failed reload logged",
        || async {
            c.log(&node(1))
                .contains("cannot reload the certificate")
                .then_some(())
        },
    ));
    assert!(
        status(&new_only).is_ok(),
        "a failed reload keeps the credentials in use"
    );
    assert!(c.is_running(&node(1)));
}
