//! Configuration loading shared by both daemons: defaults, then a TOML file, then environment
//! variables, then validation.
//!
//! Environment names follow Go's `envconfig` as the original services use it: an optional prefix,
//! then the Go field path in upper case joined by `_`, where each Go field name is the TOML key
//! without its underscores (`api.http.listen_address` → `RTCD_API_HTTP_LISTENADDRESS`). A few Go
//! field names differ from their TOML key (`rtc.turn` is `TURNConfig`); daemons list those.
//!
//! Differences from the Go loaders, all in the admin's favour: defaults always apply under a file
//! (the offloader's Go loader zeroes every key a file leaves out), unknown keys are reported
//! instead of silently ignored, and every error is one line naming the key and its variable.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::path::Path;
use toml::{Table, Value};

/// How a daemon's keys map to environment variables.
#[derive(Debug, Clone, Copy)]
pub struct EnvNaming {
    /// `RTCD` for rtcd; empty for the offloader, whose variables have no prefix.
    pub prefix: &'static str,
    /// `(dotted TOML path, Go field name)` where the two differ, e.g. `("rtc.turn", "TURNCONFIG")`.
    pub renames: &'static [(&'static str, &'static str)],
}

impl EnvNaming {
    /// The environment variable for a dotted TOML key.
    pub fn env_name(&self, key: &str) -> String {
        let mut parts = Vec::new();
        if !self.prefix.is_empty() {
            parts.push(self.prefix.to_owned());
        }
        let segs: Vec<&str> = key.split('.').collect();
        for i in 0..segs.len() {
            let path = segs[..=i].join(".");
            match self.renames.iter().find(|(p, _)| *p == path) {
                Some((_, name)) => parts.push((*name).to_owned()),
                None => parts.push(segs[i].replace('_', "").to_uppercase()),
            }
        }
        parts.join("_")
    }
}

/// A configuration problem: which key, which variable, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub env: Option<String>,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            env: None,
            reason: reason.into(),
        }
    }
    /// A problem not tied to one key (an unreadable file, say).
    pub fn general(reason: impl Into<String>) -> Self {
        Self::new("", reason)
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Always one line: some library messages (TOML, PEM) span several.
        let reason = self
            .reason
            .split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        match (&self.key, &self.env) {
            (k, _) if k.is_empty() => write!(f, "{reason}"),
            (k, Some(env)) => write!(f, "{k} (env {env}): {reason}"),
            (k, None) => write!(f, "{k}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A loaded configuration and what the admin should be told about how it was loaded.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    /// Informational lines, logged once the logger is up (missing file, unknown keys).
    pub notices: Vec<String>,
}

/// Validation implemented by each daemon's config type.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Per-key special handling of environment values, for keys whose variable does not simply hold
/// the TOML value (rtcd's `ice_servers` takes JSON with its own meaning). Returns `None` to fall
/// back to the default conversion.
pub type EnvHook = fn(key: &str, raw: &str) -> Option<Result<Value, String>>;

/// Loads `T`: defaults, then the file at `path` if it exists, then the environment, then checks.
pub fn load<T>(
    path: &Path,
    naming: EnvNaming,
    env: &dyn Fn(&str) -> Option<String>,
    hook: Option<EnvHook>,
) -> Result<Loaded<T>, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    let with_env = |mut e: ConfigError| {
        if !e.key.is_empty() && e.env.is_none() {
            e.env = Some(naming.env_name(&e.key));
        }
        e
    };
    let mut notices = Vec::new();
    let defaults = Value::try_from(T::default()).map_err(|e| {
        ConfigError::general(format!("internal error: defaults do not serialise: {e}"))
    })?;
    let Value::Table(mut tree) = defaults else {
        return Err(ConfigError::general(
            "internal error: defaults are not a table",
        ));
    };

    match std::fs::read_to_string(path) {
        Ok(text) => {
            let file: Table = text.parse().map_err(|e: toml::de::Error| {
                ConfigError::general(format!(
                    "failed to parse config file {}: {}",
                    path.display(),
                    e.message().trim()
                ))
            })?;
            merge(&mut tree, lowercase_keys(file), "", &mut notices).map_err(with_env)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            notices.push(format!(
                "config file not found at {}, using defaults",
                path.display()
            ));
        }
        Err(e) => {
            return Err(ConfigError::general(format!(
                "failed to read config file {}: {e}",
                path.display()
            )));
        }
    }

    apply_env(&mut tree, "", naming, env, hook)?;

    let config: T = serde_path_to_error::deserialize(Value::Table(tree)).map_err(|e| {
        let key = e.path().to_string();
        with_env(ConfigError::new(
            if key == "." { String::new() } else { key },
            e.into_inner().to_string(),
        ))
    })?;
    config.validate().map_err(with_env)?;
    Ok(Loaded { config, notices })
}

/// Go's TOML decoder matches keys to field names case-insensitively.
fn lowercase_keys(t: Table) -> Table {
    t.into_iter()
        .map(|(k, v)| (k.to_lowercase(), lowercase_value(v)))
        .collect()
}

fn lowercase_value(v: Value) -> Value {
    match v {
        Value::Table(t) => Value::Table(lowercase_keys(t)),
        Value::Array(a) => Value::Array(a.into_iter().map(lowercase_value).collect()),
        other => other,
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn merge(
    base: &mut Table,
    over: Table,
    prefix: &str,
    notices: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for (k, v) in over {
        let path = join(prefix, &k);
        match base.get_mut(&k) {
            None => notices.push(format!("unknown configuration key {path} ignored")),
            Some(Value::Table(bt)) => match v {
                Value::Table(vt) => merge(bt, vt, &path, notices)?,
                other => {
                    return Err(ConfigError::new(
                        path,
                        format!("expected a table, got {}", other.type_str()),
                    ));
                }
            },
            Some(slot) => *slot = v,
        }
    }
    Ok(())
}

fn apply_env(
    tree: &mut Table,
    prefix: &str,
    naming: EnvNaming,
    env: &dyn Fn(&str) -> Option<String>,
    hook: Option<EnvHook>,
) -> Result<(), ConfigError> {
    for (k, slot) in tree.iter_mut() {
        let key = join(prefix, k);
        if let Value::Table(t) = slot {
            apply_env(t, &key, naming, env, hook)?;
            continue;
        }
        let name = naming.env_name(&key);
        let Some(raw) = env(&name) else { continue };
        let bad = |reason: String| ConfigError {
            key: key.clone(),
            env: Some(name.clone()),
            reason,
        };
        if let Some(res) = hook.and_then(|h| h(&key, &raw)) {
            *slot = res.map_err(bad)?;
            continue;
        }
        *slot = match slot {
            Value::Boolean(_) => Value::Boolean(
                parse_go_bool(&raw).ok_or_else(|| bad(format!("invalid boolean {raw:?}")))?,
            ),
            Value::Integer(_) => Value::Integer(
                raw.trim()
                    .parse::<i64>()
                    .map_err(|_| bad(format!("invalid integer {raw:?}")))?,
            ),
            Value::Float(_) => Value::Float(
                raw.trim()
                    .parse::<f64>()
                    .map_err(|_| bad(format!("invalid number {raw:?}")))?,
            ),
            Value::Array(_) => {
                let json: serde_json::Value = serde_json::from_str(&raw)
                    .map_err(|e| bad(format!("invalid JSON list: {e}")))?;
                Value::try_from(json).map_err(|e| bad(format!("invalid list: {e}")))?
            }
            _ => Value::String(raw),
        };
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Reads the process environment; the usual `env` argument of [`load`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parses a Go-style `-config PATH`/`--config PATH`/`--config=PATH` command line. Returns the path
/// (or `default`) or an error line for unknown arguments. Kept by hand because Go's `flag` accepts
/// single-dash long options, which clap does not.
pub fn config_path_from_args(args: &[String], default: &str) -> Result<ConfigArgs, String> {
    let mut path = default.to_owned();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let long = a.trim_start_matches('-');
        match long {
            "config" if a.starts_with('-') => {
                i += 1;
                path = args
                    .get(i)
                    .ok_or("flag needs an argument: -config")?
                    .clone();
            }
            _ if a.starts_with('-') && long.starts_with("config=") => {
                path = long["config=".len()..].to_owned()
            }
            "h" | "help" if a.starts_with('-') => return Ok(ConfigArgs::Help),
            "version" | "V" if a.starts_with('-') => return Ok(ConfigArgs::Version),
            _ => return Err(format!("unknown argument {a:?}")),
        }
        i += 1;
    }
    Ok(ConfigArgs::Run(path))
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConfigArgs {
    Run(String),
    Help,
    Version,
}

/// `[api]`: the HTTP listener and client security, identical in both daemons.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiConfig {
    pub http: crate::http::HttpConfig,
    pub security: crate::auth::SecurityConfig,
}

/// `[store]`: where the embedded store keeps its data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoreConfig {
    pub data_source: String,
}

/// A TOML value that may be written as an integer or a string (Go's config fields that the
/// services parse themselves), as its string form.
pub fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        I(i64),
        S(String),
    }
    Ok(match Repr::deserialize(d)? {
        Repr::I(i) => i.to_string(),
        Repr::S(s) => s,
    })
}
