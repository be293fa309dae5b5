//! Plain HTTP listeners that stop reading, or read at half speed, are closed like
//! WebSocket ones once their own buffers are full: the stalled ones counted `stalled`,
//! not as clients that left; the half-speed one closed by the server (how it is
//! counted depends on whether its backlog still sat in the server's buffers); the
//! server's memory stays flat meanwhile, and a healthy HTTP listener keeps getting
//! every page in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const STALLED_CLIENTS: usize = 10;
const DEADLINE_MS: u64 = 4000;
/// The stalled clients' and the server's small buffers fill within about a second.
const BUFFERS_FULL: Duration = Duration::from_millis(2500);
/// Bounds the wait for the drops (the test fails past it; nothing asserts how fast).
/// The half-speed listener keeps a default receive buffer, which takes a while to fill.
const WAIT_AT_MOST: Duration = Duration::from_secs(90);
const PATH: &str = "/stations/main/stream.opus?bitrate=128";

/// Opens the HTTP stream (with a tiny receive buffer if asked) and sends the request.
fn open_stream(addr: &str, tiny_receive_buffer: bool) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if tiny_receive_buffer {
        socket.set_recv_buffer_size(4096).unwrap();
    }
    let addr: SocketAddr = addr.parse().unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    write!(stream, "GET {PATH} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    stream
}

/// Takes a chunked (or plain) HTTP body apart into Ogg pages and checks that they
/// follow on: page sequence numbers one apart and granule positions that advance by
/// the packets completed on each page.
#[derive(Default)]
struct PageFollower {
    head_done: bool,
    chunked: bool,
    raw: Vec<u8>,
    /// Body bytes not yet parsed into pages.
    body: Vec<u8>,
    /// Bytes left in the current chunk (chunked bodies).
    chunk_left: usize,
    last: Option<(u32, u64)>,
    audio_pages: u64,
    breaks: u64,
}

impl PageFollower {
    fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        if !self.head_done {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            self.chunked = head.contains("transfer-encoding: chunked");
            self.raw.drain(..end + 4);
            self.head_done = true;
        }
        if self.chunked {
            self.dechunk();
        } else {
            self.body.append(&mut self.raw);
        }
        self.pages();
    }

    fn dechunk(&mut self) {
        loop {
            if self.chunk_left > 0 {
                let take = self.chunk_left.min(self.raw.len());
                self.body.extend(self.raw.drain(..take));
                self.chunk_left -= take;
                if self.chunk_left > 0 {
                    return;
                }
            }
            // "\r\n" after a chunk's data, then the next size line.
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let line = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            self.raw.drain(..line_end + 2);
            if line.is_empty() {
                continue;
            }
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            assert!(size > 0, "the stream ended");
            self.chunk_left = size;
        }
    }

    fn pages(&mut self) {
        loop {
            if self.body.len() < 27 {
                return;
            }
            assert_eq!(&self.body[..4], b"OggS", "not at an Ogg page");
            let segments = usize::from(self.body[26]);
            if self.body.len() < 27 + segments {
                return;
            }
            let lacing = &self.body[27..27 + segments];
            let len = 27 + segments + lacing.iter().map(|&l| usize::from(l)).sum::<usize>();
            if self.body.len() < len {
                return;
            }
            let granule = u64::from_le_bytes(self.body[6..14].try_into().unwrap());
            let sequence = u32::from_le_bytes(self.body[18..22].try_into().unwrap());
            let packets = lacing.iter().filter(|&&l| l < 255).count() as u64;
            let is_header = self.body[27 + segments..].starts_with(b"Opus");
            if !is_header {
                if let Some((last_sequence, last_granule)) = self.last
                    && (sequence != last_sequence + 1 || granule != last_granule + packets * 960)
                {
                    self.breaks += 1;
                }
                self.last = Some((sequence, granule));
                self.audio_pages += 1;
            }
            self.body.drain(..len);
        }
    }
}

/// Reads the whole stream until `stop`; returns the follower with its counts.
fn healthy_listener(addr: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<PageFollower> {
    std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(stream, "GET {PATH} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut follower = PageFollower::default();
        let mut buffer = [0u8; 16 * 1024];
        while !stop.load(Ordering::Relaxed) {
            let n = stream
                .read(&mut buffer)
                .expect("the healthy listener keeps receiving");
            assert!(n > 0, "the server ended the healthy listener's stream");
            follower.feed(&buffer[..n]);
        }
        follower
    })
}

/// Reads at half the stream's rate (128 kb/s = 16 KB/s; 800 bytes every 100 ms) until
/// the server closes the connection; returns how many bytes it read.
fn slow_listener(addr: String) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut stream = open_stream(&addr, false);
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let started = Instant::now();
        let mut read = 0u64;
        let mut buffer = [0u8; 800];
        while started.elapsed() < WAIT_AT_MOST {
            match stream.read(&mut buffer) {
                Ok(0) => return read,
                Ok(n) => read += n as u64,
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    panic!("the half-speed listener's stream went quiet without closing: {error}")
                }
                Err(_) => return read,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server kept serving a half-speed HTTP listener for {WAIT_AT_MOST:?}");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_slow_http_listeners_are_dropped_and_others_keep_playing() {
    let engine = common::start_with_rendered_long_tracks(DEADLINE_MS);
    let metric = |reason: &str| {
        engine.metric(&format!(
            "sonicforge_listener_disconnects_total{{reason=\"{reason}\",station=\"main\",transport=\"http\"}}"
        ))
    };

    let stop = Arc::new(AtomicBool::new(false));
    let healthy = healthy_listener(engine.addr.clone(), Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let rss_before = engine.rss_kib();
    let stalled: Vec<_> = (0..STALLED_CLIENTS)
        .map(|_| open_stream(&engine.addr, true))
        .collect();
    let slow = slow_listener(engine.addr.clone());
    let started = Instant::now();
    let mut rss_connected = None;
    let mut rss_peak = rss_before;
    let mut stalled_after = None;
    let mut slow_after = None;
    while started.elapsed() < WAIT_AT_MOST {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if started.elapsed() > BUFFERS_FULL {
            let rss = engine.rss_kib();
            rss_connected.get_or_insert(rss);
            rss_peak = rss_peak.max(rss);
        }
        if stalled_after.is_none() && metric("stalled") >= STALLED_CLIENTS as f64 {
            stalled_after = Some(started.elapsed());
        }
        if slow_after.is_none() && slow.is_finished() {
            slow_after = Some(started.elapsed());
        }
        if stalled_after.is_some() && slow_after.is_some() {
            break;
        }
    }
    let (Some(stalled_after), Some(slow_after)) = (stalled_after, slow_after) else {
        panic!(
            "within {WAIT_AT_MOST:?}: stalled HTTP closes {} of {STALLED_CLIENTS}, too_slow {}, client_closed {}; metrics:\n{}",
            metric("stalled"),
            metric("too_slow"),
            metric("client_closed"),
            engine.get("/metrics").1
        )
    };
    let rss_connected = rss_connected.unwrap_or(rss_before);
    println!(
        "{STALLED_CLIENTS} stalled HTTP listeners counted `stalled` after {:.1} s and the half-speed one \
         closed after {:.1} s (deadline {DEADLINE_MS} ms after their buffers filled; counted too_slow \
         {}, client_closed {}); RSS before {rss_before} KiB, with their buffers full {rss_connected} KiB, peak {rss_peak} KiB",
        stalled_after.as_secs_f64(),
        slow_after.as_secs_f64(),
        metric("too_slow"),
        metric("client_closed")
    );
    assert!(
        rss_peak <= rss_connected + 1024,
        "memory grew from {rss_connected} KiB to {rss_peak} KiB while listeners stalled"
    );
    let slow_read = slow.join().unwrap();
    assert!(slow_read > 0, "the half-speed listener read nothing");

    // The stalled connections are gone at the socket level too: what the client's
    // buffer held can still be read, then the connection ends (EOF or reset), it does
    // not merely go quiet.
    for mut stream in stalled {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    assert!(
                        !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                        "a stalled HTTP connection is still open: {error}"
                    );
                    break;
                }
            }
        }
    }

    stop.store(true, Ordering::Relaxed);
    let healthy = healthy.join().unwrap();
    assert!(
        healthy.audio_pages >= 50,
        "the healthy HTTP listener got only {} pages",
        healthy.audio_pages
    );
    assert_eq!(
        healthy.breaks, 0,
        "the healthy HTTP listener's pages did not follow on"
    );
}
