//! The raw UDP ceiling of this machine: how many datagrams per second one core pushes through
//! `sendmmsg` to loopback receivers, with the SFU's own batched send path
//! (`calls_sfu::udp::send`). A sink thread (on another core) drains the receivers with
//! `recvmmsg`. Bounded in time; prints one JSON line.

use calls_loadtest::affinity;
use clap::Parser;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Raw sendmmsg ceiling of one core on loopback")]
struct Args {
    /// Core the sender is pinned to.
    #[arg(long, default_value_t = 0)]
    core: usize,
    /// Core the sink is pinned to.
    #[arg(long, default_value_t = 1)]
    sink_core: usize,
    /// How long to send (at most 60 s).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Payload bytes per datagram (an Opus packet is about 100-200, a video packet about 1200).
    #[arg(long, default_value_t = 200)]
    payload: usize,
    /// Receivers the datagrams are spread over, as an SFU fans out.
    #[arg(long, default_value_t = 16)]
    receivers: usize,
}

fn main() {
    let args = Args::parse();
    let seconds = args.seconds.clamp(0.1, 60.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _enter = rt.enter();
    let sinks: Vec<std::net::UdpSocket> = (0..args.receivers.clamp(1, 1024))
        .map(|_| {
            calls_sfu::udp::bind_std("127.0.0.1:0".parse().unwrap(), false).expect("bind sink")
        })
        .collect();
    let dests: Vec<SocketAddr> = sinks.iter().map(|s| s.local_addr().unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let sink = {
        let (stop, received, core) = (stop.clone(), received.clone(), args.sink_core);
        std::thread::spawn(move || {
            let _ = affinity::pin(core);
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let mut got = 0;
                for s in &sinks {
                    while s.recv_from(&mut buf).is_ok() {
                        got += 1;
                    }
                }
                received.fetch_add(got, Ordering::Relaxed);
                if got == 0 {
                    std::thread::yield_now();
                }
            }
        })
    };
    let pinned = affinity::pin(args.core);
    let sock = calls_sfu::udp::bind("127.0.0.1:0".parse().unwrap()).expect("bind sender");
    let payload = vec![0x80u8; args.payload.clamp(12, 1400)];
    let batch: Vec<(SocketAddr, &[u8])> = (0..calls_sfu::udp::BATCH)
        .map(|i| (dests[i % dests.len()], payload.as_slice()))
        .collect();
    let cpu0 = affinity::thread_cpu_seconds();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut sent: u64 = 0;
    let mut calls: u64 = 0;
    while Instant::now() < end {
        for _ in 0..64 {
            sent += calls_sfu::udp::send(&sock, &batch).sent as u64;
            calls += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = affinity::thread_cpu_seconds() - cpu0;
    stop.store(true, Ordering::Relaxed);
    let _ = sink.join();
    let out = serde_json::json!({
        "datagrams_sent": sent,
        "datagrams_received": received.load(Ordering::Relaxed),
        "sendmmsg_calls": calls,
        "seconds": wall,
        "sender_cpu_seconds": cpu,
        "datagrams_per_second": sent as f64 / wall,
        "datagrams_per_cpu_second": if cpu > 0.0 { sent as f64 / cpu } else { 0.0 },
        "payload_bytes": payload.len(),
        "receivers": dests.len(),
        "pinned": pinned.is_ok(),
    });
    println!("{out}");
}
