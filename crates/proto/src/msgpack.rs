//! Tolerant msgpack reading and Go-compatible writing helpers.
//!
//! The Go side (vmihailenco/msgpack v5) writes the most compact int, fixstr/str8/16/32 for
//! strings and bin8/16/32 for byte slices. Peers written in other languages (the JS data-channel
//! codec, test clients) may pick other widths, so readers accept any int width, str or bin where
//! text or bytes are expected, and any map key order.

use rmpv::Value;
use std::io::Cursor;

/// Nesting limit for decoded values: the protocol never nests deeper than 3, and a limit keeps a
/// hostile frame from exhausting the stack.
pub const MAX_DEPTH: usize = 16;

/// Why a msgpack value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    #[error("truncated or malformed msgpack: {0}")]
    Malformed(String),
    #[error("{what}: expected {expected}, got {got}")]
    Type {
        what: &'static str,
        expected: &'static str,
        got: &'static str,
    },
}

/// Reads values one after another from a byte slice.
pub struct Reader<'a> {
    cur: Cursor<&'a [u8]>,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            cur: Cursor::new(buf),
        }
    }

    /// Reads the next value; fails on truncated or malformed input.
    pub fn value(&mut self) -> Result<Value, MsgpackError> {
        rmpv::decode::read_value_with_max_depth(&mut self.cur, MAX_DEPTH)
            .map_err(|e| MsgpackError::Malformed(e.to_string()))
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.cur.position() as usize >= self.cur.get_ref().len()
    }
}

/// A short name of a value's msgpack kind, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "int",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "str",
        Value::Binary(_) => "bin",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "ext",
    }
}

/// Text from a str or bin value (as Go's `DecodeString` accepts both); `nil` is the empty string.
/// Invalid UTF-8 is replaced rather than rejected: IDs are compared as opaque strings.
pub fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Nil => Some(String::new()),
        Value::String(s) => Some(match s.as_str() {
            Some(s) => s.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// Bytes from a bin or str value; `nil` is empty.
pub fn as_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Nil => Some(Vec::new()),
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Binary(b) => Some(b.clone()),
        _ => None,
    }
}

/// An integer of any width and signedness.
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => i.as_i64().or_else(|| i.as_u64().map(|u| u as i64)),
        _ => None,
    }
}

/// A float, also accepting integers (the JS encoder writes integral floats as ints).
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::F64(f) => Some(*f),
        Value::F32(f) => Some(f64::from(*f)),
        Value::Integer(i) => i.as_f64(),
        _ => None,
    }
}

/// Iterates a map's entries whose keys are text, skipping others.
pub fn text_entries(v: &Value) -> Option<impl Iterator<Item = (String, &Value)>> {
    match v {
        Value::Map(entries) => Some(entries.iter().filter_map(|(k, v)| match k {
            Value::String(_) | Value::Binary(_) => as_text(k).map(|k| (k, v)),
            _ => None,
        })),
        _ => None,
    }
}

/// Writers that produce exactly the bytes vmihailenco/msgpack produces for the same Go values.
pub mod write {
    // Writing into a Vec cannot fail, so the io results are discarded.
    pub fn str(buf: &mut Vec<u8>, s: &str) {
        let _ = rmp::encode::write_str(buf, s);
    }
    pub fn bin(buf: &mut Vec<u8>, b: &[u8]) {
        let _ = rmp::encode::write_bin(buf, b);
    }
    pub fn map_len(buf: &mut Vec<u8>, n: u32) {
        let _ = rmp::encode::write_map_len(buf, n);
    }
    pub fn bool(buf: &mut Vec<u8>, b: bool) {
        let _ = rmp::encode::write_bool(buf, b);
    }
    pub fn nil(buf: &mut Vec<u8>) {
        let _ = rmp::encode::write_nil(buf);
    }
    /// Most compact encoding, as Go writes `int`-kind values.
    pub fn int(buf: &mut Vec<u8>, i: i64) {
        let _ = rmp::encode::write_sint(buf, i);
    }
    /// `uint8` with its explicit marker (`cc NN`), as Go writes a `uint8`-typed value.
    pub fn u8_marked(buf: &mut Vec<u8>, v: u8) {
        let _ = rmp::encode::write_u8(buf, v);
    }
    pub fn f64(buf: &mut Vec<u8>, v: f64) {
        let _ = rmp::encode::write_f64(buf, v);
    }
}
