//! Waking a sleeping host: the magic packets (UDP, a few, spaced) and the probes every half second until it answers
//! or its patience runs out, following [`crate::router::wake::step`]. One wake-up per host at a time
//! ([`State::claim_wake`]); how long the host took is learned ([`State::wake_ended`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::config::Config;
use crate::router::wake::{self, Step, TICK};
use crate::state::{HostIx, ProbeOutcome, State};
use crate::upstream::HttpClient;

/// The wake-on-LAN magic packet: six `0xFF` bytes, then the MAC sixteen times.
pub fn magic_packet(mac: [u8; 6]) -> [u8; 102] {
    let mut packet = [0xFF; 102];
    for chunk in packet[6..].chunks_exact_mut(6) {
        chunk.copy_from_slice(&mac);
    }
    packet
}

/// Sends one magic packet for `mac` to `address` (a broadcast address is allowed).
async fn send(mac: [u8; 6], address: SocketAddr) -> std::io::Result<()> {
    let local: SocketAddr =
        if address.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.set_broadcast(true)?;
    socket.send_to(&magic_packet(mac), address).await.map(|_| ())
}

/// Wakes host `host` (claimed with [`State::claim_wake`]): packets a second apart and probes every half second
/// until it answers or gives up, then ends the wake-up in the state. Stops early when `state` is gone (a reload).
pub async fn wake(config: Arc<Config>, state: Weak<State>, client: HttpClient, host: usize) {
    let Some((spec, w)) = config.hosts.get(host).and_then(|h| h.wake.as_ref().map(|w| (h, w))) else {
        if let Some(state) = state.upgrade() {
            state.wake_ended(HostIx(host), None);
        }
        return;
    };
    let started = Instant::now();
    let patience = match state.upgrade() {
        Some(state) => wake::patience(w.boot, state.learned_boot(HostIx(host))),
        None => return,
    };
    let mut answered = false;
    for tick in 0u32.. {
        let Some(live) = state.upgrade() else { return };
        match wake::step(tick, answered, patience) {
            Step::Up => {
                let took = started.elapsed();
                tracing::info!(
                    "{} woke up: answered {:.1} s after its wake-on-LAN packet",
                    spec.origin,
                    took.as_secs_f64()
                );
                return live.wake_ended(HostIx(host), Some(took));
            }
            Step::GiveUp => {
                tracing::warn!("{} did not answer within {patience:?} of its wake-on-LAN packet", spec.origin);
                return live.wake_ended(HostIx(host), None);
            }
            Step::Packet => {
                if let Err(e) = send(w.mac, w.address).await {
                    tracing::warn!("sending the wake-on-LAN packet for {} to {} failed: {e}", spec.origin, w.address);
                }
            }
            Step::Probe => {}
        }
        drop(live);
        tokio::time::sleep_until((started + TICK * (tick + 1)).into()).await;
        let Some(live) = state.upgrade() else { return };
        answered = answers(&config, &live, &client, host).await;
    }
}

/// One probe of a waking host: a TCP connect within a tick (a sleeping host never answers, and the engine's
/// own probe may wait far longer), then the engine's probe, which records it up.
async fn answers(config: &Config, state: &State, client: &HttpClient, host: usize) -> bool {
    let Some(spec) = config.hosts.get(host) else { return false };
    if !super::connects(&spec.origin, TICK).await {
        return false;
    }
    if spec.probe_disabled {
        state.probe_result(
            HostIx(host),
            &spec.deployments,
            ProbeOutcome::default(),
            state.now(),
            std::time::Duration::ZERO,
        );
    } else {
        super::probe_hosts(config, state, client, std::iter::once(host)).await;
    }
    !state.asleep(HostIx(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_magic_packet_is_six_ff_then_the_mac_sixteen_times() {
        let mac = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
        let packet = magic_packet(mac);
        assert_eq!(&packet[..6], &[0xFF; 6]);
        assert_eq!(packet[6..].chunks(6).filter(|c| *c == mac).count(), 16);
    }
}
