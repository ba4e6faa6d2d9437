//! Logging per the `[logger]` section both daemons share: console (stdout) and/or a size-rotated
//! file, each JSON or plain, each with its own level.
//!
//! Per-session context (callID, sessionID) travels as `tracing` span fields, which both formats
//! attach to every event logged inside the span.

use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::{
    Layer, filter::Targets, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

/// Rotated at 100 MB and compressed, like the Go services' lumberjack target.
const MAX_FILE_BYTES: usize = 100 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LoggerConfig {
    pub enable_console: bool,
    pub console_json: bool,
    pub console_level: String,
    pub enable_file: bool,
    pub file_json: bool,
    pub file_level: String,
    pub file_location: String,
    pub enable_color: bool,
}

impl Default for LoggerConfig {
    fn default() -> Self {
        Self::with_file("service.log")
    }
}

impl LoggerConfig {
    /// The Go defaults, with the daemon's own log file name.
    pub fn with_file(file_location: &str) -> Self {
        Self {
            enable_console: true,
            console_json: false,
            console_level: "INFO".into(),
            enable_file: true,
            file_json: true,
            file_level: "DEBUG".into(),
            file_location: file_location.into(),
            enable_color: false,
        }
    }

    /// The Go validation, with keys named under `section` (normally `logger`).
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{section}.{k}");
        if !self.enable_console && !self.enable_file {
            return Err(ConfigError::new(
                key("enable_console"),
                "should enable at least one logging target (console or file)",
            ));
        }
        if self.enable_console && parse_level(&self.console_level).is_none() {
            return Err(ConfigError::new(
                key("console_level"),
                format!("invalid level {:?}: {LEVELS}", self.console_level),
            ));
        }
        if self.enable_file {
            if parse_level(&self.file_level).is_none() {
                return Err(ConfigError::new(
                    key("file_level"),
                    format!("invalid level {:?}: {LEVELS}", self.file_level),
                ));
            }
            if self.file_location.is_empty() {
                return Err(ConfigError::new(
                    key("file_location"),
                    "should not be empty when enable_file is true",
                ));
            }
        }
        Ok(())
    }
}

const LEVELS: &str = "expected one of panic, fatal, error, warn, info, debug, trace, stdlog";

/// mlog level names, case-insensitive. A level enables itself and everything more severe.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    Some(match s.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" => LevelFilter::ERROR,
        "warn" | "warning" => LevelFilter::WARN,
        "info" | "stdlog" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

/// The project's own crates log at `level`; libraries (hyper, tungstenite, ...) at most at INFO,
/// so that a DEBUG file is about this service rather than about every socket poll.
///
/// `RUST_LOG` (e.g. `str0m=trace,rtcd=debug`) replaces this per-target choice, for debugging.
fn targets(level: LevelFilter) -> Targets {
    if let Some(t) = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
    {
        return t;
    }
    let mut t = Targets::new().with_default(level.min(LevelFilter::INFO));
    for krate in [
        "rtcd",
        "calls_core",
        "calls_proto",
        "calls_offloader",
        "calls_loadtest",
        "calls_sfu",
    ] {
        t = t.with_target(krate, level);
    }
    t
}

/// Keeps the file writer alive; dropping it flushes buffered lines.
pub struct LogGuard {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// One output: JSON or plain lines at `level`, to `writer`.
fn output<W>(writer: W, json: bool, ansi: bool, level: LevelFilter) -> BoxedLayer
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = fmt::layer()
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi && !json);
    if json {
        layer
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(targets(level))
            .boxed()
    } else {
        layer.with_filter(targets(level)).boxed()
    }
}

/// Installs the global subscriber. Fails (without panicking) if the log file cannot be opened.
pub fn init(cfg: &LoggerConfig) -> Result<LogGuard, String> {
    let console = cfg.enable_console.then(|| {
        let level = parse_level(&cfg.console_level).unwrap_or(LevelFilter::INFO);
        output(std::io::stdout, cfg.console_json, cfg.enable_color, level)
    });

    let mut guard = None;
    let file = if cfg.enable_file {
        let path = std::path::Path::new(&cfg.file_location);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
        }
        // Probe first so that an unwritable location is a start-up error, not a silent loss.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                format!(
                    "cannot open log file {} (logger.file_location): {e}",
                    path.display()
                )
            })?;
        let rotating = file_rotate::FileRotate::new(
            path,
            file_rotate::suffix::AppendTimestamp::default(
                file_rotate::suffix::FileLimit::Unlimited,
            ),
            file_rotate::ContentLimit::BytesSurpassed(MAX_FILE_BYTES),
            file_rotate::compression::Compression::OnRotate(0),
            None,
        );
        let (writer, g) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .finish(rotating);
        guard = Some(g);
        let level = parse_level(&cfg.file_level).unwrap_or(LevelFilter::DEBUG);
        Some(output(writer, cfg.file_json, false, level))
    } else {
        None
    };

    // Both outputs layer over the same registry, as a list.
    let layers: Vec<BoxedLayer> = console.into_iter().chain(file).collect();
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| format!("failed to install logger: {e}"))?;
    Ok(LogGuard { _file: guard })
}
