//! A peer that talks to the ship: sends valid Ames packets at a bounded rate
//! and count, and matches the answers the reference ship sends back
//! (`replica::ReferenceShip`: one Ames packet per inbound one, whose content
//! is the event number, 8 bytes big-endian, and the state mug after it, 4
//! bytes big-endian).
//!
//! Each request's sender ship is a moon numbered [`MOON_BASE`] + its
//! sequence number, so an answer (addressed to that ship) names the request
//! it answers: round-trip times, duplicates and losses are exact. The same
//! matching works against a plain UDP echo (the request comes back with the
//! moon as its sender), the real peer benchmarks compare with.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ames::{Body, Packet, Prelude, Ship};

use crate::wait;

/// The first request's sender ship: a moon, so that every sequence number
/// up to 2^32 fits in the same rank.
pub const MOON_BASE: u64 = 0x0001_0000_0000_0000;
/// The ship every request is addressed to (~nec).
pub const TARGET_SHIP: u64 = 1;

/// The Ames packet with sequence number `seq`: from moon `MOON_BASE + seq`
/// to [`TARGET_SHIP`], carrying `seq` and some padding.
pub fn request(seq: u64) -> Vec<u8> {
    let mut content = seq.to_be_bytes().to_vec();
    content.extend_from_slice(b"seguro probe");
    Packet {
        prelude: Prelude::new(Ship::from(MOON_BASE + seq), Ship::from(TARGET_SHIP)),
        body: Body::Ames(content),
    }
    .to_bytes()
}

/// The sequence number of a request (its sender moon), if `packet` is one.
pub fn request_seq(packet: &[u8]) -> Option<u64> {
    let Ok(ames::Datagram::Ames(p)) = ames::parse(packet) else {
        return None;
    };
    seq_of(p.prelude.sender.ship())
}

fn seq_of(ship: Ship) -> Option<u64> {
    let n = u64::try_from(ship.get()).ok()?;
    n.checked_sub(MOON_BASE)
}

/// What the ship (or an echo) sent back, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The reference ship's answer to request `seq`: event `num`, state mug.
    Answer { seq: u64, num: u64, mug: u32 },
    /// Request `seq` itself, echoed.
    Echo { seq: u64 },
}

/// Decodes a datagram the probe received.
pub fn decode_reply(packet: &[u8]) -> Option<Reply> {
    let Ok(ames::Datagram::Ames(p)) = ames::parse(packet) else {
        return None;
    };
    if let Some(seq) = seq_of(p.prelude.receiver.ship()) {
        let Body::Ames(content) = &p.body else {
            return None;
        };
        let (num, rest) = content.split_first_chunk::<8>()?;
        let mug = rest.first_chunk::<4>()?;
        return Some(Reply::Answer {
            seq,
            num: u64::from_be_bytes(*num),
            mug: u32::from_be_bytes(*mug),
        });
    }
    seq_of(p.prelude.sender.ship()).map(|seq| Reply::Echo { seq })
}

/// How the probe sends.
#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    /// Where to send: the ship's public address (or an echo's).
    pub target: SocketAddr,
    /// Packets per second, at most.
    pub rate: u32,
    /// At most this many requests without an answer yet; the sender waits
    /// (up to `window_wait`) when it is reached. `None`: open loop.
    pub window: Option<u32>,
    /// The longest the sender waits for the window to open before sending
    /// anyway (answers can be lost).
    pub window_wait: Duration,
    /// The first request's sequence number (the next ones count up): probes
    /// of one cluster use disjoint ranges, so that each request is unique in
    /// the log.
    pub first_seq: u64,
    /// Stop after this many packets...
    pub count: u64,
    /// ...or after this long, whichever comes first.
    pub duration: Duration,
}

impl ProbeConfig {
    /// `rate × duration` packets, `rate` per second to `target`, open
    /// loop: about `duration`. The time limit is half as long again plus a
    /// second, so that a scheduling pause near the end does not cost the
    /// last packets: the count is what callers rely on.
    pub fn steady(target: SocketAddr, rate: u32, duration: Duration) -> Self {
        ProbeConfig {
            target,
            rate,
            window: None,
            window_wait: Duration::from_millis(200),
            first_seq: 0,
            count: (u64::from(rate) as f64 * duration.as_secs_f64()).ceil() as u64,
            duration: duration + duration / 2 + Duration::from_secs(1),
        }
    }
}

/// One answer as the probe saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    pub seq: u64,
    /// The event number and mug the ship reported (0 for an echo).
    pub num: u64,
    pub mug: u32,
    pub sent: Instant,
    pub received: Instant,
}

impl Answered {
    pub fn rtt(&self) -> Duration {
        self.received.saturating_duration_since(self.sent)
    }
}

#[derive(Debug, Default)]
struct State {
    first_seq: u64,
    /// When request `first_seq + i` left, by `i`.
    sent: Vec<Instant>,
    /// First answer per request, in arrival order.
    answers: Vec<Answered>,
    answered: Vec<bool>,
    /// Answers to a request that already had one.
    duplicates: Vec<Answered>,
    /// Datagrams that were no answer to any request sent.
    unknown: u64,
    done_sending: bool,
}

/// A running probe; [`Probe::stop`] or dropping it ends both threads.
pub struct Probe {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
    /// When the sender stops at the latest.
    sends_until: Instant,
    local: SocketAddr,
}

impl Probe {
    /// Starts sending from a socket made by `bind` (for example inside a
    /// namespace: `|| ns.run(|| UdpSocket::bind(addr))`).
    pub fn start(config: ProbeConfig, socket: UdpSocket) -> std::io::Result<Probe> {
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let local = socket.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            first_seq: config.first_seq,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let tx = socket.try_clone()?;
        let started = Instant::now();
        let sends_until = started + config.duration;
        let sender = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("probe-send".into())
                .spawn(move || send_loop(&config, &tx, &state, &stop))?
        };
        let receiver = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("probe-recv".into())
                .spawn(move || recv_loop(&socket, &state, &stop))?
        };
        Ok(Probe {
            state,
            stop,
            threads: vec![sender, receiver],
            started,
            sends_until,
            local,
        })
    }

    /// The address answers come back to (the lane the ship sees).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits until the sender is done and every request is answered, or
    /// `linger` passed since the sender finished.
    pub fn wait(&self, linger: Duration) {
        let poll = Duration::from_millis(20);
        // The sender stops by itself by `sends_until`, with a moment to be
        // scheduled.
        let sent = wait::every(poll, self.sends_until + poll * 5, "the sender", || {
            self.state.lock().unwrap().done_sending
        });
        if sent.is_ok() {
            let _ = wait::every(poll, linger, "every answer", || {
                let s = self.state.lock().unwrap();
                s.answers.len() == s.sent.len()
            });
        }
    }

    /// The first request's sequence number.
    pub fn first_seq(&self) -> u64 {
        self.state.lock().unwrap().first_seq
    }

    /// When the first answer to a request sent at or after `after` arrived,
    /// if one has (without copying the history: answers arrive in order, so
    /// only the recent end is read).
    pub fn answered_since(&self, after: Instant) -> Option<Instant> {
        let s = self.state.lock().unwrap();
        s.answers
            .iter()
            .rev()
            .take_while(|a| a.received >= after)
            .filter(|a| a.sent >= after)
            .map(|a| a.received)
            .min()
    }

    /// Everything so far.
    pub fn report(&self) -> ProbeReport {
        let s = self.state.lock().unwrap();
        ProbeReport {
            first_seq: s.first_seq,
            sent: s.sent.clone(),
            answers: s.answers.clone(),
            duplicates: s.duplicates.clone(),
            unknown: s.unknown,
            elapsed: self.started.elapsed(),
        }
    }

    /// [`ProbeReport::to_json`] of everything so far, without copying the
    /// whole history (a long-running peer rewrites this twice a second).
    pub fn to_json(&self, target: SocketAddr) -> String {
        let s = self.state.lock().unwrap();
        let since = Instant::now().checked_sub(Duration::from_secs(10));
        let recent = s
            .answers
            .iter()
            .rev()
            .take_while(|a| since.is_none_or(|t| a.received >= t));
        let summary = ProbeReport {
            first_seq: s.first_seq,
            sent: Vec::new(),
            answers: recent.copied().collect(),
            duplicates: Vec::new(),
            unknown: s.unknown,
            elapsed: self.started.elapsed(),
        };
        summary.json_with_counts(
            target,
            s.sent.len(),
            s.answers.len(),
            s.duplicates.len(),
            s.answers.iter().map(|a| a.num).max().unwrap_or(0),
        )
    }

    /// Stops both threads and returns the final report.
    pub fn stop(mut self) -> ProbeReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.halt();
    }
}

fn send_loop(config: &ProbeConfig, socket: &UdpSocket, state: &Mutex<State>, stop: &AtomicBool) {
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    let mut i = 0u64;
    while i < config.count && start.elapsed() < config.duration && !stop.load(Ordering::Relaxed) {
        // Open loop: request `seq` leaves at start + seq × gap, whatever
        // happened to earlier ones (a late thread catches up in a burst).
        let due = start + gap.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if let Some(window) = config.window {
            let waited = Instant::now();
            while waited.elapsed() < config.window_wait && !stop.load(Ordering::Relaxed) {
                let s = state.lock().unwrap();
                if (s.sent.len() - s.answers.len()) < window as usize {
                    break;
                }
                drop(s);
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let packet = request(config.first_seq + i);
        {
            let mut s = state.lock().unwrap();
            s.sent.push(Instant::now());
            s.answered.push(false);
        }
        // A full send queue is a lost packet like any other.
        let _ = socket.send_to(&packet, config.target);
        i += 1;
    }
    state.lock().unwrap().done_sending = true;
}

fn recv_loop(socket: &UdpSocket, state: &Mutex<State>, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let received = Instant::now();
        let mut s = state.lock().unwrap();
        let (seq, num, mug) = match decode_reply(&buf[..n]) {
            Some(Reply::Answer { seq, num, mug }) => (seq, num, mug),
            Some(Reply::Echo { seq }) => (seq, 0, 0),
            None => {
                s.unknown += 1;
                continue;
            }
        };
        let index = seq
            .checked_sub(s.first_seq)
            .and_then(|i| usize::try_from(i).ok());
        let Some((i, &sent)) = index.and_then(|i| Some((i, s.sent.get(i)?))) else {
            s.unknown += 1;
            continue;
        };
        let a = Answered {
            seq,
            num,
            mug,
            sent,
            received,
        };
        if s.answered[i] {
            s.duplicates.push(a);
        } else {
            s.answered[i] = true;
            s.answers.push(a);
        }
    }
}

/// What a probe saw.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The first request's sequence number.
    pub first_seq: u64,
    /// When each request left, by sequence number minus `first_seq`.
    pub sent: Vec<Instant>,
    /// The first answer to each answered request, in arrival order.
    pub answers: Vec<Answered>,
    /// Further answers to requests already answered.
    pub duplicates: Vec<Answered>,
    /// Datagrams that matched no request.
    pub unknown: u64,
    pub elapsed: Duration,
}

impl ProbeReport {
    /// Answered requests over sent ones (1 when nothing was sent).
    pub fn answered_ratio(&self) -> f64 {
        if self.sent.is_empty() {
            1.0
        } else {
            self.answers.len() as f64 / self.sent.len() as f64
        }
    }

    /// Whether this probe sent request `seq`.
    pub fn sent_seq(&self, seq: u64) -> bool {
        seq.checked_sub(self.first_seq)
            .is_some_and(|i| i < self.sent.len() as u64)
    }

    /// When request `seq` left, if this probe sent it.
    pub fn sent_at(&self, seq: u64) -> Option<Instant> {
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.sent.get(i).copied()
    }

    /// Sequence numbers never answered.
    pub fn unanswered(&self) -> Vec<u64> {
        let mut seen = vec![false; self.sent.len()];
        for a in &self.answers {
            seen[(a.seq - self.first_seq) as usize] = true;
        }
        (0..self.sent.len())
            .filter(|&i| !seen[i])
            .map(|i| self.first_seq + i as u64)
            .collect()
    }

    /// The requests sent between `from` and `until` (inclusive): how many,
    /// and which of them have no answer.
    pub fn unanswered_between(&self, from: Instant, until: Instant) -> (usize, Vec<u64>) {
        let within = |t: &Instant| (from..=until).contains(t);
        let sent = self.sent.iter().filter(|t| within(t)).count();
        let unanswered = self
            .unanswered()
            .into_iter()
            .filter(|&s| self.sent_at(s).is_some_and(|t| within(&t)))
            .collect();
        (sent, unanswered)
    }

    /// The `q` quantile (0 to 1) of the round-trip times of the answers
    /// received within `recent` of now (all with `None`).
    pub fn rtt_quantile(&self, q: f64, recent: Option<Duration>) -> Option<Duration> {
        let now = Instant::now();
        let mut rtts: Vec<Duration> = self
            .answers
            .iter()
            .filter(|a| recent.is_none_or(|r| now.duration_since(a.received) <= r))
            .map(Answered::rtt)
            .collect();
        quantile(&mut rtts, q)
    }

    /// A small JSON object for `seguro status --probe FILE`: counts, the
    /// answered ratio and round-trip times of the last 10 s.
    pub fn to_json(&self, target: SocketAddr) -> String {
        self.json_with_counts(
            target,
            self.sent.len(),
            self.answers.len(),
            self.duplicates.len(),
            self.answers.iter().map(|a| a.num).max().unwrap_or(0),
        )
    }

    fn json_with_counts(
        &self,
        target: SocketAddr,
        sent: usize,
        answered: usize,
        duplicates: usize,
        last_event: u64,
    ) -> String {
        let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3);
        let window = Some(Duration::from_secs(10));
        let updated = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let stats = telemetry::ProbeStats {
            target: Some(target.to_string()),
            sent: sent as u64,
            answered: answered as u64,
            duplicates: duplicates as u64,
            unknown: Some(self.unknown),
            answered_ratio: if sent == 0 {
                1.0
            } else {
                answered as f64 / sent as f64
            },
            rtt_p50_ms: ms(self.rtt_quantile(0.5, window)),
            rtt_p99_ms: ms(self.rtt_quantile(0.99, window)),
            last_event: Some(last_event),
            updated_unix_ms: Some(updated),
        };
        let mut json = serde_json::to_string(&stats).expect("probe stats serialize");
        json.push('\n');
        json
    }
}

/// The `q` quantile of `values` (sorted in place); `None` if empty.
pub fn quantile(values: &mut [Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let i = ((values.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(values[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_ames_and_name_their_sequence() {
        let p = request(42);
        assert!(matches!(ames::parse(&p), Ok(ames::Datagram::Ames(_))));
        assert_eq!(request_seq(&p), Some(42));
        assert_eq!(decode_reply(&p), Some(Reply::Echo { seq: 42 }));
    }

    #[test]
    fn decodes_a_reference_answer() {
        let mut content = 7u64.to_be_bytes().to_vec();
        content.extend_from_slice(&0xabcd_u32.to_be_bytes());
        let answer = Packet {
            prelude: Prelude::new(Ship::from(TARGET_SHIP), Ship::from(MOON_BASE + 9)),
            body: Body::Ames(content),
        }
        .to_bytes();
        assert_eq!(
            decode_reply(&answer),
            Some(Reply::Answer {
                seq: 9,
                num: 7,
                mug: 0xabcd
            })
        );
        assert_eq!(decode_reply(b"junk"), None);
    }

    #[test]
    fn probes_an_echo_on_loopback() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = echo.local_addr().unwrap();
        echo.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !halt.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    echo.send_to(&buf[..n], from).unwrap();
                    // Every tenth twice: the probe must count duplicates.
                    if request_seq(&buf[..n]).is_some_and(|s| s % 10 == 0) {
                        echo.send_to(&buf[..n], from).unwrap();
                    }
                }
            }
        });
        let config = ProbeConfig::steady(at, 1000, Duration::from_millis(100));
        let probe = Probe::start(config, UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        probe.wait(Duration::from_secs(2));
        let report = probe.stop();
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        assert_eq!(report.sent.len(), 100);
        assert_eq!(report.answers.len(), 100, "{:?}", report.unanswered());
        assert_eq!(report.duplicates.len(), 10);
        assert!(report.rtt_quantile(0.99, None).is_some());
        assert!(report.to_json(at).contains("\"answered\":100"));
        assert!(report.to_json(at).contains("\"duplicates\":10"));
    }
}
