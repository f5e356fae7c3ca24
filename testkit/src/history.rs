//! The history checker: what the peer sent and got back, what the commit
//! watch acknowledged and every replica's final log, held against Seguro's
//! promises (docs/SPEC.md §6). Pure: the chaos harness gathers a
//! [`History`], [`check`] judges it.
//!
//! The rules, each a group of [`Violation`]s ([`Rule`]):
//!
//! 1. **No acknowledged event is lost.** Let *A* be the highest event number
//!    the commit watch acknowledged. Every event up to *A* must be in at
//!    least one replica's final log ([`Violation::Lost`]): a replica whose
//!    log is shorter has lost nothing as long as another one has the
//!    events, and rule 2 compares the logs where they overlap. Events below
//!    every log's first one were compacted and cannot be checked. An
//!    acknowledged event must also be the one that was acknowledged: an
//!    acknowledgement `(num, epoch)` says that the events up to `num` were
//!    written at epochs up to `epoch`, so a final event at or below `num`
//!    with a higher epoch replaced an acknowledged one
//!    ([`Violation::Overwritten`]). With [`Options::converged`] (the
//!    harness waited for the replicas to catch up), a log that ends before
//!    the longest one is [`Violation::Behind`].
//! 2. **The logs are identical prefixes without gaps.** Numbers are
//!    contiguous in each log; at every number two logs both hold, the
//!    epoch, the mug and the data are the same. Logs may start at different
//!    numbers (compaction): they are compared where they overlap.
//! 3. **Epochs never decrease** along a log.
//! 4. **Each answer belongs to a committed event, once.** The event the
//!    answer names is in the final logs, carries that request and has that
//!    mug; each request is answered at most once, and only requests that
//!    were sent are answered. A request is sequenced at most once (the
//!    retry rule of §6.2 stores each event exactly once).
//! 5. **No answer from an epoch after a newer fence.** An answer's epoch is
//!    the final log's epoch of its event. A fence of a higher epoch is known
//!    to be applied from the earliest acknowledgement carrying a higher
//!    epoch, or from an explicit [`Fenced`] time if that is earlier; an
//!    answer received later than that plus [`Options::in_flight_grace`]
//!    (packets already on the wire) broke the fence (§6.4).
//! 6. **Event timestamps strictly increase** along a log, across failovers
//!    and restarts. An event the checker cannot read a timestamp from is
//!    [`Violation::Unreadable`] (the reference ship writes only packet
//!    events), unless [`Options::opaque_events`] says the runtime writes
//!    events of its own (vere): those are skipped, and the next readable
//!    timestamp is compared with the last readable one.
//!
//! Times in violations are offsets from the earliest instant in the history
//! (usually the first request sent).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use config::ReplicaId;
use eventlog_client::{Epoch, Event, EventNum};

use crate::probe::{ProbeReport, request_seq};

/// A request the peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub seq: u64,
    pub at: Instant,
}

/// An answer the peer received: the event number and mug the ship
/// reported for request `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub seq: u64,
    pub num: EventNum,
    pub mug: u32,
    pub received: Instant,
}

/// A commit point the commit watch reported: events up to `num` are
/// committed, and `epoch` is the highest epoch fenced as of `num`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    pub num: EventNum,
    pub epoch: Epoch,
    pub at: Instant,
}

/// A fence known applied at `at` (for instance a promotion the harness saw
/// complete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fenced {
    pub epoch: Epoch,
    pub at: Instant,
}

/// One event of a replica's final log, with what the checker reads from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub num: EventNum,
    pub epoch: Epoch,
    pub mug: u32,
    /// The leader's clock when it sequenced the event; `None` if the event
    /// is not a packet event.
    pub now_us: Option<u64>,
    /// The probe request the event carries, if any.
    pub seq: Option<u64>,
    /// The event's data as the log holds it (framed).
    pub data: Vec<u8>,
}

/// The agent's frame (replica/src/frame.rs): a plain event, or one made
/// from an inbound packet, whose 16-byte id follows, or one that also
/// names packets the leader's runtime dropped.
const FRAME_PLAIN: u8 = 0;
const FRAME_FROM_PACKET: u8 = 1;
const FRAME_WITH_DROPS: u8 = 2;
const PACKET_ID_LEN: usize = 16;
/// The packet event's version (replica/src/event.rs).
const PACKET_EVENT_VERSION: u8 = 1;

impl Logged {
    /// Reads an event as the log gives it back: a framed packet event
    /// (replica/src/frame.rs around replica/src/event.rs, whose layouts this
    /// mirrors: testkit cannot depend on the replica crate, whose tests
    /// depend on testkit) yields its timestamp and the probe request its
    /// packet is; anything else has neither, which [`check`] reports as
    /// [`Violation::Unreadable`] unless [`Options::opaque_events`].
    pub fn from_event(event: &Event) -> Logged {
        let decoded = packet_event(&event.data);
        Logged {
            num: event.num,
            epoch: event.epoch,
            mug: event.mug,
            now_us: decoded.map(|(now_us, _)| now_us),
            seq: decoded.and_then(|(_, packet)| request_seq(packet)),
            data: event.data.to_vec(),
        }
    }
}

/// The timestamp and packet of a framed packet event.
fn packet_event(framed: &[u8]) -> Option<(u64, &[u8])> {
    let event = match framed.split_first()? {
        (&FRAME_PLAIN, rest) => rest,
        (&FRAME_FROM_PACKET, rest) => rest.get(PACKET_ID_LEN..)?,
        (&FRAME_WITH_DROPS, rest) => {
            let rest = match rest.split_first()? {
                (0, rest) => rest,
                (1, rest) => rest.get(PACKET_ID_LEN..)?,
                _ => return None,
            };
            let (count, rest) = rest.split_first_chunk::<2>()?;
            rest.get(usize::from(u16::from_be_bytes(*count)) * PACKET_ID_LEN..)?
        }
        _ => return None,
    };
    let (&version, rest) = event.split_first()?;
    if version != PACKET_EVENT_VERSION {
        return None;
    }
    let (now_us, rest) = rest.split_first_chunk::<8>()?;
    let (&family, rest) = rest.split_first()?;
    let ip_len = match family {
        4 => 4,
        6 => 16,
        _ => return None,
    };
    // The port, then the address.
    let packet = rest.get(2 + ip_len..)?;
    Some((u64::from_be_bytes(*now_us), packet))
}

/// Everything a chaos run saw.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every request the peer sent.
    pub sent: Vec<Sent>,
    /// Every answer the peer received, duplicates included, in arrival
    /// order.
    pub answers: Vec<Answer>,
    /// Every commit point the commit watch reported.
    pub acked: Vec<Acked>,
    /// Fences known applied, besides those the commit watch shows; may be
    /// empty.
    pub fences: Vec<Fenced>,
    /// Each replica's final log, read after the run, in order.
    pub logs: BTreeMap<ReplicaId, Vec<Logged>>,
}

impl History {
    /// Adds what a probe sent and received (its first answers and
    /// duplicates, merged back into arrival order).
    pub fn add_probe(&mut self, report: &ProbeReport) {
        self.sent
            .extend(report.sent.iter().enumerate().map(|(i, &at)| Sent {
                seq: report.first_seq + i as u64,
                at,
            }));
        let mut answers: Vec<Answer> = report
            .answers
            .iter()
            .chain(&report.duplicates)
            .map(|a| Answer {
                seq: a.seq,
                num: EventNum(a.num),
                mug: a.mug,
                received: a.received,
            })
            .collect();
        answers.sort_by_key(|a| a.received);
        self.answers.extend(answers);
    }

    /// The earliest instant recorded: times in violations count from it.
    fn origin(&self) -> Option<Instant> {
        let sent = self.sent.iter().map(|s| s.at);
        let answers = self.answers.iter().map(|a| a.received);
        let acked = self.acked.iter().map(|a| a.at);
        let fences = self.fences.iter().map(|f| f.at);
        sent.chain(answers).chain(acked).chain(fences).min()
    }
}

/// How strictly to judge.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The replicas had time to catch up before their logs were read: a log
    /// that ends before the longest one is a violation.
    pub converged: bool,
    /// How long after a newer fence an older epoch's answer may still
    /// arrive (it was on the wire).
    pub in_flight_grace: Duration,
    /// Violations listed per rule; the rest are only counted.
    pub max_per_rule: usize,
    /// The runtime writes events that are not packet events (vere's own):
    /// such events are not violations, and timestamps are compared across
    /// them.
    pub opaque_events: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            converged: false,
            in_flight_grace: Duration::from_millis(200),
            max_per_rule: 20,
            opaque_events: false,
        }
    }
}

/// The rules (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    NoAcknowledgedEventLost,
    IdenticalPrefixes,
    EpochsNeverDecrease,
    AnswersCommittedOnce,
    NoAnswerAfterFence,
    TimestampsIncrease,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, what) = match self {
            Rule::NoAcknowledgedEventLost => (1, "no acknowledged event lost"),
            Rule::IdenticalPrefixes => (2, "logs are identical prefixes without gaps"),
            Rule::EpochsNeverDecrease => (3, "epochs never decrease"),
            Rule::AnswersCommittedOnce => (4, "each answer is a committed event's, once"),
            Rule::NoAnswerAfterFence => (5, "no answer from an epoch after a newer fence"),
            Rule::TimestampsIncrease => (6, "event timestamps strictly increase"),
        };
        write!(f, "rule {n} ({what})")
    }
}

/// A time in the run: how long after the history's earliest instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct At(pub Duration);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:.3}s", self.0.as_secs_f64())
    }
}

/// What differs between two logs' copies of one event (the first of epoch,
/// mug, data that does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Difference {
    Epoch { this: Epoch, other: Epoch },
    Mug { this: u32, other: u32 },
    Data { this_len: usize, other_len: usize },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Epoch { this, other } => write!(f, "epoch {this} against {other}"),
            Difference::Mug { this, other } => write!(f, "mug {this:#x} against {other:#x}"),
            Difference::Data {
                this_len,
                other_len,
            } => write!(
                f,
                "different data ({this_len} bytes against {other_len} bytes)"
            ),
        }
    }
}

/// What the final logs hold where an answer points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No final log has the event.
    Missing,
    /// The event carries another request, or none.
    Seq(Option<u64>),
    /// The event carries the request but has another mug.
    Mug(u32),
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Missing => write!(f, "no final log has that event"),
            Found::Seq(Some(seq)) => write!(f, "the final event carries request {seq}"),
            Found::Seq(None) => write!(f, "the final event carries no request"),
            Found::Mug(mug) => write!(f, "the final event has mug {mug:#x}"),
        }
    }
}

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Events `from..=to` were acknowledged (the first of them by `acked`
    /// at `epoch`, seen `at`) and no final log has them.
    Lost {
        from: EventNum,
        to: EventNum,
        acked: EventNum,
        epoch: Epoch,
        at: At,
        /// The longest log and its last event, if any log has events.
        longest: Option<(ReplicaId, EventNum)>,
    },
    /// The final event `num` has a higher epoch than the acknowledgement
    /// that covered it: the acknowledged event was replaced.
    Overwritten {
        replica: ReplicaId,
        num: EventNum,
        epoch: Epoch,
        acked: EventNum,
        acked_epoch: Epoch,
        at: At,
    },
    /// With [`Options::converged`]: `replica`'s log ends at `last` (0:
    /// empty), `longest`'s at `expected`.
    Behind {
        replica: ReplicaId,
        last: EventNum,
        longest: ReplicaId,
        expected: EventNum,
    },
    /// `replica`'s log has `got` right after `after`.
    NotContiguous {
        replica: ReplicaId,
        after: EventNum,
        got: EventNum,
    },
    /// `replica`'s event `num` is not `other`'s.
    Diverged {
        num: EventNum,
        replica: ReplicaId,
        other: ReplicaId,
        difference: Difference,
    },
    /// Event `num` has a lower epoch than event `prev` before it, in the
    /// logs of `replicas`.
    EpochDecreased {
        replicas: Vec<ReplicaId>,
        num: EventNum,
        epoch: Epoch,
        prev: EventNum,
        prev_epoch: Epoch,
    },
    /// A second (or later) answer to request `seq`.
    Duplicate {
        seq: u64,
        num: EventNum,
        first_num: EventNum,
        received: At,
    },
    /// An answer to a request nobody sent.
    UnsentAnswer {
        seq: u64,
        num: EventNum,
        received: At,
    },
    /// An answer `(seq, num, mug)` that the final logs do not back.
    Unfounded {
        seq: u64,
        num: EventNum,
        mug: u32,
        found: Found,
        received: At,
    },
    /// Request `seq` is in the log twice.
    LoggedTwice {
        seq: u64,
        first: EventNum,
        again: EventNum,
    },
    /// An answer from event `num`, written at `epoch`, received after a fence
    /// of `fenced` was known applied (`fenced_at`) and the grace passed.
    AfterFence {
        seq: u64,
        num: EventNum,
        epoch: Epoch,
        fenced: Epoch,
        fenced_at: At,
        received: At,
        grace: Duration,
    },
    /// Event `num`'s timestamp is not after that of event `prev`, the last
    /// readable one before it, in the logs of `replicas`.
    TimeWentBack {
        replicas: Vec<ReplicaId>,
        num: EventNum,
        now_us: u64,
        prev: EventNum,
        prev_now_us: u64,
    },
    /// Event `num` (as `replica` holds it) is not a packet event: no
    /// timestamp or request can be read from it.
    Unreadable { replica: ReplicaId, num: EventNum },
}

impl Violation {
    pub fn rule(&self) -> Rule {
        match self {
            Violation::Lost { .. } | Violation::Overwritten { .. } | Violation::Behind { .. } => {
                Rule::NoAcknowledgedEventLost
            }
            Violation::NotContiguous { .. } | Violation::Diverged { .. } => Rule::IdenticalPrefixes,
            Violation::EpochDecreased { .. } => Rule::EpochsNeverDecrease,
            Violation::Duplicate { .. }
            | Violation::UnsentAnswer { .. }
            | Violation::Unfounded { .. }
            | Violation::LoggedTwice { .. } => Rule::AnswersCommittedOnce,
            Violation::AfterFence { .. } => Rule::NoAnswerAfterFence,
            Violation::TimeWentBack { .. } | Violation::Unreadable { .. } => {
                Rule::TimestampsIncrease
            }
        }
    }
}

struct Replicas<'a>(&'a [ReplicaId]);

impl fmt::Display for Replicas<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.0.len() == 1 { "" } else { "s" };
        write!(f, "replica{s} ")?;
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Lost {
                from,
                to,
                acked,
                epoch,
                at,
                longest,
            } => {
                if from == to {
                    write!(f, "event {from} lost")?;
                } else {
                    write!(f, "events {from}..={to} lost")?;
                }
                write!(
                    f,
                    ": acknowledged (up to {acked} at epoch {epoch}, {at}), expected in some \
                     final log, but "
                )?;
                match longest {
                    Some((r, last)) => write!(f, "the longest, replica {r}'s, ends at {last}"),
                    None => write!(f, "every final log is empty"),
                }
            }
            Violation::Overwritten {
                replica,
                num,
                epoch,
                acked,
                acked_epoch,
                at,
            } => write!(
                f,
                "event {num} replaced: replica {replica}'s final copy has epoch {epoch}, but the \
                 acknowledgement up to {acked} ({at}) said every event up to there had an epoch \
                 of at most {acked_epoch}"
            ),
            Violation::Behind {
                replica,
                last,
                longest,
                expected,
            } => write!(
                f,
                "replica {replica}'s log ends at {last}, expected to have converged to \
                 {expected} like replica {longest}'s"
            ),
            Violation::NotContiguous {
                replica,
                after,
                got,
            } => write!(
                f,
                "replica {replica}'s log has event {got} after {after}, expected {}",
                after.next()
            ),
            Violation::Diverged {
                num,
                replica,
                other,
                difference,
            } => write!(
                f,
                "event {num} differs between replica {replica} and replica {other}: {difference}"
            ),
            Violation::EpochDecreased {
                replicas,
                num,
                epoch,
                prev,
                prev_epoch,
            } => write!(
                f,
                "event {num} has epoch {epoch}, below event {prev}'s {prev_epoch}, in the log of {}",
                Replicas(replicas)
            ),
            Violation::Duplicate {
                seq,
                num,
                first_num,
                received,
            } => write!(
                f,
                "request {seq} answered again ({received}, as event {num}); its first answer \
                 was event {first_num}; expected at most one answer"
            ),
            Violation::UnsentAnswer { seq, num, received } => write!(
                f,
                "an answer ({received}, as event {num}) to request {seq}, which was never sent"
            ),
            Violation::Unfounded {
                seq,
                num,
                mug,
                found,
                received,
            } => write!(
                f,
                "the answer to request {seq} ({received}) says event {num} with mug {mug:#x}, \
                 but {found}"
            ),
            Violation::LoggedTwice { seq, first, again } => write!(
                f,
                "request {seq} is in the log twice, as events {first} and {again}; expected once"
            ),
            Violation::AfterFence {
                seq,
                num,
                epoch,
                fenced,
                fenced_at,
                received,
                grace,
            } => write!(
                f,
                "the answer to request {seq} (event {num}, epoch {epoch}) arrived {received}, \
                 after epoch {fenced}'s fence was applied ({fenced_at}) plus {}ms in flight",
                grace.as_millis()
            ),
            Violation::TimeWentBack {
                replicas,
                num,
                now_us,
                prev,
                prev_now_us,
            } => write!(
                f,
                "event {num}'s timestamp {now_us}µs is not after event {prev}'s {prev_now_us}µs, \
                 in the log of {}",
                Replicas(replicas)
            ),
            Violation::Unreadable { replica, num } => write!(
                f,
                "replica {replica}'s event {num} is not a packet event: its timestamp and request \
                 cannot be read"
            ),
        }
    }
}

/// Figures for a run's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Requests sent.
    pub requests: usize,
    /// Requests answered (each counted once).
    pub answers: usize,
    /// Answers beyond the first to a request.
    pub duplicates: usize,
    /// The highest event number acknowledged.
    pub acked_max: EventNum,
    /// Distinct event numbers in the final logs together.
    pub events_in_log: usize,
    /// Violations found, including those not listed.
    pub violations: usize,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// At most [`Options::max_per_rule`] per rule, in the order found.
    pub violations: Vec<Violation>,
    /// How many each rule found, listed or not.
    pub counts: BTreeMap<Rule, usize>,
    pub summary: Summary,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.summary.violations == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        writeln!(
            f,
            "{} requests, {} answered, {} duplicate answers, acknowledged up to {}, {} events \
             in the final logs: {} violations",
            s.requests, s.answers, s.duplicates, s.acked_max, s.events_in_log, s.violations
        )?;
        for v in &self.violations {
            writeln!(f, "- {}: {v}", v.rule())?;
        }
        for (rule, &count) in &self.counts {
            let listed = self.violations.iter().filter(|v| v.rule() == *rule).count();
            if count > listed {
                writeln!(f, "- {rule}: {} more not listed", count - listed)?;
            }
        }
        Ok(())
    }
}

/// Collects violations, listing a bounded number per rule.
struct Collector {
    max_per_rule: usize,
    report: Report,
}

impl Collector {
    fn add(&mut self, v: Violation) {
        let count = self.report.counts.entry(v.rule()).or_default();
        *count += 1;
        if *count <= self.max_per_rule {
            self.report.violations.push(v);
        }
        self.report.summary.violations += 1;
    }
}

/// The reference log: for each event number in any final log, the copy of
/// the replica with the lowest id that has it (rule 2 compares the others
/// with it).
type Merged<'a> = BTreeMap<EventNum, (ReplicaId, &'a Logged)>;

/// Judges `history` by every rule.
pub fn check(history: &History, opts: &Options) -> Report {
    let origin = history.origin().unwrap_or_else(Instant::now);
    let at = |t: Instant| At(t.saturating_duration_since(origin));
    let mut out = Collector {
        max_per_rule: opts.max_per_rule,
        report: Report::default(),
    };

    let merged = shape(history, opts, &mut out);
    lost(history, opts, &merged, &at, &mut out);
    answers(history, opts, &merged, &at, &mut out);
    // Listed by rule, each rule's in the order found.
    out.report.violations.sort_by_key(Violation::rule);

    let answered: HashSet<u64> = history.answers.iter().map(|a| a.seq).collect();
    let summary = &mut out.report.summary;
    summary.requests = history.sent.len();
    summary.answers = answered.len();
    summary.duplicates = history.answers.len() - answered.len();
    summary.acked_max = history
        .acked
        .iter()
        .map(|a| a.num)
        .max()
        .unwrap_or_default();
    summary.events_in_log = merged.len();
    out.report
}

/// Rules 2, 3 and 6 (and the unreadable events): each log on its own, then
/// every log against the reference.
fn shape<'a>(history: &'a History, opts: &Options, out: &mut Collector) -> Merged<'a> {
    // The same broken step in several logs is one violation naming them
    // all: by (event, the one before it), the replicas and the two values.
    type Steps = BTreeMap<(EventNum, EventNum), (Vec<ReplicaId>, u64, u64)>;
    let note = |steps: &mut Steps, key, replica, values: (u64, u64)| {
        steps
            .entry(key)
            .or_insert_with(|| (Vec::new(), values.0, values.1))
            .0
            .push(replica);
    };
    let mut epochs = Steps::new();
    let mut times = Steps::new();
    let mut merged = Merged::new();
    for (&replica, log) in &history.logs {
        let mut prev: Option<&Logged> = None;
        let mut prev_time: Option<(EventNum, u64)> = None;
        for e in log {
            if let Some(p) = prev {
                if e.num != p.num.next() {
                    out.add(Violation::NotContiguous {
                        replica,
                        after: p.num,
                        got: e.num,
                    });
                }
                if e.epoch < p.epoch {
                    let values = (e.epoch.get(), p.epoch.get());
                    note(&mut epochs, (e.num, p.num), replica, values);
                }
            }
            prev = Some(e);
            if let Some(now_us) = e.now_us {
                if let Some((prev, prev_now_us)) = prev_time
                    && now_us <= prev_now_us
                {
                    note(&mut times, (e.num, prev), replica, (now_us, prev_now_us));
                }
                prev_time = Some((e.num, now_us));
            }
            match merged.get(&e.num) {
                None => {
                    merged.insert(e.num, (replica, e));
                }
                // A number this log repeats is not contiguous, above.
                Some(&(other, _)) if other == replica => {}
                Some(&(other, theirs)) => {
                    if let Some(difference) = differs(e, theirs) {
                        out.add(Violation::Diverged {
                            num: e.num,
                            replica,
                            other,
                            difference,
                        });
                    }
                }
            }
        }
    }
    for ((num, prev), (replicas, epoch, prev_epoch)) in epochs {
        out.add(Violation::EpochDecreased {
            replicas,
            num,
            epoch: Epoch(epoch),
            prev,
            prev_epoch: Epoch(prev_epoch),
        });
    }
    for ((num, prev), (replicas, now_us, prev_now_us)) in times {
        out.add(Violation::TimeWentBack {
            replicas,
            num,
            now_us,
            prev,
            prev_now_us,
        });
    }
    if !opts.opaque_events {
        for (&num, &(replica, e)) in &merged {
            if e.now_us.is_none() {
                out.add(Violation::Unreadable { replica, num });
            }
        }
    }
    merged
}

fn differs(this: &Logged, other: &Logged) -> Option<Difference> {
    if this.epoch != other.epoch {
        Some(Difference::Epoch {
            this: this.epoch,
            other: other.epoch,
        })
    } else if this.mug != other.mug {
        Some(Difference::Mug {
            this: this.mug,
            other: other.mug,
        })
    } else if this.data != other.data {
        Some(Difference::Data {
            this_len: this.data.len(),
            other_len: other.data.len(),
        })
    } else {
        None
    }
}

/// Rule 1.
fn lost(
    history: &History,
    opts: &Options,
    merged: &Merged<'_>,
    at: &dyn Fn(Instant) -> At,
    out: &mut Collector,
) {
    let ends: Vec<(ReplicaId, EventNum)> = history
        .logs
        .iter()
        .map(|(&r, log)| (r, log.last().map_or(EventNum::NONE, |e| e.num)))
        .collect();
    // The first replica to reach the furthest end.
    let longest = ends
        .iter()
        .copied()
        .reduce(|best, e| if e.1 > best.1 { e } else { best });
    if opts.converged
        && let Some((longest, expected)) = longest
    {
        for &(replica, last) in &ends {
            if last < expected {
                out.add(Violation::Behind {
                    replica,
                    last,
                    longest,
                    expected,
                });
            }
        }
    }

    // Acknowledgements by number, each with the lowest epoch among those at
    // or above it: the highest epoch any event up to that number may have.
    let mut acked: Vec<&Acked> = history
        .acked
        .iter()
        .filter(|a| a.num > EventNum::NONE)
        .collect();
    acked.sort_by_key(|a| (a.num, a.at));
    let mut bound: Vec<&Acked> = Vec::with_capacity(acked.len());
    for &a in acked.iter().rev() {
        match bound.last().copied() {
            Some(b) if b.epoch <= a.epoch => bound.push(b),
            _ => bound.push(a),
        }
    }
    bound.reverse();
    let Some(&highest) = acked.last() else {
        return;
    };
    // The first acknowledgement (in time) that covered `num`.
    let first_covering = |num: EventNum| {
        history
            .acked
            .iter()
            .filter(|a| a.num >= num)
            .min_by_key(|a| a.at)
            .unwrap_or(highest)
    };

    let report_gap = |from: EventNum, to: EventNum, out: &mut Collector| {
        let a = first_covering(from);
        out.add(Violation::Lost {
            from,
            to,
            acked: a.num,
            epoch: a.epoch,
            at: at(a.at),
            longest: longest.filter(|l| l.1 > EventNum::NONE),
        });
    };
    // Events below every log's first were compacted: not checkable.
    let mut expected = merged.keys().next().copied().unwrap_or(EventNum(1));
    for &num in merged.keys() {
        if num > highest.num {
            break;
        }
        if num > expected {
            report_gap(expected, EventNum(num.get() - 1), out);
        }
        expected = num.next();
    }
    if expected <= highest.num {
        report_gap(expected, highest.num, out);
    }

    for (&num, &(replica, e)) in merged.range(..=highest.num) {
        let i = acked.partition_point(|a| a.num < num);
        let b = bound[i];
        if e.epoch > b.epoch {
            out.add(Violation::Overwritten {
                replica,
                num,
                epoch: e.epoch,
                acked: b.num,
                acked_epoch: b.epoch,
                at: at(b.at),
            });
        }
    }
}

/// Rules 4 and 5.
fn answers(
    history: &History,
    opts: &Options,
    merged: &Merged<'_>,
    at: &dyn Fn(Instant) -> At,
    out: &mut Collector,
) {
    let mut in_log: HashMap<u64, EventNum> = HashMap::new();
    for (&num, &(_, e)) in merged {
        let Some(seq) = e.seq else { continue };
        match in_log.entry(seq) {
            Entry::Occupied(first) => out.add(Violation::LoggedTwice {
                seq,
                first: *first.get(),
                again: num,
            }),
            Entry::Vacant(slot) => {
                slot.insert(num);
            }
        }
    }

    // Fences by epoch, each with the earliest time a fence at least that
    // high was known applied.
    let mut fences: Vec<(Epoch, Instant)> = history
        .acked
        .iter()
        .map(|a| (a.epoch, a.at))
        .chain(history.fences.iter().map(|f| (f.epoch, f.at)))
        .collect();
    fences.sort();
    let mut earliest: Vec<(Epoch, Instant)> = Vec::with_capacity(fences.len());
    for &(epoch, t) in fences.iter().rev() {
        match earliest.last() {
            Some(&(e, u)) if u <= t => earliest.push((e, u)),
            _ => earliest.push((epoch, t)),
        }
    }
    earliest.reverse();
    let newer_fence = |epoch: Epoch| {
        let i = fences.partition_point(|&(e, _)| e <= epoch);
        earliest.get(i).copied()
    };

    let compacted_below = merged.keys().next().copied();
    let sent: HashMap<u64, Instant> = history.sent.iter().map(|s| (s.seq, s.at)).collect();
    let mut first_answer: HashMap<u64, EventNum> = HashMap::new();
    for a in &history.answers {
        let received = at(a.received);
        if !sent.contains_key(&a.seq) {
            out.add(Violation::UnsentAnswer {
                seq: a.seq,
                num: a.num,
                received,
            });
            continue;
        }
        if let Some(&first_num) = first_answer.get(&a.seq) {
            out.add(Violation::Duplicate {
                seq: a.seq,
                num: a.num,
                first_num,
                received,
            });
        } else {
            first_answer.insert(a.seq, a.num);
        }
        let found = match merged.get(&a.num) {
            None if compacted_below.is_some_and(|first| a.num < first) => continue,
            None => Found::Missing,
            Some(&(_, e)) if e.seq != Some(a.seq) => Found::Seq(e.seq),
            Some(&(_, e)) if e.mug != a.mug => Found::Mug(e.mug),
            Some(&(_, e)) => {
                if let Some((fenced, t)) = newer_fence(e.epoch)
                    && a.received > t + opts.in_flight_grace
                {
                    out.add(Violation::AfterFence {
                        seq: a.seq,
                        num: a.num,
                        epoch: e.epoch,
                        fenced,
                        fenced_at: at(t),
                        received,
                        grace: opts.in_flight_grace,
                    });
                }
                continue;
            }
        };
        out.add(Violation::Unfounded {
            seq: a.seq,
            num: a.num,
            mug: a.mug,
            found,
            received,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Answered, request};

    fn r(id: u32) -> ReplicaId {
        ReplicaId::new(id).unwrap()
    }

    /// The bytes the agent writes for a packet event, laid out by hand (the
    /// frame with a packet id, then replica/src/event.rs's encoding).
    fn packet_event_bytes(now_us: u64, lane: std::net::SocketAddr, packet: &[u8]) -> Vec<u8> {
        let mut out = vec![FRAME_FROM_PACKET];
        out.extend_from_slice(&[0xaa; PACKET_ID_LEN]);
        out.push(PACKET_EVENT_VERSION);
        out.extend_from_slice(&now_us.to_be_bytes());
        match lane.ip() {
            std::net::IpAddr::V4(ip) => {
                out.push(4);
                out.extend_from_slice(&lane.port().to_be_bytes());
                out.extend_from_slice(&ip.octets());
            }
            std::net::IpAddr::V6(ip) => {
                out.push(6);
                out.extend_from_slice(&lane.port().to_be_bytes());
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(packet);
        out
    }

    #[test]
    fn a_frame_naming_dropped_packets_reads_as_its_event() {
        let plain = packet_event_bytes(7, "192.0.2.1:1".parse().unwrap(), b"p");
        let mut with_drops = vec![FRAME_WITH_DROPS, 1];
        with_drops.extend_from_slice(&plain[1..1 + PACKET_ID_LEN]);
        with_drops.extend_from_slice(&2u16.to_be_bytes());
        with_drops.extend_from_slice(&[0xbb; 2 * PACKET_ID_LEN]);
        with_drops.extend_from_slice(&plain[1 + PACKET_ID_LEN..]);
        assert_eq!(packet_event(&with_drops), packet_event(&plain));
        assert_eq!(
            packet_event(&plain).map(|(us, p)| (us, p.to_vec())),
            Some((7, b"p".to_vec()))
        );
        with_drops.truncate(3 + PACKET_ID_LEN + 2 + PACKET_ID_LEN);
        assert_eq!(packet_event(&with_drops), None, "ids cut short");
    }

    fn event(num: u64, epoch: u64, mug: u32, data: Vec<u8>) -> Event {
        Event {
            num: EventNum(num),
            epoch: Epoch(epoch),
            mug,
            data: data.into(),
        }
    }

    /// Event `num` at `epoch`, stamped `now_us`, carrying request `seq`,
    /// whose mug is derived from both (so that a test can name it).
    fn ev(num: u64, epoch: u64, now_us: u64, seq: u64) -> Logged {
        let data = packet_event_bytes(now_us, "192.0.2.7:4000".parse().unwrap(), &request(seq));
        Logged::from_event(&event(num, epoch, mug(num), data))
    }

    fn mug(num: u64) -> u32 {
        0x1000 + num as u32
    }

    fn logs(logs: Vec<(u32, Vec<Logged>)>) -> History {
        History {
            logs: logs.into_iter().map(|(id, log)| (r(id), log)).collect(),
            ..History::default()
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn checked(h: &History) -> Vec<Violation> {
        check(h, &Options::default()).violations
    }

    /// Three replicas; replica 1 leads at epoch 3 for events 1-3, replica 2
    /// takes over at epoch 7 (its fence applied at +400 ms) for events 4-6,
    /// with the clock carried across; replica 3 compacted events 1-2.
    /// Request 6 was lost before it was sequenced; request 2's answer was
    /// still on the wire when the fence was applied.
    fn good(t0: Instant) -> History {
        let log: Vec<Logged> = (1..=6)
            .map(|n| {
                let epoch = if n <= 3 { 3 } else { 7 };
                ev(n, epoch, 1_000 * n, n - 1)
            })
            .collect();
        History {
            sent: (0..7)
                .map(|seq| Sent {
                    seq,
                    at: ms(t0, 10 * seq),
                })
                .collect(),
            answers: (0..6)
                .map(|seq| Answer {
                    seq,
                    num: EventNum(seq + 1),
                    mug: mug(seq + 1),
                    received: match seq {
                        0 | 1 => ms(t0, 40 + seq),
                        2 => ms(t0, 550),
                        _ => ms(t0, 700 + seq),
                    },
                })
                .collect(),
            acked: vec![
                Acked {
                    num: EventNum(2),
                    epoch: Epoch(3),
                    at: ms(t0, 50),
                },
                Acked {
                    num: EventNum(3),
                    epoch: Epoch(3),
                    at: ms(t0, 60),
                },
                Acked {
                    num: EventNum(3),
                    epoch: Epoch(7),
                    at: ms(t0, 450),
                },
                Acked {
                    num: EventNum(6),
                    epoch: Epoch(7),
                    at: ms(t0, 800),
                },
            ],
            fences: vec![Fenced {
                epoch: Epoch(7),
                at: ms(t0, 400),
            }],
            logs: [
                (r(1), log.clone()),
                (r(2), log.clone()),
                (r(3), log[2..].to_vec()),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn a_good_history_with_a_failover_passes_every_rule() {
        let t0 = Instant::now();
        let h = good(t0);
        let opts = Options {
            converged: true,
            ..Options::default()
        };
        let report = check(&h, &opts);
        assert!(report.is_clean(), "{report}");
        assert_eq!(
            report.summary,
            Summary {
                requests: 7,
                answers: 6,
                duplicates: 0,
                acked_max: EventNum(6),
                events_in_log: 6,
                violations: 0,
            }
        );
        assert!(report.to_string().starts_with(
            "7 requests, 6 answered, 0 duplicate answers, acknowledged up to 6, 6 events"
        ));
    }

    #[test]
    fn rule_1_an_acknowledged_event_no_log_has_is_lost() {
        let t0 = Instant::now();
        let mut h = logs(vec![
            (1, vec![ev(1, 1, 1, 0), ev(2, 1, 2, 1)]),
            (2, vec![ev(1, 1, 1, 0)]),
        ]);
        h.acked = vec![
            Acked {
                num: EventNum(2),
                epoch: Epoch(1),
                at: t0,
            },
            Acked {
                num: EventNum(4),
                epoch: Epoch(1),
                at: ms(t0, 1500),
            },
        ];
        let v = checked(&h);
        assert_eq!(
            v,
            vec![Violation::Lost {
                from: EventNum(3),
                to: EventNum(4),
                acked: EventNum(4),
                epoch: Epoch(1),
                at: At(Duration::from_millis(1500)),
                longest: Some((r(1), EventNum(2))),
            }]
        );
        assert_eq!(
            v[0].to_string(),
            "events 3..=4 lost: acknowledged (up to 4 at epoch 1, +1.500s), expected in some \
             final log, but the longest, replica 1's, ends at 2"
        );

        // Nothing at all survived.
        let mut empty = logs(vec![(1, vec![]), (2, vec![])]);
        empty.acked = h.acked.clone();
        assert!(matches!(
            checked(&empty)[..],
            [Violation::Lost {
                from: EventNum(1),
                to: EventNum(4),
                acked: EventNum(2),
                longest: None,
                ..
            }]
        ));
    }

    #[test]
    fn rule_1_a_hole_between_compacted_logs_is_lost() {
        let t0 = Instant::now();
        let mut h = logs(vec![
            (1, vec![ev(1, 1, 1, 0), ev(2, 1, 2, 1)]),
            (2, vec![ev(4, 1, 4, 3), ev(5, 1, 5, 4)]),
        ]);
        h.acked = vec![Acked {
            num: EventNum(5),
            epoch: Epoch(1),
            at: t0,
        }];
        let v = checked(&h);
        assert!(
            matches!(
                v[..],
                [Violation::Lost {
                    from: EventNum(3),
                    to: EventNum(3),
                    ..
                }]
            ),
            "{v:?}"
        );
        assert!(v[0].to_string().starts_with("event 3 lost: "), "{}", v[0]);
    }

    #[test]
    fn rule_1_an_acknowledged_event_replaced_at_a_later_epoch_is_lost() {
        let t0 = Instant::now();
        let mut h = logs(vec![(
            1,
            vec![ev(1, 1, 1, 0), ev(2, 4, 2, 1), ev(3, 4, 3, 2)],
        )]);
        h.acked = vec![
            Acked {
                num: EventNum(2),
                epoch: Epoch(1),
                at: ms(t0, 20),
            },
            Acked {
                num: EventNum(3),
                epoch: Epoch(4),
                at: ms(t0, 30),
            },
        ];
        let v = checked(&h);
        assert_eq!(
            v,
            vec![Violation::Overwritten {
                replica: r(1),
                num: EventNum(2),
                epoch: Epoch(4),
                acked: EventNum(2),
                acked_epoch: Epoch(1),
                at: At(Duration::ZERO),
            }]
        );
        assert!(v[0].to_string().starts_with("event 2 replaced"), "{}", v[0]);
    }

    #[test]
    fn rule_1_a_shorter_log_is_behind_only_when_logs_must_have_converged() {
        let t0 = Instant::now();
        let full = vec![ev(1, 1, 1, 0), ev(2, 1, 2, 1), ev(3, 1, 3, 2)];
        let mut h = logs(vec![
            (1, full[..2].to_vec()),
            (2, full.clone()),
            (3, vec![]),
        ]);
        h.acked = vec![Acked {
            num: EventNum(3),
            epoch: Epoch(1),
            at: t0,
        }];
        assert_eq!(checked(&h), vec![], "replica 2 has every event");
        let converged = Options {
            converged: true,
            ..Options::default()
        };
        let v = check(&h, &converged).violations;
        assert_eq!(
            v,
            vec![
                Violation::Behind {
                    replica: r(1),
                    last: EventNum(2),
                    longest: r(2),
                    expected: EventNum(3),
                },
                Violation::Behind {
                    replica: r(3),
                    last: EventNum::NONE,
                    longest: r(2),
                    expected: EventNum(3),
                },
            ]
        );
        assert_eq!(
            v[0].to_string(),
            "replica 1's log ends at 2, expected to have converged to 3 like replica 2's"
        );
    }

    #[test]
    fn rule_2_a_gap_in_a_log() {
        let h = logs(vec![(
            1,
            vec![ev(1, 1, 1, 0), ev(2, 1, 2, 1), ev(4, 1, 4, 3)],
        )]);
        let v = checked(&h);
        assert_eq!(
            v,
            vec![Violation::NotContiguous {
                replica: r(1),
                after: EventNum(2),
                got: EventNum(4),
            }]
        );
        assert_eq!(
            v[0].to_string(),
            "replica 1's log has event 4 after 2, expected 3"
        );
        // A number twice is no more contiguous (nor is its second stamp
        // later, here).
        let twice = logs(vec![(1, vec![ev(1, 1, 1, 0), ev(1, 1, 1, 0)])]);
        let v = checked(&twice);
        assert!(
            matches!(
                v[..],
                [
                    Violation::NotContiguous {
                        after: EventNum(1),
                        got: EventNum(1),
                        ..
                    },
                    Violation::TimeWentBack { .. }
                ]
            ),
            "{v:?}"
        );
    }

    #[test]
    fn rule_2_logs_that_differ_where_they_overlap() {
        let base = vec![ev(1, 1, 1, 0), ev(2, 1, 2, 1), ev(3, 1, 3, 2)];
        let mut other_mug = base.clone();
        other_mug[1].mug = 0xbad;
        let mut other_epoch = base.clone();
        other_epoch[2].epoch = Epoch(2);
        let mut other_data = base[1..].to_vec();
        other_data[1].data.push(0);
        let h = logs(vec![
            (1, base.clone()),
            (2, other_mug),
            (3, other_epoch),
            // Compacted, and otherwise the same: fine.
            (4, base[1..].to_vec()),
            (5, other_data),
        ]);
        let v = checked(&h);
        assert_eq!(
            v,
            vec![
                Violation::Diverged {
                    num: EventNum(2),
                    replica: r(2),
                    other: r(1),
                    difference: Difference::Mug {
                        this: 0xbad,
                        other: mug(2),
                    },
                },
                Violation::Diverged {
                    num: EventNum(3),
                    replica: r(3),
                    other: r(1),
                    difference: Difference::Epoch {
                        this: Epoch(2),
                        other: Epoch(1),
                    },
                },
                Violation::Diverged {
                    num: EventNum(3),
                    replica: r(5),
                    other: r(1),
                    difference: Difference::Data {
                        this_len: base[2].data.len() + 1,
                        other_len: base[2].data.len(),
                    },
                },
            ]
        );
        assert_eq!(
            v[0].to_string(),
            "event 2 differs between replica 2 and replica 1: mug 0xbad against 0x1002"
        );
    }

    #[test]
    fn rule_3_an_epoch_that_decreases_along_a_log() {
        let log = vec![ev(1, 5, 1, 0), ev(2, 3, 2, 1)];
        let h = logs(vec![(1, log.clone()), (2, log)]);
        let v = checked(&h);
        assert_eq!(
            v,
            vec![Violation::EpochDecreased {
                replicas: vec![r(1), r(2)],
                num: EventNum(2),
                epoch: Epoch(3),
                prev: EventNum(1),
                prev_epoch: Epoch(5),
            }]
        );
        assert_eq!(
            v[0].to_string(),
            "event 2 has epoch 3, below event 1's 5, in the log of replicas 1, 2"
        );
    }

    /// Requests 0 and 1 sent and sequenced as events 1 and 2.
    fn two_requests(t0: Instant) -> History {
        let mut h = logs(vec![(1, vec![ev(1, 1, 1, 0), ev(2, 1, 2, 1)])]);
        h.sent = vec![Sent { seq: 0, at: t0 }, Sent { seq: 1, at: t0 }];
        h
    }

    fn answer(seq: u64, num: u64, mug: u32, received: Instant) -> Answer {
        Answer {
            seq,
            num: EventNum(num),
            mug,
            received,
        }
    }

    #[test]
    fn rule_4_a_request_answered_twice() {
        let t0 = Instant::now();
        let mut h = two_requests(t0);
        h.answers = vec![
            answer(0, 1, mug(1), ms(t0, 1)),
            answer(1, 2, mug(2), ms(t0, 2)),
            answer(0, 1, mug(1), ms(t0, 3)),
        ];
        let report = check(&h, &Options::default());
        assert_eq!(
            report.violations,
            vec![Violation::Duplicate {
                seq: 0,
                num: EventNum(1),
                first_num: EventNum(1),
                received: At(Duration::from_millis(3)),
            }]
        );
        assert_eq!((report.summary.answers, report.summary.duplicates), (2, 1));
    }

    #[test]
    fn rule_4_an_answer_to_a_request_never_sent() {
        let t0 = Instant::now();
        let mut h = two_requests(t0);
        h.answers = vec![answer(9, 1, mug(1), ms(t0, 1))];
        let v = checked(&h);
        assert_eq!(
            v,
            vec![Violation::UnsentAnswer {
                seq: 9,
                num: EventNum(1),
                received: At(Duration::from_millis(1)),
            }]
        );
        assert_eq!(
            v[0].to_string(),
            "an answer (+0.001s, as event 1) to request 9, which was never sent"
        );
    }

    #[test]
    fn rule_4_an_answer_no_committed_event_backs() {
        let t0 = Instant::now();
        let mut h = two_requests(t0);
        h.answers = vec![
            // Another request's event.
            answer(0, 2, mug(2), t0),
            // The right event, another mug.
            answer(1, 2, 0xbad, t0),
        ];
        let missing = answer(1, 3, mug(3), t0);
        let v = checked(&h);
        let unfounded = |a: &Answer, found| Violation::Unfounded {
            seq: a.seq,
            num: a.num,
            mug: a.mug,
            found,
            received: At(Duration::ZERO),
        };
        assert_eq!(
            v,
            vec![
                unfounded(&h.answers[0], Found::Seq(Some(1))),
                unfounded(&h.answers[1], Found::Mug(mug(2))),
            ]
        );
        h.answers = vec![missing];
        assert_eq!(checked(&h), vec![unfounded(&missing, Found::Missing)]);
        assert_eq!(
            checked(&h)[0].to_string(),
            "the answer to request 1 (+0.000s) says event 3 with mug 0x1003, but no final log \
             has that event"
        );
    }

    #[test]
    fn rule_4_a_request_sequenced_twice() {
        let h = logs(vec![(1, vec![ev(1, 1, 1, 0), ev(2, 1, 2, 0)])]);
        assert_eq!(
            checked(&h),
            vec![Violation::LoggedTwice {
                seq: 0,
                first: EventNum(1),
                again: EventNum(2),
            }]
        );
    }

    #[test]
    fn rule_5_an_answer_from_an_old_epoch_after_the_newer_fence() {
        let t0 = Instant::now();
        let mut h = logs(vec![(
            1,
            vec![ev(1, 3, 1, 0), ev(2, 3, 2, 1), ev(3, 7, 3, 2)],
        )]);
        h.sent = (0..3).map(|seq| Sent { seq, at: t0 }).collect();
        h.acked = vec![Acked {
            num: EventNum(2),
            epoch: Epoch(7),
            at: ms(t0, 1000),
        }];
        h.answers = vec![
            // On the wire when the fence was applied: fine.
            answer(0, 1, mug(1), ms(t0, 1200)),
            answer(1, 2, mug(2), ms(t0, 1201)),
            // The new epoch's own.
            answer(2, 3, mug(3), ms(t0, 5000)),
        ];
        let v = checked(&h);
        assert_eq!(
            v,
            vec![Violation::AfterFence {
                seq: 1,
                num: EventNum(2),
                epoch: Epoch(3),
                fenced: Epoch(7),
                fenced_at: At(Duration::from_millis(1000)),
                received: At(Duration::from_millis(1201)),
                grace: Duration::from_millis(200),
            }]
        );
        assert_eq!(
            v[0].to_string(),
            "the answer to request 1 (event 2, epoch 3) arrived +1.201s, after epoch 7's fence \
             was applied (+1.000s) plus 200ms in flight"
        );

        // A fence the harness saw applied earlier than the watch showed.
        h.fences = vec![Fenced {
            epoch: Epoch(5),
            at: ms(t0, 900),
        }];
        let fenced: Vec<(u64, Epoch)> = checked(&h)
            .into_iter()
            .map(|v| match v {
                Violation::AfterFence { seq, fenced, .. } => (seq, fenced),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(fenced, vec![(0, Epoch(5)), (1, Epoch(5))]);
    }

    #[test]
    fn rule_6_a_timestamp_that_does_not_increase() {
        let h = logs(vec![(
            1,
            vec![ev(1, 1, 500, 0), ev(2, 1, 500, 1), ev(3, 1, 400, 2)],
        )]);
        let v = checked(&h);
        assert_eq!(
            v,
            vec![
                Violation::TimeWentBack {
                    replicas: vec![r(1)],
                    num: EventNum(2),
                    now_us: 500,
                    prev: EventNum(1),
                    prev_now_us: 500,
                },
                Violation::TimeWentBack {
                    replicas: vec![r(1)],
                    num: EventNum(3),
                    now_us: 400,
                    prev: EventNum(2),
                    prev_now_us: 500,
                },
            ]
        );
        assert_eq!(
            v[1].to_string(),
            "event 3's timestamp 400µs is not after event 2's 500µs, in the log of replica 1"
        );
    }

    #[test]
    fn rule_6_an_event_without_a_timestamp_is_unreadable_unless_the_runtime_writes_its_own() {
        let opaque = Logged::from_event(&event(2, 1, 7, b"\0vere's own event".to_vec()));
        assert_eq!((opaque.now_us, opaque.seq), (None, None));
        let h = logs(vec![(1, vec![ev(1, 1, 500, 0), opaque, ev(3, 1, 400, 2)])]);
        let v = checked(&h);
        assert!(
            matches!(
                v[..],
                [
                    Violation::TimeWentBack {
                        num: EventNum(3),
                        prev: EventNum(1),
                        ..
                    },
                    Violation::Unreadable {
                        num: EventNum(2),
                        ..
                    }
                ]
            ),
            "{v:?}"
        );
        let vere = Options {
            opaque_events: true,
            ..Options::default()
        };
        let v = check(&h, &vere).violations;
        assert!(
            matches!(v[..], [Violation::TimeWentBack { .. }]),
            "timestamps are still compared across the opaque event: {v:?}"
        );
    }

    #[test]
    fn reads_packet_events_over_v4_and_v6_and_nothing_else() {
        for lane in ["192.0.2.1:34543", "[2001:db8::1]:1"] {
            let data =
                packet_event_bytes(1_700_000_000_000_001, lane.parse().unwrap(), &request(42));
            let logged = Logged::from_event(&event(5, 2, 9, data.clone()));
            assert_eq!(logged.now_us, Some(1_700_000_000_000_001));
            assert_eq!(logged.seq, Some(42));
            assert_eq!(logged.data, data);
            // The same event framed as plain data.
            let plain = [&[FRAME_PLAIN][..], &data[1 + PACKET_ID_LEN..]].concat();
            assert_eq!(Logged::from_event(&event(5, 2, 9, plain)).seq, Some(42));
        }
        // A packet event whose packet is no probe request.
        let data = packet_event_bytes(7, "192.0.2.1:1".parse().unwrap(), b"not ames");
        let logged = Logged::from_event(&event(1, 1, 1, data.clone()));
        assert_eq!((logged.now_us, logged.seq), (Some(7), None));
        // Cut short anywhere in the header, an unknown frame or version.
        let header = 1 + PACKET_ID_LEN + 1 + 8 + 1 + 2 + 4;
        for cut in 0..header {
            let logged = Logged::from_event(&event(1, 1, 1, data[..cut].to_vec()));
            assert_eq!(logged.now_us, None, "cut at {cut}");
        }
        let mut bad = data.clone();
        bad[0] = 2;
        assert_eq!(Logged::from_event(&event(1, 1, 1, bad)).now_us, None);
        let mut bad = data;
        bad[1 + PACKET_ID_LEN] = 2;
        assert_eq!(Logged::from_event(&event(1, 1, 1, bad)).now_us, None);
    }

    #[test]
    fn a_broken_run_lists_a_bounded_number_per_rule() {
        let log: Vec<Logged> = (0..31).map(|i| ev(1 + 2 * i, 1, 1 + i, i)).collect();
        let h = logs(vec![(1, log)]);
        let report = check(&h, &Options::default());
        assert_eq!(report.summary.violations, 30);
        assert_eq!(report.violations.len(), 20);
        assert_eq!(report.counts[&Rule::IdenticalPrefixes], 30);
        let text = report.to_string();
        assert!(
            text.ends_with(
                "- rule 2 (logs are identical prefixes without gaps): 10 more not listed\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_probe_report_fills_requests_and_answers_in_arrival_order() {
        let t0 = Instant::now();
        let answered = |seq, num, received| Answered {
            seq,
            num,
            mug: mug(num),
            sent: t0,
            received: ms(t0, received),
        };
        let report = ProbeReport {
            first_seq: 10,
            sent: vec![t0, ms(t0, 1)],
            answers: vec![answered(10, 1, 5), answered(11, 2, 9)],
            duplicates: vec![answered(10, 1, 7)],
            unknown: 0,
            elapsed: Duration::from_secs(1),
        };
        let mut h = History::default();
        h.add_probe(&report);
        assert_eq!(
            h.sent,
            vec![
                Sent { seq: 10, at: t0 },
                Sent {
                    seq: 11,
                    at: ms(t0, 1)
                }
            ]
        );
        let order: Vec<(u64, Instant)> = h.answers.iter().map(|a| (a.seq, a.received)).collect();
        assert_eq!(
            order,
            vec![(10, ms(t0, 5)), (10, ms(t0, 7)), (11, ms(t0, 9))]
        );
        assert_eq!(h.answers[2].num, EventNum(2));
    }
}
