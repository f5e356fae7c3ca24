//! `seguro pier import` and `export` against a real event log node and
//! etcd, with piers written by an independent implementation of vere's
//! layout (pier/tests/vere_pier.py, on Python's `lmdb` from PyPI): a round
//! trip is byte-identical, bad piers import nothing and name the file and
//! the event, and an interrupted import resumes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use config::{ReplicaId, Role};
use eventlog::{Client, ClientOptions, EventNum};
use futures::StreamExt;
use serde_json::Value;
use testkit::{Lab, wait};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pier/tests/vere_pier.py");

/// One event log node and etcd, and a directory for piers.
struct World {
    lab: Lab,
    piers: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let mut lab = Lab::new(env!("CARGO_BIN_EXE_seguro"), "pier", 1).expect("cluster files");
        lab.start_etcd().expect("etcd starts");
        lab.write_config().unwrap();
        lab.start_eventlog().unwrap();
        World {
            lab,
            piers: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.piers.path().join(name)
    }

    /// A pier written by the Python implementation.
    fn write_pier(&self, name: &str, args: &[&str]) -> PathBuf {
        let dir = self.path(name);
        python(&[&["write", dir.to_str().unwrap()], args].concat());
        dir
    }

    fn seguro(&self, args: &[&str]) -> Output {
        let config = self.lab.config_path();
        let mut all = vec![
            args[0],
            args[1],
            "-c",
            config.to_str().unwrap(),
            "--id",
            "1",
        ];
        all.extend_from_slice(&args[2..]);
        self.lab.run_seguro(&all).expect("seguro runs")
    }

    fn import(&self, pier: &Path) -> Output {
        self.seguro(&["pier", "import", pier.to_str().unwrap()])
    }

    fn client(&self) -> Client {
        let config = testkit::load_config(&self.lab.config_path());
        let nodes = config.replicas.iter().map(|r| (r.id, r.eventlog)).collect();
        let role = Role::Replica(ReplicaId::new(1).unwrap());
        Client::with_options(
            nodes,
            self.lab.credentials(role),
            ClientOptions::from_config(&config),
        )
    }

    /// The log's last event, once its node leads.
    fn log_last(&self) -> u64 {
        let client = self.client();
        runtime().block_on(async {
            wait::until_async(Duration::from_secs(30), "the event log to lead", || async {
                client
                    .cluster_status()
                    .await
                    .into_iter()
                    .filter_map(|(_, s)| s.ok())
                    .find(|s| s.role == eventlog::Role::Leader)
                    .map(|s| s.last_event.get())
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("python3 runs (scripts/deps.sh installs its lmdb)");
    assert!(
        out.status.success(),
        "vere_pier.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every table and file of a pier's log, as the Python implementation reads it.
fn dump(pier: &Path) -> Value {
    serde_json::from_str(&python(&["dump", pier.to_str().unwrap()])).unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The import failed with exit 1 and said `needles` on stderr.
fn refused(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

#[test]
fn a_pier_round_trips_byte_for_byte_and_the_log_holds_veres_events() {
    let w = World::new();
    let pier = w.write_pier("zod", &["--events", "300", "--life", "3"]);
    let said = ok(&w.import(&pier));
    assert!(said.contains("events 1 to 300"), "{said}");
    assert_eq!(w.log_last(), 300);

    // What a replica replaying the log gets: the agent's plain frame around
    // vere's jammed event, and vere's mug (0 for the boot events).
    let source = dump(&pier);
    let client = w.client();
    let events: Vec<_> = runtime().block_on(async {
        client
            .read(EventNum(1), Some(EventNum(300)))
            .map(|e| e.unwrap())
            .collect()
            .await
    });
    assert_eq!(events.len(), 300);
    for e in &events {
        let framed = replica::frame::decode(&e.data).expect("an agent's frame");
        assert_eq!(
            (framed.packet, framed.dropped.len()),
            (None, 0),
            "a plain frame"
        );
        let jam = framed.data;
        assert_eq!(
            jam.len(),
            196,
            "event {}: 200-byte value less the mug",
            e.num
        );
        let mug = if e.num.get() <= 3 {
            0
        } else {
            (e.num.get() * 2_654_435_761) as u32
        };
        assert_eq!(e.mug, mug, "event {}", e.num);
    }

    let out = w.path("exported");
    ok(&w.seguro(&[
        "pier",
        "export",
        "--meta-from",
        pier.to_str().unwrap(),
        out.to_str().unwrap(),
    ]));
    assert_eq!(
        dump(&out),
        source,
        "EVENTS, META, epoc.txt and vere.txt byte for byte"
    );
    // The exported log imports again: nothing to append, every event checked.
    let said = ok(&w.import(&out));
    assert!(
        said.contains("300 already there and identical, 0 appended"),
        "{said}"
    );
}

#[test]
fn a_pier_of_several_epochs_imports_and_exports_as_one_epoch() {
    let w = World::new();
    let pier = w.write_pier("nec", &["--events", "100", "--epochs", "0,40,70", "--fake"]);
    ok(&w.import(&pier));
    assert_eq!(w.log_last(), 100);
    let out = w.path("exported");
    ok(&w.seguro(&[
        "pier",
        "export",
        "--who",
        "0x100000000",
        "--life",
        "3",
        "--fake",
        out.to_str().unwrap(),
    ]));
    let (source, exported) = (dump(&pier), dump(&out));
    assert_eq!(exported["events_sha256"], source["events_sha256"]);
    assert_eq!(exported["count"], 100);
    let epochs = exported["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 1, "one epoch, 0i0: {exported}");
    assert_eq!(epochs[0]["name"], "0i0");
    assert_eq!(epochs[0]["integerkey"], true);
    assert_eq!(epochs[0]["epoc.txt"], "32", "\"2\" as vere writes it");
    assert_eq!(
        exported["top_meta"], source["top_meta"],
        "META from the flags, as vere writes it"
    );
    assert_eq!(epochs[0]["meta"], source["epochs"][0]["meta"]);
}

#[test]
fn bad_piers_name_the_file_and_the_event_and_import_nothing() {
    let w = World::new();
    let gap = w.write_pier(
        "gap",
        &["--events", "100", "--epochs", "0,50", "--gap", "73"],
    );
    refused(
        &w.import(&gap),
        &["0i50/data.mdb", "event 74", "gap in EVENTS", "73"],
    );
    let short = w.write_pier("short", &["--events", "100", "--short", "20"]);
    refused(&w.import(&short), &["0i0/data.mdb", "event 20", "4 bytes"]);
    let old = w.write_pier("old", &["--events", "100", "--version", "2"]);
    refused(&w.import(&old), &[".urb/log/data.mdb", "META version is 2"]);
    let no_epoc = w.write_pier(
        "noepoc",
        &["--events", "100", "--epochs", "0,50", "--no-epoc", "50"],
    );
    refused(&w.import(&no_epoc), &["0i50/epoc.txt", "missing"]);

    let mut urbit = Command::new("sleep")
        .arg("60")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = urbit.id().to_string();
    let locked = w.write_pier("locked", &["--events", "100", "--lock-pid", &pid]);
    refused(
        &w.import(&locked),
        &[".vere.lock", &format!("process {pid}")],
    );
    urbit.kill().unwrap();
    urbit.wait().unwrap();

    assert_eq!(w.log_last(), 0, "no bad pier appended anything");
    // Its urbit gone, the same pier imports.
    ok(&w.import(&locked));
    assert_eq!(w.log_last(), 100);
}

#[test]
fn an_interrupted_import_resumes_and_another_ships_pier_is_refused() {
    let w = World::new();
    let pier = w.write_pier("bus", &["--events", "200000", "--epochs", "0,100000"]);
    let config = w.lab.config_path();
    let mut import = Command::new(env!("CARGO_BIN_EXE_seguro"))
        .args([
            "pier",
            "import",
            "-c",
            config.to_str().unwrap(),
            "--id",
            "1",
        ])
        .arg(&pier)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partway = wait::until(
        Duration::from_secs(60),
        "the import to append some events",
        || {
            let last = w.log_last();
            (last > 0).then_some(last)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    import.kill().unwrap();
    let status = import.wait().unwrap();
    let held = w.log_last();
    assert!(
        held < 200_000,
        "the import was killed at {partway} and finished anyway ({status:?}): nothing was interrupted"
    );

    // Batches the killed import had sent may still commit after `held`.
    let said = ok(&w.import(&pier));
    let counts: Vec<u64> = said
        .split(['(', ','])
        .filter_map(|part| part.split_whitespace().next()?.parse().ok())
        .collect();
    let [verified, appended] = counts[..] else {
        panic!("no counts in {said:?}")
    };
    assert!(
        verified >= held && verified > 0,
        "{said}: the log held {held}"
    );
    assert_eq!(verified + appended, 200_000, "{said}");
    assert_eq!(w.log_last(), 200_000);

    // Another ship's log is not appended over this one's.
    let other = w.write_pier("other", &["--events", "250000", "--seed", "7"]);
    refused(&w.import(&other), &["event 1:", "jammed event", "differs"]);
    assert_eq!(w.log_last(), 200_000);
}
