//! Clients that stop reading are disconnected after the deadline, the server's
//! memory stays flat meanwhile, and a healthy listener keeps receiving every packet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sonicforge_engine::codec::wire::parse_packet;
use tokio_tungstenite::tungstenite::Message;

const STALLED_CLIENTS: usize = 20;
/// Send buffers of the stalled clients fill within about 2 s; the deadline comes after.
const DEADLINE_MS: u64 = 6000;
const BUFFERS_FULL: Duration = Duration::from_millis(2500);

/// Opens a WebSocket by hand with a tiny receive buffer and never reads from it.
fn stalled_client(addr: &str) -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.try_clone().unwrap().into();
    write!(
        stream,
        "GET /stations/main/ws?bitrate=128 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_listeners_are_dropped_and_others_keep_playing() {
    let engine = common::start_with_rendered_long_tracks(DEADLINE_MS);

    let url = format!("ws://{}/stations/main/ws?bitrate=128", engine.addr);
    let (mut healthy, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let _hello = healthy.next().await.unwrap().unwrap();

    let rss_before = engine.rss_kib();
    let stalled: Vec<_> = (0..STALLED_CLIENTS)
        .map(|_| stalled_client(&engine.addr))
        .collect();
    let started = Instant::now();
    // Memory once the stalled sessions exist; from here on it must stay flat.
    let mut rss_connected = None;

    let mut previous_pts: Option<u64> = None;
    let mut healthy_packets = 0;
    let mut rss_peak = rss_before;
    let mut dropped_after = None;
    while started.elapsed() < Duration::from_secs(30) {
        let message = tokio::time::timeout(Duration::from_secs(2), healthy.next())
            .await
            .expect("the healthy listener keeps receiving")
            .unwrap()
            .unwrap();
        if let Message::Binary(bytes) = message {
            let (header, _) = parse_packet(&bytes).unwrap();
            assert!(
                !header.is_discontinuity(),
                "healthy listener saw a discontinuity"
            );
            if let Some(previous) = previous_pts {
                assert_eq!(header.pts, previous + 960, "healthy listener saw a gap");
            }
            previous_pts = Some(header.pts);
            healthy_packets += 1;
        }
        if healthy_packets % 50 == 0 {
            if started.elapsed() > BUFFERS_FULL {
                let rss = engine.rss_kib();
                rss_connected.get_or_insert(rss);
                rss_peak = rss_peak.max(rss);
            }
            let dropped = engine.metric("sonicforge_listener_disconnects_total{reason=\"stalled\"")
                + engine.metric("sonicforge_listener_disconnects_total{reason=\"too_slow\"");
            if dropped >= STALLED_CLIENTS as f64 && dropped_after.is_none() {
                dropped_after = Some(started.elapsed());
            }
            if dropped_after.is_some_and(|d| started.elapsed() > d + Duration::from_secs(2)) {
                break;
            }
        }
    }
    let dropped_after = dropped_after.unwrap_or_else(|| {
        panic!(
            "stalled listeners were not all disconnected within 30 s; metrics:\n{}",
            engine.get("/metrics").1
        )
    });
    let rss_connected = rss_connected.unwrap_or(rss_before);
    println!(
        "{STALLED_CLIENTS} stalled listeners disconnected after {:.1} s (deadline {DEADLINE_MS} ms after the socket \
         buffers filled); RSS before they came {rss_before} KiB, with their buffers full {rss_connected} KiB, peak until \
         they were dropped {rss_peak} KiB",
        dropped_after.as_secs_f64()
    );
    assert!(
        rss_peak <= rss_connected + 1024,
        "memory grew from {rss_connected} KiB to {rss_peak} KiB while listeners stalled"
    );

    // The server also closes the stalled connections at the socket level.
    for socket in stalled {
        let mut stream: std::net::TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
