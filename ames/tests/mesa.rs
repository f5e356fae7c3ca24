//! Mesa packets are sifted as vere's `pkg/vere/io/mesa/pact.c` sifts them
//! (`mesa_sift_pact_from_buf`), and dispatched as `_mesa_hear` in
//! `io/mesa.c` dispatches them.

mod common;

use common::*;
use seguro_ames::{Class, Datagram, Field, MesaKind, ParseError, classify_slice, parse};

fn accepted(bytes: &[u8]) -> bool {
    matches!(parse(bytes), Ok(Datagram::Mesa(_)))
}

#[test]
fn well_formed_packets_of_each_type_parse() {
    for (what, bytes) in samples() {
        assert!(accepted(&bytes), "{what}: {:?}", parse(&bytes));
        assert_eq!(classify_slice(&bytes), Class::Mesa, "{what}");
    }
}

/// `_mesa_sift_page_pact` fails on HOP_LONG and HOP_MANY; peeks and pokes
/// read no next hop at all, so their next-hop bits are not checked.
#[test]
fn pages_take_only_none_or_short_next_hops() {
    let name = Name::simple("/a");
    let data = Data::simple(b"x");
    for hop in [HOP_LONG, HOP_MANY] {
        // However the hop would be written: a length-prefixed lane, a count
        // of them, or nothing at all.
        for written in [&[][..], &[6, 1, 2, 3, 4, 5, 6][..], &[1, 2, 9, 9][..]] {
            let page = pact(PAGE, hop, &page_body(&name, &data, written));
            assert_eq!(
                parse(&page),
                Err(ParseError::MesaPageHop {
                    many: hop == HOP_MANY
                }),
                "page with hop {hop} {written:?}"
            );
        }
        assert!(accepted(&pact(PEEK, hop, &peek_body(&name))));
        let poke = poke_body(&name, &name, &data);
        assert!(accepted(&pact(POKE, hop, &poke)));
    }
}

/// Cut a well-formed packet anywhere inside its body and give it the
/// checksum of what is left: `_sift_next` fails ("unexpected eof").
#[test]
fn bodies_that_end_early_are_rejected() {
    for (what, bytes) in samples() {
        for cut in 8..bytes.len() {
            let body = &bytes[8..cut];
            let kind = u32::from(bytes[0] >> 7) | (u32::from(bytes[1] & 1) << 1);
            let next_hop = u32::from(bytes[0] >> 2) & 0b11;
            let short = pact(kind, next_hop, body);
            let error = parse(&short).unwrap_err();
            assert!(
                matches!(error, ParseError::Truncated { end, len, .. } if end > len && len == cut),
                "{what} cut at {cut}: {error}"
            );
            assert!(!error.is_shallow(), "classify does not read mesa bodies");
        }
    }
}

/// `mesa_sift_pact_from_buf` fails on bytes left after the packet; the
/// checksum covers only what was sifted (`_mesa_sift_pact`).
#[test]
fn trailing_bytes_are_rejected() {
    for (what, bytes) in samples() {
        let mut long = bytes.clone();
        long.push(0);
        let len = bytes.len();
        assert_eq!(
            parse(&long),
            Err(ParseError::TrailingBytes {
                end: len,
                len: len + 1
            }),
            "{what} + 1 byte, checksum over the packet"
        );
        // Checksum over everything, trailing byte included: the mug of what
        // vere read does not match.
        let kind = u32::from(bytes[0] >> 7) | (u32::from(bytes[1] & 1) << 1);
        let next_hop = u32::from(bytes[0] >> 2) & 0b11;
        let mut body = bytes[8..].to_vec();
        body.push(0);
        assert!(
            matches!(
                parse(&pact(kind, next_hop, &body)),
                Err(ParseError::MugMismatch { start: 8, len: end, .. }) if end == len
            ),
            "{what} re-mugged"
        );
    }
}

/// `_mesa_sift_data` reads a length of up to 4 bytes ("var_word too long").
#[test]
fn fragment_lengths_over_four_bytes_are_rejected() {
    let name = Name::simple("/a");
    for width in 0..=6u8 {
        let data = Data {
            len_width: width,
            len_byte: true,
            fragment: if width == 0 { vec![] } else { vec![7] },
            ..Data::simple(b"")
        };
        let page = pact(PAGE, HOP_NONE, &page_body(&name, &data, &[]));
        assert_eq!(accepted(&page), width <= 4, "width {width}");
        if width > 4 {
            // Header, name (10 bytes), data meta, total, signature: then
            // the width byte.
            let at = 8 + 10 + 1 + 1 + 64;
            assert_eq!(
                parse(&page),
                Err(ParseError::MesaLengthWidth { width, at }),
                "{}",
                parse(&page).unwrap_err()
            );
        }
    }
}

/// `_mesa_sift_name` asserts that an init name has neither the auth bit
/// nor a fragment-number width: vere (built without NDEBUG) aborts on one,
/// so it must never reach the ship.
#[test]
fn init_names_with_auth_or_fragment_width_are_rejected() {
    for (auth, fragment_code, ok) in [(false, 0, true), (true, 0, false), (false, 2, false)] {
        let name = Name {
            init: true,
            auth,
            fragment_code,
            ..Name::simple("/a")
        };
        let peek = pact(PEEK, HOP_NONE, &peek_body(&name));
        let want = if ok {
            Ok(())
        } else {
            Err(ParseError::MesaInitName { at: 8 })
        };
        assert_eq!(
            parse(&peek).map(drop),
            want,
            "auth {auth} code {fragment_code}"
        );
    }
}

/// Every width vere's sifter reads, in every combination that matters.
#[test]
fn every_width_parses() {
    for rank in 0..4 {
        for rift_code in 0..4 {
            for fragment_code in 0..4 {
                for auth in Auth::ALL {
                    for total_code in 0..4 {
                        let name = Name {
                            rank,
                            ship: u128::MAX,
                            rift_code,
                            rift: u32::MAX,
                            fragment_code,
                            fragment: u64::MAX,
                            ..Name::simple("/w")
                        };
                        let data = Data {
                            total_code,
                            total: u64::MAX,
                            auth,
                            ..Data::simple(b"data")
                        };
                        let bytes = pact(PAGE, HOP_SHORT, &page_body(&name, &data, &[0; 6]));
                        assert!(accepted(&bytes), "{name:?} {data:?}: {:?}", parse(&bytes));
                    }
                }
            }
        }
    }
}

/// Type 0 (`PACT_RESV`): `_mesa_sift_pact` reads no body for it, so only
/// the 8-byte header with the checksum of nothing passes; `_mesa_hear`'s
/// `default:` branch then hands it to `_mesa_hear_poke`.
#[test]
fn reserved_type_is_handled_as_a_poke() {
    let bare = head(0, HOP_NONE, 0, &[]);
    let Ok(Datagram::Mesa(mesa)) = parse(&bare) else {
        panic!("{:?}", parse(&bare));
    };
    assert_eq!(mesa.kind, MesaKind::Reserved);
    assert_eq!(mesa.handled_as(), MesaKind::Poke);
    let mut longer = bare.clone();
    longer.push(1);
    assert_eq!(
        parse(&longer),
        Err(ParseError::TrailingBytes { end: 8, len: 9 })
    );
}

/// Each truncation error names the field the packet ended in.
#[test]
fn truncation_names_the_field() {
    let name = Name::simple("/a");
    let page = pact(
        PAGE,
        HOP_SHORT,
        &page_body(&name, &Data::simple(b"xy"), &[1, 2, 3, 4, 5, 6]),
    );
    let fields = [
        (8, Field::MesaNameMeta),
        (9, Field::MesaShip),
        (11, Field::MesaRift),
        (12, Field::MesaBloq),
        (13, Field::MesaFragmentNumber),
        (14, Field::MesaPathLength),
        (16, Field::MesaPath),
        (18, Field::MesaDataMeta),
        (19, Field::MesaTotal),
        (20, Field::MesaAuth),
        (84, Field::MesaFragmentLength),
        (86, Field::MesaFragment),
        (88, Field::MesaNextHop),
    ];
    assert_eq!(page.len(), 94);
    for (cut, field) in fields {
        let short = pact(PAGE, HOP_SHORT, &page[8..cut]);
        let error = parse(&short).unwrap_err();
        assert!(
            matches!(error, ParseError::Truncated { field: f, start, .. } if f == field && start == cut),
            "cut at {cut}: {error}"
        );
    }
    let message = parse(&pact(PAGE, HOP_SHORT, &page[8..90]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "the mesa page's 6-byte next hop needs bytes 88..94, but the packet is only 90 bytes long"
    );
}
