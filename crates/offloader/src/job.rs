//! The job model of spec §2: request and record shapes (Go's field order), validation with the
//! Go service's exact messages, runner image naming, and the `input_data` → environment rules.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const JOB_TYPE_RECORDING: &str = "recording";
pub const JOB_TYPE_TRANSCRIBING: &str = "transcribing";

/// A job request (`POST /jobs` body). Field order is Go's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobConfig {
    #[serde(rename = "type", default)]
    pub job_type: String,
    #[serde(default)]
    pub max_duration_sec: i64,
    #[serde(default)]
    pub runner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_data: Option<Map<String, Value>>,
}

/// A job record (API response and store value): the config flattened, then Go's extra fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Job {
    #[serde(flatten)]
    pub config: JobConfig,
    pub id: String,
    #[serde(default)]
    pub start_at: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stop_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_data: Option<Map<String, Value>>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The environment of a job container: one `KEY=value` per `input_data` entry, the key upper-cased
/// and the value formatted as Go's `%v` of the decoded JSON value (spec §3 "Env formatting").
/// Keys are sorted so the order is stable (Go's is random; nothing can depend on it).
pub fn env_pairs(input: Option<&Map<String, Value>>, dev_mode: bool) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = input
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_uppercase(), go_format(v)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    if dev_mode {
        out.push(("DEV_MODE".into(), "true".into()));
    }
    out
}

/// Go's `fmt.Sprintf("%v", v)` for a value decoded by `encoding/json` into `interface{}`.
pub fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => go_format_float(n.as_f64().unwrap_or(0.0)),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(go_format).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(m) => {
            // Go prints maps with sorted keys.
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_format(&m[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%v` for a float64: `strconv.FormatFloat(f, 'g', -1, 64)` with `%e` style exponents
/// (`1e+06`, `1.5e-07`), plain digits when the exponent is in [-4, 21).
pub fn go_format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Shortest round-trip digits, as Go's -1 precision; Go's %g then picks the exponent form
    // when the decimal exponent is < -4 or >= 6 (strconv's `eprec = 6` for shortest).
    let sci = format!("{f:e}"); // e.g. "1.2345e6", "-5e-7"
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_format_float(1280.0), "1280");
        assert_eq!(go_format_float(10000.0), "10000");
        assert_eq!(go_format_float(1.5), "1.5");
        assert_eq!(go_format_float(-3.0), "-3");
        assert_eq!(go_format_float(999999.0), "999999");
        assert_eq!(go_format_float(1e6), "1e+06");
        assert_eq!(go_format_float(123456789.0), "1.23456789e+08");
        assert_eq!(go_format_float(1e21), "1e+21");
        assert_eq!(go_format_float(0.0001), "0.0001");
        assert_eq!(go_format_float(0.00001), "1e-05");
    }
}
