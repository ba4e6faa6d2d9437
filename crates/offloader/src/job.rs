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

/// The image-name prefix of each job type (volume names, Kubernetes Job names, DEV_MODE images).
pub const RECORDING_JOB_PREFIX: &str = "calls-recorder";
pub const TRANSCRIBING_JOB_PREFIX: &str = "calls-transcriber";
pub const MIN_SUPPORTED_RECORDER_VERSION: (u64, u64, u64) = (0, 6, 0);
pub const MIN_SUPPORTED_TRANSCRIBER_VERSION: (u64, u64, u64) = (0, 1, 0);

/// `POST /jobs/init` body. Go's field has no JSON tag, so the wire key is `Runners` (matched
/// case-insensitively on decode, like every key here).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfig {
    #[serde(rename = "Runners")]
    pub runners: Vec<String>,
}

/// The prefix for a (valid) job type; `None` for anything else.
pub fn job_prefix(job_type: &str) -> Option<&'static str> {
    match job_type {
        JOB_TYPE_RECORDING => Some(RECORDING_JOB_PREFIX),
        JOB_TYPE_TRANSCRIBING => Some(TRANSCRIBING_JOB_PREFIX),
        _ => None,
    }
}

/// How runner images are checked. `DEV_MODE=true` or `TEST_MODE=true` skip the check entirely,
/// as in Go (even an empty runner passes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunnerCheck {
    Enforce,
    Skip,
}

/// Go's `RunnerIsValid`: `<registry>/calls-recorder:vX.Y.Z[-devN]` (or `calls-transcriber`), with
/// the registry pasted into the pattern *unescaped* (so a `.` in it matches any character, as in
/// Go; a registry that is not a valid pattern matches nothing instead of crashing), and a minimum
/// version per image. Digests never match.
pub fn runner_is_valid(runner: &str, registry: &str, check: RunnerCheck) -> Result<(), String> {
    if check == RunnerCheck::Skip {
        return Ok(());
    }
    if runner.is_empty() {
        return Err("runner should not be empty".into());
    }
    if registry.is_empty() {
        return Err("registry should not be empty".into());
    }
    let num = "(?:0|[1-9][0-9]*)";
    for (prefix, min) in [
        (RECORDING_JOB_PREFIX, MIN_SUPPORTED_RECORDER_VERSION),
        (TRANSCRIBING_JOB_PREFIX, MIN_SUPPORTED_TRANSCRIBER_VERSION),
    ] {
        let pattern = format!("^{registry}/{prefix}:v({num}\\.{num}\\.{num})(?:-dev[0-9]*)?$");
        let Ok(re) = regex::Regex::new(&pattern) else {
            continue;
        };
        if let Some(version) = re.captures(runner).and_then(|c| c.get(1)) {
            return check_min_version(min, version.as_str());
        }
    }
    Err(format!("failed to validate runner {}", go_quote(runner)))
}

fn check_min_version(min: (u64, u64, u64), actual: &str) -> Result<(), String> {
    let parts: Vec<Option<u64>> = actual.split('.').map(|p| p.parse().ok()).collect();
    let [Some(a), Some(b), Some(c)] = parts[..] else {
        return Err("failed to parse actualVersion: Invalid Semantic Version".into());
    };
    if (a, b, c) < min {
        return Err(format!(
            "actual version ({actual}) is lower than minimum supported version ({}.{}.{})",
            min.0, min.1, min.2
        ));
    }
    Ok(())
}

/// Go's `%q` of a string: double-quoted with Go escapes (printable Unicode kept as is).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl JobConfig {
    /// Go's `Config.IsValid(registry)`: the checks and messages in Go's order (spec §2.2).
    pub fn is_valid(&self, registry: &str, check: RunnerCheck) -> Result<(), String> {
        if self.job_type.is_empty() {
            return Err("invalid Type value: should not be empty".into());
        }
        runner_is_valid(&self.runner, registry, check)
            .map_err(|e| format!("invalid Runner value: {e}"))?;
        if self.max_duration_sec <= 0 {
            return Err("invalid MaxDurationSec value: should be positive".into());
        }
        if job_prefix(&self.job_type).is_none() {
            return Err(format!("invalid Type value: {}", go_quote(&self.job_type)));
        }
        Ok(())
    }
}

impl ServiceConfig {
    /// Go's `ServiceConfig.IsValid(registry)`; runner errors carry no `invalid Runner value:`.
    pub fn is_valid(&self, registry: &str, check: RunnerCheck) -> Result<(), String> {
        if self.runners.is_empty() {
            return Err("invalid empty Runners".into());
        }
        if registry.is_empty() {
            return Err("registry should not be empty".into());
        }
        for r in &self.runners {
            runner_is_valid(r, registry, check)?;
        }
        Ok(())
    }
}

/// Decodes a `POST /jobs` body as Go's `json.Decoder` decodes into `job.Config`: first value
/// only, keys matched case-insensitively (an exact match wins), unknown keys ignored, `null`
/// leaving a field unset, and Go's texts for type mismatches.
pub fn decode_job_config(body: &[u8]) -> Result<JobConfig, String> {
    let v = calls_core::http::first_json_value(body)?;
    let obj = match v {
        Value::Null => return Ok(JobConfig::default()),
        Value::Object(o) => o,
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type job.Config",
                calls_core::http::json_kind(&other)
            ));
        }
    };
    let mut cfg = JobConfig::default();
    let mut first_err: Option<String> = None;
    let field_err = |v: &Value, field: &str, ty: &str| {
        let what = match v {
            Value::Number(n) => format!("number {n}"),
            other => calls_core::http::json_kind(other).to_owned(),
        };
        format!("json: cannot unmarshal {what} into Go struct field Config.{field} of type {ty}")
    };
    for (field, value) in go_fields(&obj, &["type", "max_duration_sec", "runner", "input_data"]) {
        let res = match (field, value) {
            (_, Value::Null) => Ok(()),
            ("type", Value::String(s)) => {
                cfg.job_type = s.clone();
                Ok(())
            }
            ("type", v) => Err(field_err(v, "type", "job.Type")),
            ("max_duration_sec", Value::Number(n)) if n.as_i64().is_some() => {
                cfg.max_duration_sec = n.as_i64().unwrap_or_default();
                Ok(())
            }
            ("max_duration_sec", v) => Err(field_err(v, "max_duration_sec", "int64")),
            ("runner", Value::String(s)) => {
                cfg.runner = s.clone();
                Ok(())
            }
            ("runner", v) => Err(field_err(v, "runner", "string")),
            ("input_data", Value::Object(m)) => {
                cfg.input_data = Some(m.clone());
                Ok(())
            }
            (_, v) => Err(field_err(v, "input_data", "job.InputData")),
        };
        // Go keeps decoding after a type error and reports the first one.
        if let Err(e) = res {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(cfg),
    }
}

/// Decodes a `POST /jobs/init` body as Go decodes into `job.ServiceConfig` (key `Runners`, any
/// case).
pub fn decode_service_config(body: &[u8]) -> Result<ServiceConfig, String> {
    let v = calls_core::http::first_json_value(body)?;
    let obj = match v {
        Value::Null => return Ok(ServiceConfig::default()),
        Value::Object(o) => o,
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type job.ServiceConfig",
                calls_core::http::json_kind(&other)
            ));
        }
    };
    let mut cfg = ServiceConfig::default();
    for (_, value) in go_fields(&obj, &["runners"]) {
        match value {
            Value::Null => {}
            Value::Array(items) => {
                let mut runners = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => runners.push(s.clone()),
                        Value::Null => runners.push(String::new()),
                        other => {
                            return Err(format!(
                                "json: cannot unmarshal {} into Go struct field ServiceConfig.Runners of type string",
                                calls_core::http::json_kind(other)
                            ));
                        }
                    }
                }
                cfg.runners = runners;
            }
            other => {
                return Err(format!(
                    "json: cannot unmarshal {} into Go struct field ServiceConfig.Runners of type []string",
                    calls_core::http::json_kind(other)
                ));
            }
        }
    }
    Ok(cfg)
}

/// The members of `obj` that Go would assign to each of `fields` (lower-case names): an exact
/// key match wins over a case-insensitive one.
fn go_fields<'a>(
    obj: &'a Map<String, Value>,
    fields: &[&'static str],
) -> Vec<(&'static str, &'a Value)> {
    fields
        .iter()
        .filter_map(|f| {
            obj.get(*f)
                .or_else(|| {
                    obj.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(f))
                        .map(|(_, v)| v)
                })
                .map(|v| (*f, v))
        })
        .collect()
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

    fn cfg(t: &str, runner: &str, max: i64) -> JobConfig {
        JobConfig {
            job_type: t.into(),
            max_duration_sec: max,
            runner: runner.into(),
            input_data: None,
        }
    }

    #[test]
    fn config_validation_messages_in_go_order() {
        use RunnerCheck::*;
        let rec = "mattermost/calls-recorder:v0.8.13";
        let cases: &[(JobConfig, &str, RunnerCheck, Result<(), &str>)] = &[
            (cfg("recording", rec, 3600), "mattermost", Enforce, Ok(())),
            (
                cfg("transcribing", "mattermost/calls-transcriber:v0.7.2", 7200),
                "mattermost",
                Enforce,
                Ok(()),
            ),
            // No cross-check between type and runner, as in Go.
            (
                cfg("recording", "mattermost/calls-transcriber:v0.1.0", 1),
                "mattermost",
                Enforce,
                Ok(()),
            ),
            (
                cfg("recording", "mattermost/calls-recorder:v0.6.0-dev", 1),
                "mattermost",
                Enforce,
                Ok(()),
            ),
            (
                cfg("recording", "mattermost/calls-recorder:v1.0.0-dev29", 1),
                "mattermost",
                Enforce,
                Ok(()),
            ),
            (
                cfg("", "", 0),
                "mattermost",
                Enforce,
                Err("invalid Type value: should not be empty"),
            ),
            (
                cfg("recording", "", 0),
                "mattermost",
                Enforce,
                Err("invalid Runner value: runner should not be empty"),
            ),
            (
                cfg("recording", rec, 0),
                "",
                Enforce,
                Err("invalid Runner value: registry should not be empty"),
            ),
            (
                cfg("recording", "mattermost/calls-recorder:v0.5.9", 1),
                "mattermost",
                Enforce,
                Err(
                    "invalid Runner value: actual version (0.5.9) is lower than minimum supported version (0.6.0)",
                ),
            ),
            (
                cfg(
                    "transcribing",
                    "mattermost/calls-transcriber:v0.0.9-dev2",
                    1,
                ),
                "mattermost",
                Enforce,
                Err(
                    "invalid Runner value: actual version (0.0.9) is lower than minimum supported version (0.1.0)",
                ),
            ),
            (
                cfg("recording", "evil.example/calls-recorder:v0.8.13", 1),
                "mattermost",
                Enforce,
                Err(
                    "invalid Runner value: failed to validate runner \"evil.example/calls-recorder:v0.8.13\"",
                ),
            ),
            (
                cfg(
                    "recording",
                    "mattermost/calls-recorder@sha256:0123456789abcdef",
                    1,
                ),
                "mattermost",
                Enforce,
                Err(
                    "invalid Runner value: failed to validate runner \"mattermost/calls-recorder@sha256:0123456789abcdef\"",
                ),
            ),
            (
                cfg(
                    "recording",
                    "mattermost/calls-recorder:v0.8.13@sha256:00",
                    1,
                ),
                "mattermost",
                Enforce,
                Err(
                    "invalid Runner value: failed to validate runner \"mattermost/calls-recorder:v0.8.13@sha256:00\"",
                ),
            ),
            (
                cfg("recording", "mattermost/calls-recorder:v01.0.0", 1),
                "mattermost",
                Enforce,
                Err(
                    "invalid Runner value: failed to validate runner \"mattermost/calls-recorder:v01.0.0\"",
                ),
            ),
            (
                cfg("recording", "mattermost/calls-recorder:latest", 1),
                "mattermost",
                Enforce,
                Err(
                    "invalid Runner value: failed to validate runner \"mattermost/calls-recorder:latest\"",
                ),
            ),
            (
                cfg("recording", rec, 0),
                "mattermost",
                Enforce,
                Err("invalid MaxDurationSec value: should be positive"),
            ),
            (
                cfg("recording", rec, -5),
                "mattermost",
                Enforce,
                Err("invalid MaxDurationSec value: should be positive"),
            ),
            (
                cfg("captioning", rec, 10),
                "mattermost",
                Enforce,
                Err("invalid Type value: \"captioning\""),
            ),
            (
                cfg("a\"b\n", rec, 10),
                "mattermost",
                Enforce,
                Err("invalid Type value: \"a\\\"b\\n\""),
            ),
            // The registry is a pattern, unescaped: `.` matches any character, as in Go.
            (
                cfg(
                    "recording",
                    "registryXexample.com/calls-recorder:v0.8.13",
                    1,
                ),
                "registry.example.com",
                Enforce,
                Ok(()),
            ),
            // A registry that is not a valid pattern matches nothing (Go would crash).
            (
                cfg("recording", "reg(/calls-recorder:v0.8.13", 1),
                "reg(",
                Enforce,
                Err(
                    "invalid Runner value: failed to validate runner \"reg(/calls-recorder:v0.8.13\"",
                ),
            ),
            // DEV_MODE / TEST_MODE skip the runner check entirely, empty runner included.
            (cfg("recording", "", 1), "mattermost", Skip, Ok(())),
            (cfg("recording", "anything:latest", 1), "", Skip, Ok(())),
            (
                cfg("recording", "", 0),
                "mattermost",
                Skip,
                Err("invalid MaxDurationSec value: should be positive"),
            ),
        ];
        for (c, registry, check, want) in cases {
            assert_eq!(
                c.is_valid(registry, *check)
                    .as_ref()
                    .map_err(String::as_str),
                want.as_ref().map_err(|e| *e),
                "{c:?} with registry {registry:?}"
            );
        }
    }

    #[test]
    fn service_config_validation() {
        let ok = ServiceConfig {
            runners: vec![
                "mattermost/calls-recorder:v0.8.13".into(),
                "mattermost/calls-transcriber:v0.7.2".into(),
            ],
        };
        assert_eq!(ok.is_valid("mattermost", RunnerCheck::Enforce), Ok(()));
        assert_eq!(
            ServiceConfig::default().is_valid("mattermost", RunnerCheck::Enforce),
            Err("invalid empty Runners".into())
        );
        assert_eq!(
            ServiceConfig::default().is_valid("mattermost", RunnerCheck::Skip),
            Err("invalid empty Runners".into()),
            "the bypass only covers runner names"
        );
        assert_eq!(
            ok.is_valid("", RunnerCheck::Enforce),
            Err("registry should not be empty".into())
        );
        let bad = ServiceConfig {
            runners: vec!["mattermost/calls-recorder:v0.8.13".into(), "x/y:z".into()],
        };
        assert_eq!(
            bad.is_valid("mattermost", RunnerCheck::Enforce),
            Err("failed to validate runner \"x/y:z\"".into())
        );
    }

    #[test]
    fn job_config_decoding_follows_go() {
        let c = decode_job_config(
            br#"{"TYPE":"recording","Max_Duration_Sec":60,"runner":"r","input_data":{"a":1},"extra":true} trailing"#,
        )
        .unwrap();
        assert_eq!(c.job_type, "recording");
        assert_eq!(c.max_duration_sec, 60);
        assert_eq!(c.runner, "r");
        assert_eq!(c.input_data.unwrap()["a"], 1);
        assert_eq!(decode_job_config(b"null").unwrap(), JobConfig::default());
        assert_eq!(
            decode_job_config(br#"{"type":null,"input_data":null}"#).unwrap(),
            JobConfig::default()
        );
        for (body, want) in [
            (&b""[..], "EOF"),
            (b"{\"type\":", "unexpected EOF"),
            (
                b"[]",
                "json: cannot unmarshal array into Go value of type job.Config",
            ),
            (
                br#"{"type":1}"#,
                "json: cannot unmarshal number 1 into Go struct field Config.type of type job.Type",
            ),
            (
                br#"{"max_duration_sec":"60"}"#,
                "json: cannot unmarshal string into Go struct field Config.max_duration_sec of type int64",
            ),
            (
                br#"{"max_duration_sec":1.5}"#,
                "json: cannot unmarshal number 1.5 into Go struct field Config.max_duration_sec of type int64",
            ),
            (
                br#"{"max_duration_sec":9223372036854775808}"#,
                "json: cannot unmarshal number 9223372036854775808 into Go struct field Config.max_duration_sec of type int64",
            ),
            (
                br#"{"runner":["a"]}"#,
                "json: cannot unmarshal array into Go struct field Config.runner of type string",
            ),
            (
                br#"{"input_data":"x"}"#,
                "json: cannot unmarshal string into Go struct field Config.input_data of type job.InputData",
            ),
        ] {
            assert_eq!(
                decode_job_config(body),
                Err(want.to_string()),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(
            decode_job_config(b"{oops}")
                .unwrap_err()
                .starts_with("invalid JSON")
        );
    }

    #[test]
    fn service_config_decoding_accepts_any_case_of_runners() {
        for body in [
            &br#"{"Runners":["a","b"]}"#[..],
            br#"{"runners":["a","b"]}"#,
            br#"{"RUNNERS":["a","b"]}"#,
        ] {
            assert_eq!(decode_service_config(body).unwrap().runners, vec!["a", "b"]);
        }
        assert_eq!(decode_service_config(b"{}").unwrap().runners.len(), 0);
        assert_eq!(
            decode_service_config(br#"{"Runners":"a"}"#),
            Err("json: cannot unmarshal string into Go struct field ServiceConfig.Runners of type []string".into())
        );
        assert_eq!(
            decode_service_config(br#"{"Runners":[1]}"#),
            Err("json: cannot unmarshal number into Go struct field ServiceConfig.Runners of type string".into())
        );
        assert_eq!(decode_service_config(b""), Err("EOF".into()));
        // The wire key is `Runners`, as Go writes it.
        assert_eq!(
            serde_json::to_string(&ServiceConfig {
                runners: vec!["a".into()]
            })
            .unwrap(),
            r#"{"Runners":["a"]}"#
        );
    }

    #[test]
    fn env_from_input_data_as_go_formats_it() {
        let input: Map<String, Value> = serde_json::from_str(
            r#"{"site_url":"http://mm:8065","width":1280,"live_captions_on":true,
                "transcribe_api_options":"null","big":1000000,"ratio":1.5,"nothing":null,
                "list":["a",2],"obj":{"b":1,"a":"x"}}"#,
        )
        .unwrap();
        let env = env_pairs(Some(&input), false);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SITE_URL"), Some("http://mm:8065"));
        assert_eq!(get("WIDTH"), Some("1280"));
        assert_eq!(get("LIVE_CAPTIONS_ON"), Some("true"));
        assert_eq!(get("TRANSCRIBE_API_OPTIONS"), Some("null"));
        assert_eq!(get("BIG"), Some("1e+06"));
        assert_eq!(get("RATIO"), Some("1.5"));
        assert_eq!(get("NOTHING"), Some("<nil>"));
        assert_eq!(get("LIST"), Some("[a 2]"));
        assert_eq!(get("OBJ"), Some("map[a:x b:1]"));
        assert_eq!(get("DEV_MODE"), None);
        let dev = env_pairs(None, true);
        assert_eq!(dev, vec![("DEV_MODE".to_string(), "true".to_string())]);
    }

    #[test]
    fn job_json_has_go_field_order_and_omissions() {
        let job = Job {
            config: cfg("recording", "mattermost/calls-recorder:v0.8.13", 60),
            id: "abcdef012345".into(),
            start_at: 1700000000000,
            stop_at: 0,
            output_data: None,
        };
        assert_eq!(
            String::from_utf8(calls_proto::json::to_vec(&job)).unwrap(),
            "{\"type\":\"recording\",\"max_duration_sec\":60,\"runner\":\"mattermost/calls-recorder:v0.8.13\",\"id\":\"abcdef012345\",\"start_at\":1700000000000}\n"
        );
    }
}
