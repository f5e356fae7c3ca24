//! Needs root (CAP_NET_RAW), as CI runs: what the raw sender writes is
//! received on loopback by ordinary UDP sockets, whose kernel verifies the
//! UDP checksum of a packet that came from a raw socket.

use std::time::Duration;

use super::*;
use crate::RecvBatch;

fn receiver(addr: &str) -> BatchSocket {
    BatchSocket::bind(addr.parse().unwrap(), SocketOptions::default()).unwrap()
}

fn sender(family: Family) -> Sender {
    Sender::register(socket(family, 1 << 20).expect("a raw socket: run as root")).unwrap()
}

/// Everything `socket` receives until nothing came for `quiet`.
async fn drain(socket: &BatchSocket, quiet: Duration) -> Vec<(Option<SocketAddr>, Vec<u8>)> {
    let mut batch = RecvBatch::new();
    let mut got = Vec::new();
    while let Ok(r) = tokio::time::timeout(quiet, socket.recv(&mut batch)).await {
        r.unwrap();
        got.extend(batch.iter().map(|d| (d.source, d.data.to_vec())));
    }
    got
}

fn outgoing<'a>(from: SocketAddr, to: SocketAddr, payload: &'a [u8]) -> Outgoing<'a> {
    Outgoing {
        from,
        to,
        payload,
        sum: PayloadSum::of(payload),
    }
}

#[tokio::test]
async fn the_kernel_accepts_the_checksums_and_sees_the_written_source() {
    // The source is written, not bound: nothing listens on it.
    for (family, at, from) in [
        (Family::V4, "127.0.0.1:0", "127.0.0.9:5555"),
        (Family::V6, "[::1]:0", "[::1]:5555"),
    ] {
        let rx = receiver(at);
        let to = rx.local_addr().unwrap();
        let from: SocketAddr = from.parse().unwrap();
        let payloads: Vec<Vec<u8>> = [0usize, 1, 7, 8, 9, 63, 1400, 1401, 9000]
            .iter()
            .map(|&len| (0..len).map(|i| (i * 37 + 11) as u8).collect())
            .collect();
        // One datagram with a checksum that is off by one: the kernel must
        // drop it, or this test would prove nothing.
        let mut corrupt = outgoing(from, to, b"corrupt");
        corrupt.sum = PayloadSum::of(b"corrupu");
        let mut datagrams = vec![corrupt];
        datagrams.extend(payloads.iter().map(|p| outgoing(from, to, p)));

        let mut tx = sender(family);
        let mut outcome = Vec::new();
        let sent = tx.send(&datagrams, &mut outcome).await.unwrap();
        assert_eq!(sent.sent, datagrams.len(), "{family:?}");
        let got = drain(&rx, Duration::from_millis(500)).await;
        let want: Vec<_> = payloads.iter().map(|p| (Some(from), p.clone())).collect();
        assert!(
            got == want,
            "{family:?}: got {} datagrams, wanted the {} with good checksums",
            got.len(),
            want.len()
        );
    }
}

#[tokio::test]
async fn a_datagram_that_cannot_be_written_is_refused_in_its_place() {
    let rx = receiver("127.0.0.1:0");
    let to = rx.local_addr().unwrap();
    let from: SocketAddr = "127.0.0.9:5555".parse().unwrap();
    let v6: SocketAddr = "[::1]:5555".parse().unwrap();
    let too_long = vec![0u8; 65535 - 27];
    let datagrams = [
        outgoing(from, to, b"one"),
        // A source, then a destination, of the other family.
        outgoing(v6, to, b"x"),
        outgoing(from, v6, b"y"),
        outgoing(from, to, &too_long),
        outgoing(from, to, b"two"),
    ];
    let mut tx = sender(Family::V4);
    let mut outcome = vec![true; 9];
    let sent = tx.send(&datagrams, &mut outcome).await.unwrap();
    assert_eq!(sent, Sent { sent: 2, failed: 3 });
    assert_eq!(outcome, [true, false, false, false, true]);
    let got = drain(&rx, Duration::from_millis(300)).await;
    let data: Vec<Vec<u8>> = got.into_iter().map(|(_, d)| d).collect();
    assert_eq!(data, [b"one".to_vec(), b"two".to_vec()]);
}

/// An IPv6 IPPROTO_RAW socket is handed every packet whose next header is
/// 255: the sender's keeps none of them (on loopback, our own packet).
#[test]
fn a_raw_socket_keeps_nothing_it_is_handed() {
    let ours = socket(Family::V6, 0).expect("a raw socket: run as root");
    let mut probe = [0u8; 40 + 4];
    probe[0] = 0x60;
    probe[4..6].copy_from_slice(&4u16.to_be_bytes());
    probe[6] = 255; // next header: IPPROTO_RAW
    probe[7] = 64;
    let lo = std::net::Ipv6Addr::LOCALHOST.octets();
    probe[8..24].copy_from_slice(&lo);
    probe[24..40].copy_from_slice(&lo);
    let to: SocketAddr = "[::1]:0".parse().unwrap();
    // A second socket, unfiltered, sees the probe: it did arrive.
    let witness = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(nix::libc::IPPROTO_RAW)),
    )
    .unwrap();
    witness
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    witness.send_to(&probe, &to.into()).unwrap();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 128];
    assert!(
        witness.recv(&mut buf).is_ok(),
        "an unfiltered socket gets the probe"
    );
    assert!(
        matches!(ours.recv(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the sender's socket kept nothing"
    );
}
