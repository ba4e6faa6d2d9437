//! calls-offloader's configuration (spec §5): every key of the Go service, its default, its
//! validation and its environment variable (no prefix: `JOBS_MAXCONCURRENTJOBS`). Loading itself
//! is [`calls_core::config`].
//!
//! Differences from Go, none visible to the plugin: defaults apply to keys a present file leaves
//! out (Go zeroes them, which usually fails validation), unknown keys are reported, and the
//! backend sub-keys Go lists but always overwrites (`JOBS_DOCKER_MAXCONCURRENTJOBS`, ...) are
//! reported as having no effect instead of aborting start-up on a value like `7d`.

use calls_core::auth::SecurityConfig;
use calls_core::config::{ConfigError, EnvNaming, Loaded, Validate};
use calls_core::http::HttpConfig;
use calls_core::logging::LoggerConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Go's `envconfig` with an empty prefix: the Go field path, upper-cased, joined by `_`.
pub const ENV: EnvNaming = EnvNaming {
    prefix: "",
    renames: &[],
};
/// Go's `-config` default, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/config.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub jobs: JobsConfig,
    pub logger: LoggerConfig,
}

// `[api]` and `[store]` are the same in both daemons.
pub use calls_core::config::{ApiConfig, StoreConfig};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobsConfig {
    /// `docker` or `kubernetes`.
    pub api_type: String,
    pub max_concurrent_jobs: i64,
    /// `N[mhd]`; `0d` (or `0m`, `0h`) keeps failed jobs forever. Parsed by [`parse_retention`].
    #[serde(deserialize_with = "calls_core::config::int_or_string")]
    pub failed_jobs_retention_time: String,
    /// Only used to validate runner images (`<image_registry>/calls-recorder:vX.Y.Z`).
    pub image_registry: String,
    pub docker: DockerConfig,
    pub kubernetes: KubernetesConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DockerConfig {
    /// Copy job containers' stdout/stderr to the offloader's own.
    pub output_logs: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct KubernetesConfig {
    /// JSON or YAML map from job type to a Kubernetes `ResourceRequirements`.
    pub jobs_resource_requirements: String,
    pub persistent_volume_claim_name: String,
    /// Comma-separated sysctls set by privileged init containers (`a.b=1,c.d=2`).
    pub node_sysctls: String,
}

/// The backend jobs run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiType {
    Docker,
    Kubernetes,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api: ApiConfig {
                http: HttpConfig::with_address(":4545"),
                security: SecurityConfig::default(),
            },
            store: StoreConfig {
                data_source: "/tmp/calls-offloader-db".into(),
            },
            jobs: JobsConfig {
                api_type: "docker".into(),
                max_concurrent_jobs: 2,
                failed_jobs_retention_time: "0d".into(),
                image_registry: "mattermost".into(),
                docker: DockerConfig::default(),
                kubernetes: KubernetesConfig::default(),
            },
            logger: LoggerConfig::with_file("calls-offloader.log"),
        }
    }
}

/// Go's exact error text for anything but `^(\d+)([mhd])$`.
pub const RETENTION_FORMAT_ERROR: &str = "invalid retention time format";

/// Parses `failed_jobs_retention_time`: `^(\d+)([mhd])$`, `d` being 24 h. A bare `0`, seconds,
/// compound values (`10h10m`) and anything else are [`RETENTION_FORMAT_ERROR`].
pub fn parse_retention(s: &str) -> Result<Duration, String> {
    let Some(unit) = s.chars().last() else {
        return Err(RETENTION_FORMAT_ERROR.into());
    };
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RETENTION_FORMAT_ERROR.into());
    }
    let unit_secs: u64 = match unit {
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(RETENTION_FORMAT_ERROR.into()),
    };
    // Kubernetes carries it as an int32 of seconds (`ttlSecondsAfterFinished`).
    let too_large = || format!("{s:?} is too large (at most {} days)", i32::MAX / 86400);
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    let secs = n.checked_mul(unit_secs).ok_or_else(too_large)?;
    if secs > i32::MAX as u64 {
        return Err(too_large());
    }
    Ok(Duration::from_secs(secs))
}

impl Config {
    pub fn api_type(&self) -> ApiType {
        if self.jobs.api_type == "kubernetes" {
            ApiType::Kubernetes
        } else {
            ApiType::Docker
        }
    }

    /// The parsed retention; 0 means forever. Valid once [`Validate::validate`] passed.
    pub fn retention(&self) -> Duration {
        parse_retention(&self.jobs.failed_jobs_retention_time).unwrap_or_default()
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.api.security.validate("api.security")?;
        self.api.http.validate("api.http")?;
        if self.store.data_source.is_empty() {
            return Err(ConfigError::new("store.data_source", "should not be empty"));
        }
        let j = &self.jobs;
        if j.api_type != "docker" && j.api_type != "kubernetes" {
            return Err(ConfigError::new(
                "jobs.api_type",
                format!(
                    "invalid APIType value: {:?} (expected \"docker\" or \"kubernetes\")",
                    j.api_type
                ),
            ));
        }
        if j.max_concurrent_jobs <= 0 {
            return Err(ConfigError::new(
                "jobs.max_concurrent_jobs",
                format!("should be greater than zero, got {}", j.max_concurrent_jobs),
            ));
        }
        let retention = parse_retention(&j.failed_jobs_retention_time).map_err(|e| {
            ConfigError::new(
                "jobs.failed_jobs_retention_time",
                format!(
                    "{e}: {:?} (use N followed by m, h or d, e.g. 30m, 24h, 30d; 0d keeps failed jobs forever)",
                    j.failed_jobs_retention_time
                ),
            )
        })?;
        if !retention.is_zero() && retention < Duration::from_secs(60) {
            return Err(ConfigError::new(
                "jobs.failed_jobs_retention_time",
                "should be at least one minute",
            ));
        }
        if j.image_registry.is_empty() {
            return Err(ConfigError::new(
                "jobs.image_registry",
                "registry should not be empty",
            ));
        }
        if j.kubernetes.node_sysctls.split(',').any(|s| {
            !j.kubernetes.node_sysctls.is_empty() && (s.trim().is_empty() || !s.contains('='))
        }) {
            return Err(ConfigError::new(
                "jobs.kubernetes.node_sysctls",
                format!(
                    "{:?} should be a comma-separated list of name=value",
                    j.kubernetes.node_sysctls
                ),
            ));
        }
        if !j.kubernetes.jobs_resource_requirements.is_empty()
            && let Err(e) = serde_yaml::from_str::<
                std::collections::BTreeMap<String, serde_yaml::Value>,
            >(&j.kubernetes.jobs_resource_requirements)
        {
            return Err(ConfigError::new(
                "jobs.kubernetes.jobs_resource_requirements",
                format!("should be a JSON or YAML map from job type to resource requirements: {e}"),
            ));
        }
        self.logger.validate("logger")
    }
}

/// Variables Go's `env_config.md` lists for backend sub-fields that the top-level values always
/// overwrite: they never had an effect, so setting one only earns a notice.
const NO_EFFECT_VARS: &[(&str, &str)] = &[
    ("JOBS_DOCKER_MAXCONCURRENTJOBS", "JOBS_MAXCONCURRENTJOBS"),
    (
        "JOBS_DOCKER_FAILEDJOBSRETENTIONTIME",
        "JOBS_FAILEDJOBSRETENTIONTIME",
    ),
    ("JOBS_DOCKER_IMAGEREGISTRY", "JOBS_IMAGEREGISTRY"),
    (
        "JOBS_KUBERNETES_MAXCONCURRENTJOBS",
        "JOBS_MAXCONCURRENTJOBS",
    ),
    (
        "JOBS_KUBERNETES_FAILEDJOBSRETENTIONTIME",
        "JOBS_FAILEDJOBSRETENTIONTIME",
    ),
    ("JOBS_KUBERNETES_IMAGEREGISTRY", "JOBS_IMAGEREGISTRY"),
];

/// Loads the configuration from `path` and `env`.
pub fn load_with(
    path: &std::path::Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded<Config>, ConfigError> {
    // Go reads JOBS_FAILEDJOBSRETENTIONTIME with custom code; an empty value means "unset" there.
    let filtered = |name: &str| {
        env(name).filter(|v| !(name == "JOBS_FAILEDJOBSRETENTIONTIME" && v.is_empty()))
    };
    let mut loaded = calls_core::config::load(path, ENV, &filtered, None)?;
    for (var, instead) in NO_EFFECT_VARS {
        if env(var).is_some() {
            loaded
                .notices
                .push(format!("{var} has no effect (as in Go); use {instead}"));
        }
    }
    Ok(loaded)
}

/// Loads the configuration from `path` and the process environment.
pub fn load(path: &std::path::Path) -> Result<Loaded<Config>, ConfigError> {
    load_with(path, &calls_core::config::process_env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_from(
        toml_text: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Loaded<Config>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        if let Some(t) = toml_text {
            std::fs::write(&path, t).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with(&path, &|k| env.get(k).cloned())
    }

    #[test]
    fn env_names_have_no_prefix() {
        for (key, var) in [
            ("api.http.listen_address", "API_HTTP_LISTENADDRESS"),
            ("api.http.tls.cert_key", "API_HTTP_TLS_CERTKEY"),
            (
                "api.security.allow_self_registration",
                "API_SECURITY_ALLOWSELFREGISTRATION",
            ),
            (
                "api.security.session_cache.expiration_minutes",
                "API_SECURITY_SESSIONCACHE_EXPIRATIONMINUTES",
            ),
            ("store.data_source", "STORE_DATASOURCE"),
            ("jobs.api_type", "JOBS_APITYPE"),
            ("jobs.max_concurrent_jobs", "JOBS_MAXCONCURRENTJOBS"),
            (
                "jobs.failed_jobs_retention_time",
                "JOBS_FAILEDJOBSRETENTIONTIME",
            ),
            ("jobs.image_registry", "JOBS_IMAGEREGISTRY"),
            ("jobs.docker.output_logs", "JOBS_DOCKER_OUTPUTLOGS"),
            (
                "jobs.kubernetes.jobs_resource_requirements",
                "JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS",
            ),
            (
                "jobs.kubernetes.persistent_volume_claim_name",
                "JOBS_KUBERNETES_PERSISTENTVOLUMECLAIMNAME",
            ),
            (
                "jobs.kubernetes.node_sysctls",
                "JOBS_KUBERNETES_NODESYSCTLS",
            ),
            ("logger.enable_color", "LOGGER_ENABLECOLOR"),
            ("logger.file_location", "LOGGER_FILELOCATION"),
        ] {
            assert_eq!(ENV.env_name(key), var);
        }
    }

    #[test]
    fn missing_file_means_go_defaults() {
        let l = load_from(None, &[]).unwrap();
        assert!(l.notices[0].contains("using defaults"));
        let c = l.config;
        assert_eq!(c, Config::default());
        assert_eq!(c.api.http.listen_address, ":4545");
        assert!(!c.api.http.tls.enable);
        assert!(!c.api.security.allow_self_registration && !c.api.security.enable_admin);
        assert_eq!(c.api.security.session_cache.expiration_minutes, 1440);
        assert_eq!(c.store.data_source, "/tmp/calls-offloader-db");
        assert_eq!(c.api_type(), ApiType::Docker);
        assert_eq!(c.jobs.max_concurrent_jobs, 2);
        assert_eq!(c.retention(), Duration::ZERO, "keep failed jobs forever");
        assert_eq!(c.jobs.image_registry, "mattermost");
        assert!(!c.jobs.docker.output_logs);
        assert_eq!(c.jobs.kubernetes, KubernetesConfig::default());
        assert_eq!(c.logger.file_location, "calls-offloader.log");
        assert!(c.logger.enable_console && c.logger.enable_file && !c.logger.enable_color);
        assert_eq!(
            (
                c.logger.console_level.as_str(),
                c.logger.file_level.as_str()
            ),
            ("INFO", "DEBUG")
        );
    }

    #[test]
    fn file_then_env_and_defaults_under_a_partial_file() {
        let file = r#"
            [api]
            security.allow_self_registration = true
            [Jobs]
            max_concurrent_jobs = 8
            failed_jobs_retention_time = "30d"
            image_registry = "registry.example.com/mm"
            docker.output_logs = true
            kubernetes.node_sysctls = "kernel.unprivileged_userns_clone=1"
            [logger]
            enable_file = false
            [legacy]
            x = 1
        "#;
        let l = load_from(
            Some(file),
            &[
                ("JOBS_MAXCONCURRENTJOBS", "3"),
                ("JOBS_APITYPE", "kubernetes"),
                ("JOBS_FAILEDJOBSRETENTIONTIME", "12h"),
                (
                    "JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS",
                    r#"{"recording":{"limits":{"cpu":"2000m"}}}"#,
                ),
                ("JOBS_DOCKER_MAXCONCURRENTJOBS", "9"),
            ],
        )
        .unwrap();
        let c = &l.config;
        assert_eq!(c.jobs.max_concurrent_jobs, 3, "the environment wins");
        assert_eq!(c.api_type(), ApiType::Kubernetes);
        assert_eq!(c.retention(), Duration::from_secs(12 * 3600));
        assert_eq!(c.jobs.image_registry, "registry.example.com/mm");
        assert!(
            c.jobs.docker.output_logs,
            "table names match case-insensitively"
        );
        assert!(c.api.security.allow_self_registration);
        assert_eq!(
            c.api.security.session_cache.expiration_minutes, 1440,
            "defaults apply to keys the file leaves out"
        );
        assert_eq!(c.api.http.listen_address, ":4545");
        assert!(
            l.notices.iter().any(|n| n.contains("legacy")),
            "{:?}",
            l.notices
        );
        assert!(
            l.notices
                .iter()
                .any(|n| n.contains("JOBS_DOCKER_MAXCONCURRENTJOBS has no effect")),
            "{:?}",
            l.notices
        );
        // An empty variable is "unset" for the retention, as in Go.
        let c = load_from(Some(file), &[("JOBS_FAILEDJOBSRETENTIONTIME", "")])
            .unwrap()
            .config;
        assert_eq!(c.retention(), Duration::from_secs(30 * 86400));
    }

    #[test]
    fn retention_format() {
        for (s, want) in [
            ("0d", Some(0)),
            ("0m", Some(0)),
            ("0h", Some(0)),
            ("1m", Some(60)),
            ("30m", Some(1800)),
            ("24h", Some(86400)),
            ("7d", Some(7 * 86400)),
            ("007d", Some(7 * 86400)),
            ("0", None),
            ("45s", None),
            ("10dd", None),
            ("10h10m", None),
            ("", None),
            ("d", None),
            ("-1d", None),
            (" 1d", None),
            ("1D", None),
            ("1.5h", None),
            ("١d", None),
        ] {
            match (parse_retention(s), want) {
                (Ok(d), Some(w)) => assert_eq!(d, Duration::from_secs(w), "{s:?}"),
                (Err(e), None) => assert_eq!(e, RETENTION_FORMAT_ERROR, "{s:?}"),
                (got, want) => panic!("{s:?}: got {got:?}, want {want:?}"),
            }
        }
        assert!(
            parse_retention("99999999999999999999d")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_retention("30000d").unwrap_err().contains("too large"));
    }

    #[test]
    fn invalid_values_name_the_key_and_variable() {
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                None,
                &[("JOBS_FAILEDJOBSRETENTIONTIME", "0")],
                "jobs.failed_jobs_retention_time (env JOBS_FAILEDJOBSRETENTIONTIME): invalid retention time format: \"0\"",
            ),
            (
                None,
                &[("JOBS_FAILEDJOBSRETENTIONTIME", "45s")],
                "jobs.failed_jobs_retention_time (env JOBS_FAILEDJOBSRETENTIONTIME): invalid retention time format: \"45s\"",
            ),
            (
                Some("[jobs]\nfailed_jobs_retention_time = \"10dd\"\n"),
                &[],
                "jobs.failed_jobs_retention_time (env JOBS_FAILEDJOBSRETENTIONTIME): invalid retention time format: \"10dd\"",
            ),
            (
                Some("[jobs]\nfailed_jobs_retention_time = 0\n"),
                &[],
                "jobs.failed_jobs_retention_time (env JOBS_FAILEDJOBSRETENTIONTIME): invalid retention time format: \"0\"",
            ),
            (
                None,
                &[("JOBS_MAXCONCURRENTJOBS", "0")],
                "jobs.max_concurrent_jobs (env JOBS_MAXCONCURRENTJOBS): should be greater than zero, got 0",
            ),
            (
                None,
                &[("JOBS_MAXCONCURRENTJOBS", "many")],
                "jobs.max_concurrent_jobs (env JOBS_MAXCONCURRENTJOBS): invalid integer",
            ),
            (
                None,
                &[("JOBS_APITYPE", "nomad")],
                "jobs.api_type (env JOBS_APITYPE): invalid APIType value: \"nomad\"",
            ),
            (
                None,
                &[("JOBS_IMAGEREGISTRY", "")],
                "jobs.image_registry (env JOBS_IMAGEREGISTRY): registry should not be empty",
            ),
            (
                None,
                &[("JOBS_DOCKER_OUTPUTLOGS", "yes")],
                "jobs.docker.output_logs (env JOBS_DOCKER_OUTPUTLOGS): invalid boolean",
            ),
            (
                None,
                &[("JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS", "[1, 2")],
                "jobs.kubernetes.jobs_resource_requirements (env JOBS_KUBERNETES_JOBSRESOURCEREQUIREMENTS)",
            ),
            (
                None,
                &[("JOBS_KUBERNETES_NODESYSCTLS", "a=1,,b=2")],
                "jobs.kubernetes.node_sysctls (env JOBS_KUBERNETES_NODESYSCTLS)",
            ),
            (
                None,
                &[("API_SECURITY_ENABLEADMIN", "true")],
                "api.security.admin_secret_key (env API_SECURITY_ADMINSECRETKEY)",
            ),
            (
                None,
                &[("API_SECURITY_SESSIONCACHE_EXPIRATIONMINUTES", "0")],
                "api.security.session_cache.expiration_minutes (env API_SECURITY_SESSIONCACHE_EXPIRATIONMINUTES)",
            ),
            (
                None,
                &[("API_HTTP_LISTENADDRESS", "")],
                "api.http.listen_address (env API_HTTP_LISTENADDRESS)",
            ),
            (
                None,
                &[("STORE_DATASOURCE", "")],
                "store.data_source (env STORE_DATASOURCE): should not be empty",
            ),
            (
                None,
                &[("LOGGER_CONSOLELEVEL", "loud")],
                "logger.console_level (env LOGGER_CONSOLELEVEL)",
            ),
            (
                Some("[jobs]\nmax_concurrent_jobs = \"two\"\n"),
                &[],
                "jobs.max_concurrent_jobs (env JOBS_MAXCONCURRENTJOBS): invalid type",
            ),
        ];
        for (file, env, want) in cases {
            let e = load_from(*file, env).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}\nwant prefix {want}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    fn leaf_keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in t {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => leaf_keys(t, &key, out),
                _ => out.push(key),
            }
        }
    }

    #[test]
    fn sample_config_documents_every_key_and_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/calls-offloader.sample.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let l = load_with(&path, &|_| None).unwrap();
        assert!(
            l.notices.is_empty(),
            "unknown keys in the sample: {:?}",
            l.notices
        );
        let c = l.config;
        assert_eq!(c.retention(), Duration::from_secs(30 * 86400));
        assert!(c.api.security.allow_self_registration);
        let mut want = Vec::new();
        let Ok(toml::Value::Table(defaults)) = toml::Value::try_from(Config::default()) else {
            panic!("defaults are a table")
        };
        leaf_keys(&defaults, "", &mut want);
        let mut have = Vec::new();
        leaf_keys(&text.parse::<toml::Table>().unwrap(), "", &mut have);
        want.sort();
        have.sort();
        assert_eq!(
            have, want,
            "the sample lists exactly the configuration keys"
        );
        for key in &want {
            let var = ENV.env_name(key);
            assert!(
                text.contains(&format!("env {var}")),
                "{key}: {var} not documented"
            );
        }
    }
}
