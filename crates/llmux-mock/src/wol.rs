//! A mock host asleep until a wake-on-LAN magic packet arrives: its TCP port is bound but does not listen (so
//! connections are refused, as a suspended machine's are) until `boot` after the first packet. Told to sleep
//! again (`POST /mock/sleep`), it closes its connections, forgets its loaded models and waits for the next
//! packet on a fresh socket bound to the same port.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use std::net::SocketAddr;

use tokio::net::{TcpSocket, UdpSocket};
use tokio::sync::{oneshot, watch};

use crate::state::{lock, App};

/// Whether `packet` is a magic packet: six `0xFF` bytes, then one MAC sixteen times.
fn is_magic(packet: &[u8]) -> bool {
    packet.len() >= 102 && packet[..6] == [0xFF; 6] && packet[6..102].chunks_exact(6).all(|mac| mac == &packet[6..12])
}

/// Counts the magic packets arriving on `udp` into `packets`.
async fn count_packets(udp: UdpSocket, app: App, packets: watch::Sender<u64>) {
    let mut buf = [0u8; 512];
    while let Ok((n, _)) = udp.recv_from(&mut buf).await {
        if is_magic(&buf[..n]) {
            lock(&app.stats).wake_packets += 1;
            packets.send_modify(|n| *n += 1);
        }
    }
}

/// Sleeps until a magic packet, boots for `boot`, then serves until told to stop, going back to sleep each
/// time it is told to.
pub(crate) async fn sleep_then_serve(
    addr: SocketAddr,
    socket: TcpSocket,
    udp: UdpSocket,
    boot: Duration,
    router: Router,
    app: App,
    mut stop_rx: oneshot::Receiver<()>,
) {
    let (packets, mut arrived) = watch::channel(0);
    let counter = tokio::spawn(count_packets(udp, Arc::clone(&app), packets));
    let mut socket = Some(socket);
    loop {
        // Only a packet sent while asleep wakes it (those of the last wake-up were seen).
        arrived.borrow_and_update();
        tokio::select! {
            _ = &mut stop_rx => break,
            changed = arrived.changed() => if changed.is_err() { break },
        }
        tokio::select! {
            _ = &mut stop_rx => break,
            () = tokio::time::sleep(boot) => {}
        }
        let listener = match socket.take().map_or_else(|| rebind(addr), Ok).and_then(|s| s.listen(1024)) {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!("llmux-mock: listening after the wake-up failed: {err}");
                break;
            }
        };
        lock(&app.stats).boots += 1;
        if !crate::accept_loop(listener, router.clone(), Arc::clone(&app), &mut stop_rx, Some(&app.sleep_now)).await {
            break;
        }
        app.unload_all();
    }
    counter.abort();
}

/// A new socket on `addr` for the next wake-up (the last one's listener is closed).
fn rebind(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
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
