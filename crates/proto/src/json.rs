//! JSON bodies of the HTTP APIs, encoded like Go's `json.Encoder`.
//!
//! Go escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings, writes floats without a trailing
//! `.0` (and with `e-7`/`e+21` exponents outside [1e-6, 1e21)), sorts map keys, and ends each
//! value with a newline. [`to_vec`] reproduces all of it so responses match byte for byte.

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// A `serde_json` formatter that writes what Go's `encoding/json` writes.
#[derive(Default)]
pub struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(go_float(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(w, f64::from(value))
    }
}

/// Go's `strconv.FormatFloat(f, 'f' or 'e', -1, 64)` as `encoding/json` picks it. Non-finite
/// values cannot be encoded in JSON (Go fails the whole response); callers must not pass them,
/// and get `0` if they do.
pub fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return "0".into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust writes `1e-7` / `1e21`; Go writes `1e-07` then trims it to `1e-7`, and `1e+21`.
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else {
        // Rust's Display is the shortest round-trip decimal without an exponent, as Go's 'f', -1.
        format!("{f}")
    }
}

/// Serialises `value` the way Go's `json.NewEncoder(w).Encode(value)` does, trailing newline included.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = Serializer::with_formatter(&mut out, GoFormatter);
    // Our types serialise infallibly (string keys, finite floats).
    if value.serialize(&mut ser).is_err() {
        out.clear();
        out.extend_from_slice(b"null");
    }
    out.push(b'\n');
    out
}

/// `GET /version`. The first six fields are rtcd's, in Go's order; the rest describe this build.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct VersionInfo {
    #[serde(rename = "buildDate")]
    pub build_date: String,
    /// The rtcd/offloader protocol version this build is compatible with, as the plugin checks it.
    #[serde(rename = "buildVersion")]
    pub build_version: String,
    #[serde(rename = "buildHash")]
    pub build_hash: String,
    #[serde(rename = "goVersion")]
    pub go_version: String,
    #[serde(rename = "goOS", skip_serializing_if = "Option::is_none", default)]
    pub go_os: Option<String>,
    #[serde(rename = "goArch", skip_serializing_if = "Option::is_none", default)]
    pub go_arch: Option<String>,
    /// This project's own name and version.
    #[serde(default)]
    pub implementation: String,
    #[serde(rename = "implementationVersion", default)]
    pub implementation_version: String,
    #[serde(rename = "rustVersion", default)]
    pub rust_version: String,
}

/// `GET /system`.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct SystemInfo {
    pub cpu_load: f64,
}

/// rtcd's `SessionConfig`, as `GET /calls/{callID}/sessions[/{sessionID}]` returns it. Go has no
/// JSON tags on it, so the keys are the Go field names; `Props` is a Go map, so its keys are sorted.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SessionConfig {
    #[serde(rename = "GroupID")]
    pub group_id: String,
    #[serde(rename = "CallID")]
    pub call_id: String,
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "SessionID")]
    pub session_id: String,
    #[serde(rename = "Props")]
    pub props: Option<BTreeMap<String, serde_json::Value>>,
}

/// The string-valued envelope of `/register`, `/unregister` and `/login` (and of the offloader's
/// errors): a Go `map[string]string`, so keys come out sorted and `code` is a *string*.
pub fn status_body(code: u16, err: Option<&str>, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut m: BTreeMap<&str, String> = extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    m.insert("code", code.to_string());
    if let Some(e) = err {
        m.insert("error", e.to_owned());
    }
    to_vec(&m)
}
