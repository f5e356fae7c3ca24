//! The decoded view behind `seguro ames decode HEX [--json]`.

use core::fmt::{self, Write};
use std::string::{String, ToString};
use std::vec::Vec;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::classify::{is_mesa, is_stun, prefix_of};
use crate::{
    Body, Checksum, Datagram, HEADER_LEN, Header, Lane, Mesa, MesaKind, Mug, NextHop, Prelude,
    Stun, StunKind, Version, parse,
};

/// One field's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Absent (an unrelayed packet's origin, a response without mapped
    /// address): JSON `null`, displayed `none`.
    Null,
    /// A flag.
    Bool(bool),
    /// An integer. JSON gets a number when it fits in a `u64` and a
    /// decimal string otherwise (only 16-byte comets can exceed it), so
    /// parsers that read numbers as `u64` never lose digits.
    Int(u128),
    /// A 20-bit checksum: a JSON number, displayed as `0x%05x` like vere's
    /// logs.
    Checksum(Checksum),
    /// Text: names, paths, lanes, hex.
    Text(String),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_none(),
            Value::Bool(flag) => serializer.serialize_bool(*flag),
            Value::Int(n) => match u64::try_from(*n) {
                Ok(small) => serializer.serialize_u64(small),
                Err(_) => serializer.collect_str(n),
            },
            Value::Checksum(checksum) => serializer.serialize_u32(checksum.get()),
            Value::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("none"),
            Value::Bool(flag) => flag.fmt(f),
            Value::Int(n) => n.fmt(f),
            Value::Checksum(checksum) => checksum.fmt(f),
            Value::Text(text) => f.write_str(text),
        }
    }
}

macro_rules! value_from_int {
    ($($int:ty),*) => {$(
        impl From<$int> for Value {
            fn from(n: $int) -> Value {
                Value::Int(n.into())
            }
        }
    )*};
}
value_from_int!(u8, u16, u32, u64, u128);

impl From<bool> for Value {
    fn from(flag: bool) -> Value {
        Value::Bool(flag)
    }
}

impl From<Checksum> for Value {
    fn from(checksum: Checksum) -> Value {
        Value::Checksum(checksum)
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Text(text)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Text(text.into())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

/// A datagram as named fields, in a fixed order, for people and for JSON.
///
/// Every datagram has `class`: `ames`, `fine-request`, `fine-response`,
/// `stun`, `mesa` or `malformed`.
///
/// - Ames-family packets: `version`, `sender_rank` (vere's 2-bit code,
///   0 to 3), `sender_width` (the ship's bytes: 2, 4, 8 or 16),
///   `receiver_rank`, `receiver_width`, `sender`, `sender_p`, `receiver`,
///   `receiver_p`, `sender_tick`, `receiver_tick`, `origin` (`IP:PORT` or
///   null), `mug_header`, `mug_computed` (both 20-bit), `mug_ok`; then
///   `ames`: `content_hex`; `fine-request`: `fragment`, `path`;
///   `fine-response`: `fragment`, `path`, `num_fragments`, `signature_hex`,
///   `data_hex` if the body has the shape vere etches, else `body_hex`
///   (vere injects any body).
/// - `stun`: `stun_type` (`request` or `response`), `transaction_id`
///   (hex), `mapped` (`IP:PORT` or null).
/// - `mesa`: `mesa_type` (`reserved`, `page`, `peek`, `poke`: the type
///   bits), `handled_as` (`page`, `peek`, `poke`: the handler vere's
///   `_mesa_hear` gives it, a poke for `reserved`), `next_hop` (`none`,
///   `short`, `long`, `many`), `hop_count`, `mug_header`, `mug_computed`,
///   `mug_ok`, `body_hex`.
/// - `malformed`: `reason`, a sentence naming the byte offset; then, if
///   the datagram is meant as an Ames-family packet and its header and
///   prelude read, their fields (this is where `mug_ok` can be false).
///
/// Serializes as a JSON object with the fields in this order; displays as
/// one `key: value` line per field (no newline after the last).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    fields: Vec<(&'static str, Value)>,
}

impl Decoded {
    /// The `class` field.
    pub fn class(&self) -> &str {
        match self.get("class") {
            Some(Value::Text(class)) => class,
            _ => "",
        }
    }

    /// Whether vere would drop the datagram (`class` is `malformed`).
    pub fn is_malformed(&self) -> bool {
        self.class() == "malformed"
    }

    /// The value of `key`, if the datagram has that field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value)
    }

    /// All fields, in order.
    pub fn fields(&self) -> &[(&'static str, Value)] {
        &self.fields
    }

    fn push(&mut self, key: &'static str, value: impl Into<Value>) {
        self.fields.push((key, value.into()));
    }

    /// Header and prelude fields, if `bytes` has a version-0 header and a
    /// whole prelude, whatever its checksum.
    fn push_head(&mut self, bytes: &[u8]) {
        let Some(header) = bytes.first_chunk().copied().map(Header::sift) else {
            return;
        };
        if header.version != Version::AMES {
            return;
        }
        let Ok(prelude) = Prelude::sift(&header, bytes) else {
            return;
        };
        let mugged = bytes
            .get(HEADER_LEN + header.origin_len()..)
            .unwrap_or_default();
        let computed = Mug::of(mugged).checksum();
        self.push("version", header.version.get());
        // vere's rank is the 2-bit code (`sac_y`, `rac_y` in
        // `_ames_sift_head`); the ship takes `2 << rank` bytes.
        self.push("sender_rank", header.sender_rank.bits());
        self.push("sender_width", header.sender_rank.width() as u64);
        self.push("receiver_rank", header.receiver_rank.bits());
        self.push("receiver_width", header.receiver_rank.width() as u64);
        self.push("sender", prelude.sender.ship().get());
        self.push("sender_p", prelude.sender.ship().to_string());
        self.push("receiver", prelude.receiver.ship().get());
        self.push("receiver_p", prelude.receiver.ship().to_string());
        self.push("sender_tick", prelude.sender_tick.get());
        self.push("receiver_tick", prelude.receiver_tick.get());
        self.push("origin", prelude.origin.map(|o| Lane::from(o).to_string()));
        self.push_mugs(header.checksum, computed);
    }

    fn push_mugs(&mut self, header: Checksum, computed: Checksum) {
        self.push("mug_header", header);
        self.push("mug_computed", computed);
        self.push("mug_ok", header == computed);
    }

    fn push_body(&mut self, body: &Body) {
        match body {
            Body::Ames(content) => self.push("content_hex", hex(content)),
            Body::FineRequest(peep) => {
                self.push("fragment", peep.fragment);
                self.push("path", peep.path.as_str());
            }
            Body::FineResponse(purr) => {
                self.push("fragment", purr.peep.fragment);
                self.push("path", purr.peep.path.as_str());
                self.push("num_fragments", purr.meow.num_fragments);
                self.push("signature_hex", hex(&purr.meow.signature));
                self.push("data_hex", hex(&purr.meow.data));
            }
            Body::OpaqueFineResponse(body) => self.push("body_hex", hex(body)),
        }
    }

    fn push_stun(&mut self, stun: &Stun) {
        let (kind, mapped) = match stun.kind {
            StunKind::Request => ("request", None),
            StunKind::Response { mapped } => ("response", mapped),
        };
        self.push("stun_type", kind);
        self.push("transaction_id", hex(&stun.transaction_id));
        self.push("mapped", mapped.map(|lane| lane.to_string()));
    }

    fn push_mesa(&mut self, mesa: &Mesa) {
        self.push(
            "mesa_type",
            match mesa.kind {
                MesaKind::Reserved => "reserved",
                MesaKind::Page => "page",
                MesaKind::Peek => "peek",
                MesaKind::Poke => "poke",
            },
        );
        self.push(
            "handled_as",
            match mesa.handled_as() {
                MesaKind::Page => "page",
                MesaKind::Peek => "peek",
                MesaKind::Reserved | MesaKind::Poke => "poke",
            },
        );
        self.push(
            "next_hop",
            match mesa.next_hop {
                NextHop::None => "none",
                NextHop::Short => "short",
                NextHop::Long => "long",
                NextHop::Many => "many",
            },
        );
        self.push("hop_count", mesa.hop_count);
        // Parsing succeeded, so the checksum matched what vere mugs.
        self.push_mugs(mesa.checksum, mesa.checksum);
        self.push("body_hex", hex(&mesa.body));
    }
}

impl Serialize for Decoded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, value) in &self.fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl fmt::Display for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (key, value)) in self.fields.iter().enumerate() {
            if index > 0 {
                f.write_char('\n')?;
            }
            write!(f, "{key}: {value}")?;
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Decodes a UDP payload for display: what [`parse`] makes of it, or why it
/// fails.
pub fn decode(bytes: &[u8]) -> Decoded {
    let mut decoded = Decoded::default();
    match parse(bytes) {
        Ok(datagram) => {
            decoded.push("class", datagram.class().name());
            match &datagram {
                Datagram::Ames(packet) => {
                    decoded.push_head(bytes);
                    decoded.push_body(&packet.body);
                }
                Datagram::Stun(stun) => decoded.push_stun(stun),
                Datagram::Mesa(mesa) => decoded.push_mesa(mesa),
            }
        }
        Err(error) => {
            decoded.push("class", "malformed");
            decoded.push("reason", error.to_string());
            let prefix = prefix_of(bytes);
            if !is_mesa(&prefix, bytes.len()) && !is_stun(&prefix, bytes.len()) {
                decoded.push_head(bytes);
            }
        }
    }
    decoded
}
