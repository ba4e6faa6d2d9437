//! `calls-loadtest`: simulates many Calls participants in one process against an rtcd-compatible
//! server (or Janus's VideoRoom, for comparison) and reports what they received.

use calls_loadtest::peer::RxMode;
use calls_loadtest::rtcd::Credentials;
use calls_loadtest::run::{self, LoadConfig, Target};
use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Simulated Mattermost Calls participants against an rtcd-compatible SFU",
    long_about = "Joins calls x participants simulated users through the rtcd WebSocket protocol \
                  (playing the Calls plugin), with full ICE/DTLS/SRTP per participant, replays \
                  sample Opus speech and VP8 screen/camera media with real timing, and reports \
                  delivery, loss and join-to-media latency. Bounded: it stops by itself after \
                  --warmup + --duration past the last join."
)]
struct Args {
    /// rtcd's HTTP/WebSocket API.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8045",
        env = "CALLS_LOADTEST_URL"
    )]
    url: String,
    /// Client ID the tool registers and connects as (the plugin's role).
    #[arg(
        long,
        default_value = "calls-loadtest",
        env = "CALLS_LOADTEST_CLIENT_ID"
    )]
    client_id: String,
    /// Auth key of that client (at least 32 characters).
    #[arg(
        long,
        default_value = "calls-loadtest-key-0000000000000000",
        env = "CALLS_LOADTEST_AUTH_KEY"
    )]
    auth_key: String,
    /// rtcd's admin secret, to register the client when self-registration is off.
    #[arg(long, env = "CALLS_LOADTEST_ADMIN_SECRET")]
    admin_secret: Option<String>,
    /// Drive Janus's VideoRoom over this WebSocket URL instead of rtcd (e.g. ws://10.0.0.1:8188).
    #[arg(long)]
    janus: Option<String>,
    #[arg(long, default_value_t = 1)]
    calls: usize,
    /// Participants per call.
    #[arg(long, default_value_t = 10)]
    participants: usize,
    /// Unmuted participants per call (they loop speech).
    #[arg(long, default_value_t = 1)]
    unmuted: usize,
    /// Calls with a screen share (simulcast l/h VP8 from the first participant).
    #[arg(long, default_value_t = 0)]
    screen: usize,
    /// Participants per call with a camera on.
    #[arg(long, default_value_t = 0)]
    video: usize,
    /// Joins per second.
    #[arg(long, default_value_t = 50.0)]
    join_rate: f64,
    /// Seconds between the last join and the measured phase.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds of the measured phase, with everybody in their call.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Local address for the participants' sockets (their ICE candidate).
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Put every participant on one shared socket, each with its own address from this IPv4
    /// prefix (batched sendmmsg/recvmmsg: far less generator CPU for big runs). Root sets the
    /// prefix up once: `ip route add local 10.204.0.0/16 dev lo`. The server must reach the
    /// prefix (same host or network namespace).
    #[arg(long, value_name = "PREFIX")]
    anyip: Option<calls_loadtest::net::Prefix>,
    /// `count` reads RTP headers only; `full` decrypts every packet like a real client.
    #[arg(long, value_enum, default_value_t = RxMode::Full)]
    rx: RxMode,
    /// Directory with speech_0.ogg, speech_1.ogg, screen_l.ivf, screen_h.ivf, video_l.ivf.
    #[arg(long, env = "CALLS_TESTDATA")]
    media_dir: Option<PathBuf>,
    /// Seconds a participant may take to connect before it counts as failed.
    #[arg(long, default_value_t = 20.0)]
    connect_timeout: f64,
    /// Pin the generator to this CPU core.
    #[arg(long)]
    pin_core: Option<usize>,
    /// Also write the result as JSON to this file ("-" for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress display.
    #[arg(long)]
    quiet: bool,
}

fn secs(name: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("--{name} must be a non-negative number of seconds"))
}

fn main() {
    let args = Args::parse();
    if let Err(e) = real_main(args) {
        eprintln!("calls-loadtest: {e}");
        std::process::exit(1);
    }
}

fn real_main(a: Args) -> Result<(), String> {
    if let Some(core) = a.pin_core {
        calls_loadtest::affinity::pin(core)?;
    }
    if a.auth_key.len() < 32 {
        return Err("--auth-key must be at least 32 characters (rtcd refuses shorter keys)".into());
    }
    let target = match a.janus {
        Some(ws_url) => Target::Janus { ws_url },
        None => Target::Rtcd {
            url: a.url.trim_end_matches('/').to_owned(),
            creds: Credentials {
                client_id: a.client_id,
                auth_key: a.auth_key,
                admin_secret: a.admin_secret,
            },
        },
    };
    let media_dir = match a.media_dir {
        Some(d) => d,
        None => calls_loadtest::media::testdata_dir()?,
    };
    let cfg = LoadConfig {
        target,
        calls: a.calls,
        participants: a.participants,
        unmuted: a.unmuted,
        screen_calls: a.screen,
        video: a.video,
        join_rate: a.join_rate,
        warmup: secs("warmup", a.warmup)?,
        duration: secs("duration", a.duration)?,
        bind_ip: a.bind_ip,
        rx: a.rx,
        media_dir,
        connect_timeout: secs("connect-timeout", a.connect_timeout)?,
        progress: !a.quiet,
        anyip: a.anyip,
    };
    let result = run::run(cfg, &mut |_| {})?;
    let json = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
    match a.json.as_deref() {
        Some(p) if p.as_os_str() == "-" => println!("{json}"),
        Some(p) => std::fs::write(p, json + "\n").map_err(|e| format!("{}: {e}", p.display()))?,
        None => {}
    }
    eprint!("{}", run::table(&result));
    if result.failed > 0 || result.hearing_all < result.listeners {
        std::process::exit(2);
    }
    Ok(())
}
