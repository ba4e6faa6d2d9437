//! Connects the media plane (`calls-sfu`) to the control plane: which addresses to listen on and
//! advertise (spec rtcd.md §3.1, §3.3), and the channels between the two.

use crate::config::{PortOverride, RtcConfig, parse_ip_list, parse_port_override};
use crate::control::{MediaCommand, MediaEvent};
use crate::service::{ControlHandle, MediaPlane};
use calls_sfu::shell::{Command, Endpoint, Report, Shell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use tokio::sync::mpsc;

/// Commands queued for the SFU task (rtcd's RTC queue size).
const QUEUE: usize = 2000;

/// The local UDP endpoints and what each advertises.
///
/// - Local IPs: `ice_address_udp`, or every address of every interface that is up.
/// - `ice_host_override`: an IP or hostname replaces every non-loopback local IP of its family
///   (all of them when only one exists); `EXT/INT,…` pairs map exactly the listed INT addresses,
///   and addresses not listed keep their own IP (a deliberate choice: pion 4.2.6 would advertise
///   every EXT of the list for them).
/// - `ice_host_port_override`: applies only to addresses that an override changed, never to
///   local ones; the `LOCALIP/PORT` form picks the entry of this node's own IP.
/// - Otherwise, public IPs discovered by STUN at start-up map their local IPs (`discovered`).
pub fn endpoints(
    rtc: &RtcConfig,
    local_ips: &[IpAddr],
    tcp: bool,
    discovered: &HashMap<IpAddr, IpAddr>,
) -> Result<Vec<Endpoint>, String> {
    let (key, list, port) = if tcp {
        (
            "rtc.ice_address_tcp",
            &rtc.ice_address_tcp,
            rtc.ice_port_tcp as u16,
        )
    } else {
        (
            "rtc.ice_address_udp",
            &rtc.ice_address_udp,
            rtc.ice_port_udp as u16,
        )
    };
    let ips = listen_ips(list, local_ips).map_err(|e| format!("{key}: {e}"))?;
    let host = rtc.ice_host_override.trim();
    let mut map: HashMap<IpAddr, IpAddr> = HashMap::new();
    if host.is_empty() {
        map.clone_from(discovered);
    } else if host.contains('/') {
        for pair in host.split(',') {
            if let Some((ext, int)) = pair.split_once('/')
                && let (Ok(ext), Ok(int)) = (ext.trim().parse(), int.trim().parse())
            {
                map.insert(int, ext);
            }
        }
    } else if !host.is_empty() {
        let ext = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => (host, 0)
                .to_socket_addrs()
                .map_err(|e| format!("rtc.ice_host_override: cannot resolve {host:?}: {e}"))?
                .map(|a| a.ip())
                .find(|ip| ip.is_ipv4() || rtc.enable_ipv6)
                .ok_or_else(|| format!("rtc.ice_host_override: {host:?} has no usable address"))?,
        };
        let same_family: Vec<IpAddr> = ips
            .iter()
            .copied()
            .filter(|ip| ip.is_ipv4() == ext.is_ipv4())
            .collect();
        for ip in &same_family {
            if same_family.len() == 1 || !ip.is_loopback() {
                map.insert(*ip, ext);
            }
        }
    }
    let port_override = match parse_port_override(&rtc.ice_host_port_override)
        .map_err(|e| format!("rtc.ice_host_port_override: {e}"))?
    {
        PortOverride::None => None,
        PortOverride::Port(p) => Some(p),
        PortOverride::Map(m) => m
            .iter()
            .find(|(ip, _)| ip.parse::<IpAddr>().is_ok_and(|ip| ips.contains(&ip)))
            .map(|(_, p)| *p),
    };
    let mut out: Vec<Endpoint> = Vec::new();
    for ip in ips {
        let ext = map.get(&ip).copied().filter(|e| *e != ip);
        let advertised = match ext {
            Some(e) => SocketAddr::new(e, port_override.unwrap_or(port)),
            None => SocketAddr::new(ip, port),
        };
        if out.iter().all(|e| e.advertised != advertised) {
            out.push(Endpoint {
                local: SocketAddr::new(ip, port),
                advertised,
            });
        }
    }
    if out.is_empty() {
        return Err(format!("no valid address to listen on was found ({key})"));
    }
    Ok(out)
}

fn listen_ips(list: &str, local_ips: &[IpAddr]) -> Result<Vec<IpAddr>, String> {
    let ips = parse_ip_list(list)?;
    Ok(
        if ips.is_empty() || ips.iter().any(|ip| ip.is_unspecified()) {
            local_ips.to_vec()
        } else {
            ips
        },
    )
}

/// STUN discovery of the public address (spec §3.3), once at start-up and only without
/// `ice_host_override`: the first `ice_servers` entry whose URLs are all `stun:`/`stuns:` gives
/// the server (its first URL, which must name a port). From each local UDP address, on
/// `ice_port_udp` itself (before the media socket exists) so the mapping is the one clients will
/// reach, one Binding request with a 5 s timeout. Addresses whose discovery fails keep their own IP.
pub async fn stun_discover(rtc: &RtcConfig, local_ips: &[IpAddr]) -> HashMap<IpAddr, IpAddr> {
    let mut found = HashMap::new();
    if !rtc.ice_host_override.trim().is_empty() {
        return found;
    }
    let Some(url) = rtc
        .ice_servers
        .iter()
        .find(|s| {
            !s.urls.is_empty()
                && s.urls
                    .iter()
                    .all(|u| u.starts_with("stun:") || u.starts_with("stuns:"))
        })
        .and_then(|s| s.urls.first())
    else {
        return found;
    };
    let target = url.trim_start_matches("stuns:").trim_start_matches("stun:");
    let server = match tokio::net::lookup_host(target).await {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => a,
            None => {
                tracing::warn!(url = %url, "rtc.ice_servers: STUN server has no address; advertising local IPs");
                return found;
            }
        },
        Err(e) => {
            tracing::warn!(url = %url, error = %e, "rtc.ice_servers: cannot resolve the STUN server (it must be host:port); advertising local IPs");
            return found;
        }
    };
    let Ok(ips) = listen_ips(&rtc.ice_address_udp, local_ips) else {
        return found;
    };
    let port = rtc.ice_port_udp as u16;
    let lookups = ips
        .into_iter()
        .filter(|ip| ip.is_ipv4() == server.is_ipv4())
        .map(|ip| async move { (ip, stun_binding(SocketAddr::new(ip, port), server).await) });
    for (ip, res) in futures_util::future::join_all(lookups).await {
        match res {
            Ok(public) => {
                tracing::info!(local = %ip, public = %public, "rtc: public address discovered by STUN");
                found.insert(ip, public);
            }
            Err(e) => {
                tracing::warn!(local = %ip, server = %server, error = %e, "rtc: STUN discovery failed; advertising the local IP");
            }
        }
    }
    found
}

async fn stun_binding(local: SocketAddr, server: SocketAddr) -> Result<IpAddr, String> {
    let sock = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| format!("cannot bind {local}: {e}"))?;
    let txid = calls_sfu::stun::new_txid();
    let req = calls_sfu::stun::binding_request(txid);
    sock.send_to(&req, server)
        .await
        .map_err(|e| format!("cannot send to {server}: {e}"))?;
    let mut buf = [0u8; 1500];
    let wait = async {
        loop {
            let (n, from) = sock.recv_from(&mut buf).await?;
            if from == server
                && let Some(addr) = calls_sfu::stun::mapped_address(&buf[..n], txid)
            {
                return Ok::<_, std::io::Error>(addr.ip());
            }
        }
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), wait).await {
        Ok(Ok(ip)) => Ok(ip),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

/// The control plane's handle on the SFU task.
pub struct SfuPlane {
    tx: mpsc::Sender<Command>,
}

impl MediaPlane for SfuPlane {
    fn command(&mut self, cmd: MediaCommand) {
        let c = match cmd {
            MediaCommand::InitSession(cfg) => Command::Init(cfg),
            MediaCommand::Rtc(m) => Command::Rtc(m),
            MediaCommand::CloseSession { session_id } => Command::Close(session_id),
        };
        if let Err(e) = self.tx.try_send(c) {
            tracing::error!(error = %e, "rtc queue full: media command dropped");
        }
    }
}

/// Binds the media sockets. Done before anything else starts, so a busy port is a start-up error.
pub async fn bind(rtc: &RtcConfig) -> Result<(Shell, Vec<Endpoint>), String> {
    let ips = calls_sfu::shell::local_ips(rtc.enable_ipv6)
        .map_err(|e| format!("failed to list local addresses: {e}"))?;
    let discovered = stun_discover(rtc, &ips).await;
    let udp = endpoints(rtc, &ips, false, &discovered)?;
    let tcp = endpoints(rtc, &ips, true, &discovered)?;
    let mut shell = Shell::bind(&udp, &tcp).await.map_err(|e| {
        format!(
            "{e} (rtc.ice_address_udp, rtc.ice_port_udp, rtc.ice_address_tcp, rtc.ice_port_tcp)"
        )
    })?;
    shell.nack_buffer_size = rtc.nack_buffer_size as usize;
    Ok((shell, udp.into_iter().chain(tcp).collect()))
}

/// The plane to give the control task, and the receiver the SFU task will read.
pub fn channel() -> (SfuPlane, mpsc::Receiver<Command>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (SfuPlane { tx }, rx)
}

/// Starts the SFU task and the pump that hands its reports to the control plane.
pub fn start(shell: Shell, cmds: mpsc::Receiver<Command>, control: ControlHandle) {
    let (rep_tx, mut rep_rx) = mpsc::channel(QUEUE);
    shell.spawn(cmds, rep_tx);
    tokio::spawn(async move {
        while let Some(r) = rep_rx.recv().await {
            let ev = match r {
                Report::Signal(m) => MediaEvent::Signal(m),
                Report::Vad { session_id, on } => MediaEvent::Vad { session_id, on },
                Report::SessionEnded { session_id, reason } => {
                    MediaEvent::SessionEnded { session_id, reason }
                }
            };
            control.media_event(ev).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtc(addr: &str, host: &str, port_override: &str) -> RtcConfig {
        let mut c = crate::config::Config::default().rtc;
        c.ice_address_udp = addr.into();
        c.ice_host_override = host.into();
        c.ice_host_port_override = port_override.into();
        c
    }

    fn endpoints_udp(rtc: &RtcConfig, ips: &[IpAddr]) -> Result<Vec<Endpoint>, String> {
        endpoints(rtc, ips, false, &HashMap::new())
    }

    fn adv(eps: &[Endpoint]) -> Vec<String> {
        eps.iter()
            .map(|e| format!("{}>{}", e.local, e.advertised))
            .collect()
    }

    #[test]
    fn stun_discovered_addresses_map_their_local_ip_and_take_the_port_override() {
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()];
        let found: HashMap<IpAddr, IpAddr> =
            [("10.0.0.5".parse().unwrap(), "203.0.113.9".parse().unwrap())].into();
        assert_eq!(
            adv(&endpoints(&rtc("", "", "30443"), &ips, false, &found).unwrap()),
            [
                "127.0.0.1:8443>127.0.0.1:8443",
                "10.0.0.5:8443>203.0.113.9:30443"
            ]
        );
        // An explicit host override wins over discovery.
        assert_eq!(
            adv(&endpoints(&rtc("", "198.51.100.1", ""), &ips, false, &found).unwrap()),
            [
                "127.0.0.1:8443>127.0.0.1:8443",
                "10.0.0.5:8443>198.51.100.1:8443"
            ]
        );
    }

    #[test]
    fn advertised_addresses_follow_rtcd_rules() {
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()];
        assert_eq!(
            adv(&endpoints_udp(&rtc("", "", ""), &ips).unwrap()),
            [
                "127.0.0.1:8443>127.0.0.1:8443",
                "10.0.0.5:8443>10.0.0.5:8443"
            ]
        );
        // A single override IP replaces non-loopback addresses only; the port override follows it.
        assert_eq!(
            adv(&endpoints_udp(&rtc("", "8.8.8.8", "30443"), &ips).unwrap()),
            [
                "127.0.0.1:8443>127.0.0.1:8443",
                "10.0.0.5:8443>8.8.8.8:30443"
            ]
        );
        // With one local address, even loopback is mapped.
        assert_eq!(
            adv(&endpoints_udp(&rtc("127.0.0.1", "1.2.3.4", ""), &ips).unwrap()),
            ["127.0.0.1:8443>1.2.3.4:8443"]
        );
        // NAT pairs map exactly the listed addresses.
        assert_eq!(
            adv(&endpoints_udp(&rtc("", "8.8.4.4/10.0.0.5", ""), &ips).unwrap()),
            [
                "127.0.0.1:8443>127.0.0.1:8443",
                "10.0.0.5:8443>8.8.4.4:8443"
            ]
        );
        // The LOCALIP/PORT form picks this node's entry; local addresses keep the real port.
        assert_eq!(
            adv(&endpoints_udp(&rtc("", "8.8.8.8", "10.0.0.9/1111,10.0.0.5/2222"), &ips).unwrap()),
            [
                "127.0.0.1:8443>127.0.0.1:8443",
                "10.0.0.5:8443>8.8.8.8:2222"
            ]
        );
        assert_eq!(
            adv(&endpoints_udp(&rtc("", "", "30443"), &ips).unwrap())[1],
            "10.0.0.5:8443>10.0.0.5:8443",
            "no override, no port change"
        );
        assert_eq!(
            adv(&endpoints_udp(&rtc("0.0.0.0", "", ""), &ips).unwrap()).len(),
            2,
            "0.0.0.0 means every interface"
        );
        assert!(endpoints(&rtc("", "", ""), &[], false, &HashMap::new()).is_err());
        // TCP follows its own address list and port, with the same overrides.
        let mut c = rtc("", "8.8.8.8", "30443");
        c.ice_address_tcp = "10.0.0.5".into();
        c.ice_port_tcp = 9443;
        assert_eq!(
            adv(&endpoints(&c, &ips, true, &HashMap::new()).unwrap()),
            ["10.0.0.5:9443>8.8.8.8:30443"]
        );
    }
}
