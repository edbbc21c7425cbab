//! A mock host asleep until a wake-on-LAN magic packet arrives: its TCP port is bound but does not listen (so
//! connections are refused, as a suspended machine's are) until `boot` after the first packet.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpSocket, UdpSocket};
use tokio::sync::{oneshot, Notify};

use crate::state::{lock, App};

/// Whether `packet` is a magic packet: six `0xFF` bytes, then one MAC sixteen times.
fn is_magic(packet: &[u8]) -> bool {
    packet.len() >= 102 && packet[..6] == [0xFF; 6] && packet[6..102].chunks_exact(6).all(|mac| mac == &packet[6..12])
}

/// Counts the magic packets arriving on `udp`, signalling `woken` at each.
async fn count_packets(udp: UdpSocket, app: App, woken: Arc<Notify>) {
    let mut buf = [0u8; 512];
    while let Ok((n, _)) = udp.recv_from(&mut buf).await {
        if is_magic(&buf[..n]) {
            lock(&app.stats).wake_packets += 1;
            woken.notify_one();
        }
    }
}

/// Sleeps until a magic packet, boots for `boot`, then serves until told to stop.
pub(crate) async fn sleep_then_serve(
    socket: TcpSocket,
    udp: UdpSocket,
    boot: Duration,
    router: Router,
    app: App,
    mut stop_rx: oneshot::Receiver<()>,
) {
    let woken = Arc::new(Notify::new());
    let counter = tokio::spawn(count_packets(udp, Arc::clone(&app), Arc::clone(&woken)));
    tokio::select! {
        _ = &mut stop_rx => return counter.abort(),
        () = woken.notified() => {}
    }
    tokio::select! {
        _ = &mut stop_rx => return counter.abort(),
        () = tokio::time::sleep(boot) => {}
    }
    match socket.listen(1024) {
        Ok(listener) => crate::accept_loop(listener, router, app, stop_rx).await,
        Err(err) => tracing::warn!("llmux-mock: listening after the wake-up failed: {err}"),
    }
    counter.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_six_ff_and_one_mac_sixteen_times_is_magic() {
        let mut packet = vec![0xFF; 6];
        for _ in 0..16 {
            packet.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        }
        assert!(is_magic(&packet));
        packet[50] = 9;
        assert!(!is_magic(&packet));
        assert!(!is_magic(&[0xFF; 50]));
    }
}
