//! rtcd's configuration: every key of the Go rtcd (`config/config.sample.toml`), its default, its
//! validation and its `RTCD_*` variable. Loading itself is [`calls_core::config`].

use calls_core::auth::SecurityConfig;
use calls_core::config::{ConfigError, EnvNaming, Validate};
use calls_core::http::HttpConfig;
use calls_core::logging::LoggerConfig;
use serde::{Deserialize, Deserializer, Serialize};
use std::net::IpAddr;

/// rtcd's variables: `RTCD_` + Go field path; `rtc.turn` is the Go field `TURNConfig`.
pub const ENV: EnvNaming = EnvNaming {
    prefix: "RTCD",
    renames: &[("rtc.turn", "TURNCONFIG")],
};
/// Go's `-config` default.
pub const DEFAULT_CONFIG_PATH: &str = "config/config.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    pub api: ApiConfig,
    pub rtc: RtcConfig,
    pub store: StoreConfig,
    pub logger: LoggerConfig,
}

// `[api]` and `[store]` are the same in both daemons.
pub use calls_core::config::{ApiConfig, StoreConfig};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RtcConfig {
    /// Comma-separated local IPs to listen on for UDP; empty means every interface.
    pub ice_address_udp: String,
    pub ice_port_udp: i64,
    pub ice_address_tcp: String,
    pub ice_port_tcp: i64,
    /// An IP, a hostname, or `EXT/INT,EXT/INT` NAT pairs advertised in host candidates.
    pub ice_host_override: String,
    /// A port, or `LOCALIP/PORT,...`; TOML accepts an integer or a string.
    #[serde(deserialize_with = "calls_core::config::int_or_string")]
    pub ice_host_port_override: String,
    pub ice_servers: Vec<IceServer>,
    pub turn: TurnConfig,
    pub enable_ipv6: bool,
    pub udp_sockets_count: i64,
    pub nack_buffer_size: i64,
    pub nack_disable_copy: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TurnConfig {
    pub static_auth_secret: String,
    pub credentials_expiration_minutes: i64,
}

/// One STUN/TURN server. TOML accepts a bare URL string or a `{urls, username, credential}` table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub credential: String,
}

impl<'de> Deserialize<'de> for IceServer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Url(String),
            Table {
                #[serde(default)]
                urls: Vec<String>,
                #[serde(default)]
                username: String,
                #[serde(default)]
                credential: String,
            },
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Url(u) => IceServer {
                urls: vec![u],
                ..Default::default()
            },
            Repr::Table {
                urls,
                username,
                credential,
            } => IceServer {
                urls,
                username,
                credential,
            },
        })
    }
}

impl IceServer {
    fn all(&self, schemes: [&str; 2]) -> bool {
        !self.urls.is_empty()
            && self
                .urls
                .iter()
                .all(|u| schemes.iter().any(|s| u.starts_with(s)))
    }
    pub fn is_stun(&self) -> bool {
        self.all(["stun:", "stuns:"])
    }
    pub fn is_turn(&self) -> bool {
        self.all(["turn:", "turns:"])
    }
}

/// rtcd's default of 100 sockets per CPU.
pub fn default_udp_sockets_count() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as i64 * 100
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api: ApiConfig {
                http: HttpConfig::with_address(":8045"),
                security: SecurityConfig::default(),
            },
            rtc: RtcConfig {
                ice_address_udp: String::new(),
                ice_port_udp: 8443,
                ice_address_tcp: String::new(),
                ice_port_tcp: 8443,
                ice_host_override: String::new(),
                ice_host_port_override: String::new(),
                ice_servers: Vec::new(),
                turn: TurnConfig {
                    static_auth_secret: String::new(),
                    credentials_expiration_minutes: 1440,
                },
                enable_ipv6: false,
                udp_sockets_count: default_udp_sockets_count(),
                nack_buffer_size: 256,
                nack_disable_copy: true,
            },
            store: StoreConfig {
                data_source: "/tmp/rtcd_db".into(),
            },
            logger: LoggerConfig::with_file("rtcd.log"),
        }
    }
}

/// Parses a comma-separated IP list (spaces trimmed); empty means "all interfaces".
pub fn parse_ip_list(s: &str) -> Result<Vec<IpAddr>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|a| {
            a.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("{:?} is not a valid IP address", a.trim()))
        })
        .collect()
}

/// The parsed `ice_host_port_override`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortOverride {
    None,
    Port(u16),
    /// Local IP (as written) → port; the node picks the entry of its own IP at start.
    Map(Vec<(String, u16)>),
}

pub fn parse_port_override(s: &str) -> Result<PortOverride, String> {
    if s.is_empty() {
        return Ok(PortOverride::None);
    }
    if let Ok(p) = s.parse::<i64>()
        && p != 0
    {
        if !(80..=49151).contains(&p) {
            return Err(format!("{p} is not in allowed range [80, 49151]"));
        }
        return Ok(PortOverride::Port(p as u16));
    }
    let mut out: Vec<(String, u16)> = Vec::new();
    for pair in s.split(',') {
        let parts: Vec<&str> = pair.split('/').collect();
        let [ip, port] = parts[..] else {
            return Err(format!(
                "failed to parse mapping: invalid map pairing syntax in {pair:?} (expected LOCALIP/PORT)"
            ));
        };
        let port: u16 = port.parse().map_err(|_| {
            format!("failed to parse mapping: failed to parse port number {port:?}")
        })?;
        if out.iter().any(|(i, _)| i == ip) {
            return Err(format!(
                "failed to parse mapping: duplicate mapping found for {ip}"
            ));
        }
        if out.iter().any(|(_, p)| *p == port) {
            return Err(format!(
                "failed to parse mapping: duplicate port found for {port}"
            ));
        }
        out.push((ip.to_owned(), port));
    }
    Ok(PortOverride::Map(out))
}

/// Validates `EXT/INT,...` NAT pairs of `ice_host_override` (an IP or hostname needs no check here:
/// hostnames are resolved per session, as in rtcd).
fn validate_host_override(s: &str) -> Result<(), String> {
    if !s.contains('/') {
        return Ok(());
    }
    for pair in s.split(',') {
        let parts: Vec<&str> = pair.split('/').collect();
        let [ext, int] = parts[..] else {
            return Err(format!(
                "invalid NAT mapping {pair:?}: expected EXTERNAL_IP/INTERNAL_IP"
            ));
        };
        for ip in [ext, int] {
            ip.trim().parse::<IpAddr>().map_err(|_| {
                format!("invalid NAT mapping {pair:?}: {ip:?} is not an IP address")
            })?;
        }
    }
    Ok(())
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.api.security.validate("api.security")?;
        self.api.http.validate("api.http")?;
        let rtc = &self.rtc;
        let err = |k: &str, r: String| Err(ConfigError::new(format!("rtc.{k}"), r));
        if let Err(e) = parse_ip_list(&rtc.ice_address_udp) {
            return err("ice_address_udp", e);
        }
        if let Err(e) = parse_ip_list(&rtc.ice_address_tcp) {
            return err("ice_address_tcp", e);
        }
        for (k, p) in [
            ("ice_port_udp", rtc.ice_port_udp),
            ("ice_port_tcp", rtc.ice_port_tcp),
        ] {
            if !(80..=49151).contains(&p) {
                return err(k, format!("{p} is not in allowed range [80, 49151]"));
            }
        }
        for (i, s) in rtc.ice_servers.iter().enumerate() {
            if s.urls.is_empty() {
                return err("ice_servers", format!("entry {i}: invalid empty URLs"));
            }
            if s.urls.iter().any(String::is_empty) {
                return err("ice_servers", format!("entry {i}: invalid empty URL"));
            }
            if !s.is_stun() && !s.is_turn() {
                return err(
                    "ice_servers",
                    format!("entry {i}: URLs must be all stun:/stuns: or all turn:/turns:"),
                );
            }
        }
        if !rtc.turn.static_auth_secret.is_empty() {
            let m = rtc.turn.credentials_expiration_minutes;
            if m <= 0 {
                return err(
                    "turn.credentials_expiration_minutes",
                    format!("should be a positive number, got {m}"),
                );
            }
            if m >= 10080 {
                return err(
                    "turn.credentials_expiration_minutes",
                    format!("should be less than 1 week (10080), got {m}"),
                );
            }
        }
        if let Err(e) = parse_port_override(&rtc.ice_host_port_override) {
            return err("ice_host_port_override", e);
        }
        if let Err(e) = validate_host_override(&rtc.ice_host_override) {
            return err("ice_host_override", e);
        }
        if rtc.udp_sockets_count <= 0 {
            return err(
                "udp_sockets_count",
                format!("should be greater than 0, got {}", rtc.udp_sockets_count),
            );
        }
        let n = rtc.nack_buffer_size;
        if n != 0 && (!(32..=8192).contains(&n) || n & (n - 1) != 0) {
            return err(
                "nack_buffer_size",
                format!(
                    "{n} must be 0 (default 256) or a power of 2 from 32 to 8192 (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)"
                ),
            );
        }
        if self.store.data_source.is_empty() {
            return Err(ConfigError::new("store.data_source", "should not be empty"));
        }
        self.logger.validate("logger")
    }
}

/// `RTCD_RTC_ICESERVERS` holds JSON: either a list of URL strings, meaning **one** server with
/// those URLs, or a list of `{urls, username, credential}` objects (rtcd's `ICEServers.Decode`).
/// In TOML, by contrast, each string of the list is a server of its own.
pub fn env_hook(key: &str, raw: &str) -> Option<Result<toml::Value, String>> {
    if key != "rtc.ice_servers" {
        return None;
    }
    let parsed = if let Ok(urls) = serde_json::from_str::<Vec<String>>(raw) {
        Ok(serde_json::json!([{ "urls": urls }]))
    } else {
        serde_json::from_str::<serde_json::Value>(raw).map_err(|e| format!("invalid JSON: {e}"))
    };
    Some(parsed.and_then(|v| toml::Value::try_from(v).map_err(|e| e.to_string())))
}

/// Loads the configuration from `path` and the process environment.
pub fn load(path: &std::path::Path) -> Result<calls_core::config::Loaded<Config>, ConfigError> {
    calls_core::config::load(path, ENV, &calls_core::config::process_env, Some(env_hook))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_with(
        toml_text: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<calls_core::config::Loaded<Config>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        if let Some(t) = toml_text {
            std::fs::write(&path, t).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        calls_core::config::load(&path, ENV, &|k| env.get(k).cloned(), Some(env_hook))
    }

    #[test]
    fn env_names_follow_envconfig() {
        assert_eq!(
            ENV.env_name("api.http.listen_address"),
            "RTCD_API_HTTP_LISTENADDRESS"
        );
        assert_eq!(
            ENV.env_name("api.security.session_cache.expiration_minutes"),
            "RTCD_API_SECURITY_SESSIONCACHE_EXPIRATIONMINUTES"
        );
        assert_eq!(
            ENV.env_name("rtc.turn.static_auth_secret"),
            "RTCD_RTC_TURNCONFIG_STATICAUTHSECRET"
        );
        assert_eq!(
            ENV.env_name("rtc.ice_host_port_override"),
            "RTCD_RTC_ICEHOSTPORTOVERRIDE"
        );
        assert_eq!(ENV.env_name("store.data_source"), "RTCD_STORE_DATASOURCE");
        assert_eq!(
            ENV.env_name("logger.enable_color"),
            "RTCD_LOGGER_ENABLECOLOR"
        );
    }

    #[test]
    fn missing_file_means_defaults() {
        let l = load_with(None, &[]).unwrap();
        assert_eq!(l.config, Config::default());
        assert!(l.notices[0].contains("using defaults"));
        let c = l.config;
        assert_eq!(c.api.http.listen_address, ":8045");
        assert_eq!(
            (
                c.rtc.ice_port_udp,
                c.rtc.ice_port_tcp,
                c.rtc.nack_buffer_size
            ),
            (8443, 8443, 256)
        );
        assert_eq!(c.api.security.session_cache.expiration_minutes, 1440);
        assert_eq!(c.rtc.turn.credentials_expiration_minutes, 1440);
        assert_eq!(c.rtc.udp_sockets_count, default_udp_sockets_count());
        assert!(c.rtc.nack_disable_copy);
        assert_eq!(c.store.data_source, "/tmp/rtcd_db");
        assert_eq!(
            (
                c.logger.console_level.as_str(),
                c.logger.file_level.as_str()
            ),
            ("INFO", "DEBUG")
        );
        assert!(c.logger.enable_file && c.logger.file_json && !c.logger.enable_color);
    }

    #[test]
    fn file_then_env_override() {
        let file = r#"
            [api]
            http.listen_address = ":9000"
            security.allow_self_registration = true
            security.session_cache.expiration_minutes = 60
            [RTC]
            ice_port_udp = 30000
            ice_host_port_override = 30443
            ice_servers = ["stun:a.example:3478", {urls = ["turn:t.example:3478"], username = "u", credential = "p"}]
            turn.static_auth_secret = "s"
            [store]
            data_source = "/var/lib/rtcd"
            [logger]
            Enable_File = false
            [future_section]
            x = 1
        "#;
        let l = load_with(
            Some(file),
            &[
                ("RTCD_RTC_ICEPORTUDP", "31000"),
                ("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "F"),
            ],
        )
        .unwrap();
        let c = &l.config;
        assert_eq!(c.api.http.listen_address, ":9000");
        assert_eq!(c.rtc.ice_port_udp, 31000, "env overrides the file");
        assert!(
            !c.api.security.allow_self_registration,
            "Go ParseBool accepts F"
        );
        assert_eq!(c.api.security.session_cache.expiration_minutes, 60);
        assert_eq!(c.rtc.ice_host_port_override, "30443", "an integer in TOML");
        assert_eq!(
            c.rtc.ice_servers.len(),
            2,
            "a bare string is a server of its own in TOML"
        );
        assert_eq!(c.rtc.ice_servers[0].urls, vec!["stun:a.example:3478"]);
        assert_eq!(c.rtc.ice_servers[1].username, "u");
        assert!(!c.logger.enable_file, "keys match case-insensitively");
        assert_eq!(
            c.rtc.ice_port_tcp, 8443,
            "defaults still apply under a file"
        );
        assert!(
            l.notices.iter().any(|n| n.contains("future_section")),
            "{:?}",
            l.notices
        );
    }

    #[test]
    fn ice_servers_from_env_json() {
        let c = load_with(
            None,
            &[("RTCD_RTC_ICESERVERS", r#"["stun:a:3478","stun:b:3478"]"#)],
        )
        .unwrap()
        .config;
        assert_eq!(
            c.rtc.ice_servers,
            vec![IceServer {
                urls: vec!["stun:a:3478".into(), "stun:b:3478".into()],
                ..Default::default()
            }]
        );
        let c = load_with(
            None,
            &[(
                "RTCD_RTC_ICESERVERS",
                r#"[{"urls":["turn:t:3478"],"username":"u","credential":"c"}]"#,
            )],
        )
        .unwrap()
        .config;
        assert_eq!(c.rtc.ice_servers[0].credential, "c");
        let e = load_with(None, &[("RTCD_RTC_ICESERVERS", "stun:a:3478")]).unwrap_err();
        assert_eq!(e.env.as_deref(), Some("RTCD_RTC_ICESERVERS"));
    }

    #[test]
    fn invalid_values_name_the_key_and_variable() {
        // (file, environment, key named in the error, part of the reason)
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                None,
                &[("RTCD_RTC_ICEPORTUDP", "79")],
                "rtc.ice_port_udp",
                "79 is not in allowed range [80, 49151]",
            ),
            (
                None,
                &[("RTCD_RTC_ICEPORTTCP", "abc")],
                "rtc.ice_port_tcp",
                "invalid integer",
            ),
            (
                None,
                &[("RTCD_API_SECURITY_ENABLEADMIN", "yes")],
                "api.security.enable_admin",
                "invalid boolean",
            ),
            (
                None,
                &[("RTCD_API_SECURITY_ENABLEADMIN", "true")],
                "api.security.admin_secret_key",
                "should not be empty",
            ),
            (
                None,
                &[("RTCD_API_SECURITY_SESSIONCACHE_EXPIRATIONMINUTES", "0")],
                "api.security.session_cache.expiration_minutes",
                "positive",
            ),
            (
                None,
                &[("RTCD_API_HTTP_LISTENADDRESS", "")],
                "api.http.listen_address",
                "should not be empty",
            ),
            (
                None,
                &[("RTCD_API_HTTP_TLS_ENABLE", "true")],
                "api.http.tls.cert_file",
                "should not be empty",
            ),
            (
                None,
                &[
                    ("RTCD_API_HTTP_TLS_ENABLE", "true"),
                    ("RTCD_API_HTTP_TLS_CERTFILE", "/nonexistent.pem"),
                    ("RTCD_API_HTTP_TLS_CERTKEY", "/nonexistent.key"),
                ],
                "api.http.tls.cert_file",
                "failed to load cert files",
            ),
            (
                None,
                &[("RTCD_RTC_ICEADDRESSUDP", "127.0.0.1, nope")],
                "rtc.ice_address_udp",
                "\"nope\" is not a valid IP address",
            ),
            (
                None,
                &[("RTCD_RTC_ICEHOSTPORTOVERRIDE", "70000")],
                "rtc.ice_host_port_override",
                "not in allowed range",
            ),
            (
                None,
                &[(
                    "RTCD_RTC_ICEHOSTPORTOVERRIDE",
                    "10.0.0.1/8443,10.0.0.2/8443",
                )],
                "rtc.ice_host_port_override",
                "duplicate port",
            ),
            (
                None,
                &[("RTCD_RTC_ICEHOSTPORTOVERRIDE", "10.0.0.1:8443")],
                "rtc.ice_host_port_override",
                "invalid map pairing syntax",
            ),
            (
                None,
                &[("RTCD_RTC_ICEHOSTOVERRIDE", "8.8.8.8/notanip")],
                "rtc.ice_host_override",
                "not an IP address",
            ),
            (
                None,
                &[("RTCD_RTC_ICESERVERS", r#"["http://x"]"#)],
                "rtc.ice_servers",
                "stun:",
            ),
            (
                None,
                &[("RTCD_RTC_ICESERVERS", r#"[{"urls":[]}]"#)],
                "rtc.ice_servers",
                "invalid empty URLs",
            ),
            (
                None,
                &[
                    ("RTCD_RTC_TURNCONFIG_STATICAUTHSECRET", "s"),
                    ("RTCD_RTC_TURNCONFIG_CREDENTIALSEXPIRATIONMINUTES", "10080"),
                ],
                "rtc.turn.credentials_expiration_minutes",
                "less than 1 week",
            ),
            (
                None,
                &[("RTCD_RTC_UDPSOCKETSCOUNT", "0")],
                "rtc.udp_sockets_count",
                "greater than 0",
            ),
            (
                None,
                &[("RTCD_RTC_NACKBUFFERSIZE", "100")],
                "rtc.nack_buffer_size",
                "power of 2",
            ),
            (
                None,
                &[("RTCD_RTC_NACKBUFFERSIZE", "16384")],
                "rtc.nack_buffer_size",
                "power of 2",
            ),
            (
                None,
                &[("RTCD_STORE_DATASOURCE", "")],
                "store.data_source",
                "should not be empty",
            ),
            (
                None,
                &[("RTCD_LOGGER_CONSOLELEVEL", "LOUD")],
                "logger.console_level",
                "invalid level",
            ),
            (
                None,
                &[
                    ("RTCD_LOGGER_ENABLECONSOLE", "false"),
                    ("RTCD_LOGGER_ENABLEFILE", "false"),
                ],
                "logger.enable_console",
                "at least one",
            ),
            (
                None,
                &[("RTCD_LOGGER_FILELOCATION", "")],
                "logger.file_location",
                "should not be empty",
            ),
            (
                Some("[rtc]\nice_port_udp = \"x\""),
                &[],
                "rtc.ice_port_udp",
                "invalid type",
            ),
            (
                Some("[rtc]\nnack_disable_copy = 3"),
                &[],
                "rtc.nack_disable_copy",
                "invalid type",
            ),
            (Some("[api]\nhttp = 1"), &[], "api.http", "expected a table"),
        ];
        for (file, env, key, reason) in cases {
            let e = load_with(*file, env).expect_err(key);
            assert_eq!(e.key, *key, "{e}");
            assert!(e.reason.contains(reason), "{key}: {e}");
            assert_eq!(e.env.as_deref(), Some(ENV.env_name(key).as_str()));
            assert!(!e.to_string().contains('\n'));
        }
        let e = load_with(Some("[api\nbroken"), &[]).unwrap_err();
        assert!(
            e.to_string().starts_with("failed to parse config file"),
            "{e}"
        );
        // Valid corner values.
        for (k, v) in [
            ("RTCD_RTC_NACKBUFFERSIZE", "0"),
            ("RTCD_RTC_NACKBUFFERSIZE", "8192"),
            (
                "RTCD_RTC_ICEHOSTPORTOVERRIDE",
                "127.0.0.1/8443,10.0.0.1/8444",
            ),
            ("RTCD_RTC_ICEHOSTOVERRIDE", "rtcd.example.com"),
            (
                "RTCD_RTC_ICEHOSTOVERRIDE",
                "8.8.8.8/10.0.2.2,8.8.4.4/10.0.2.1",
            ),
        ] {
            load_with(None, &[(k, v)]).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
        }
    }

    #[test]
    fn port_override_forms() {
        assert_eq!(parse_port_override("30443"), Ok(PortOverride::Port(30443)));
        assert_eq!(parse_port_override(""), Ok(PortOverride::None));
        assert_eq!(
            parse_port_override("10.0.0.1/8443,10.0.0.2/8444"),
            Ok(PortOverride::Map(vec![
                ("10.0.0.1".into(), 8443),
                ("10.0.0.2".into(), 8444)
            ]))
        );
        assert!(
            parse_port_override("10.0.0.1/8443,10.0.0.1/8444")
                .unwrap_err()
                .contains("duplicate mapping")
        );
    }

    #[test]
    fn sample_config_loads_and_documents_every_key() {
        let sample = include_str!("../../../config/rtcd.sample.toml");
        let l = load_with(Some(sample), &[]).unwrap();
        assert!(l.notices.is_empty(), "{:?}", l.notices);
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let mut keys = Vec::new();
        fn walk(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
            if let toml::Value::Table(t) = v {
                for (k, v) in t {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if v.is_table() {
                        walk(v, &p, out)
                    } else {
                        out.push(p)
                    }
                }
            }
        }
        walk(&defaults, "", &mut keys);
        for k in keys {
            let leaf = k.rsplit('.').next().unwrap();
            assert!(sample.contains(leaf), "sample config does not mention {k}");
            assert!(
                sample.contains(&ENV.env_name(&k)),
                "sample config does not name {}",
                ENV.env_name(&k)
            );
        }
    }
}
