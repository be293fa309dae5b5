//! A chaos listener: one WebSocket session after another in one slot until the run
//! ends. Each session reads the hello (and its session id), then decodes every Opus
//! packet into a preallocated buffer and feeds a [`StreamTracker`]. When a session
//! ends early the slot connects again as a fresh listener; whether that ending was a
//! kill or a failure is decided afterwards, against the kills the engine confirmed.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::time::Instant as TokioInstant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use super::track::{CHANNELS, StreamTracker};
use crate::listener::ws::{closed_by_server, config, stream_failure};
use crate::listener::{EndReason, TimeoutKind};
use crate::wire::{Hello, TextKind, WIRE_HEADER_LEN, parse_packet_header};

/// Time allowed for TCP connect and the WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that receives nothing for this long has stalled.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before connecting again after a session ended.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Pause before trying again after a connect failed.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How long a listener waits for its close to be written at the end of the run.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Longest Opus frame (120 ms) in samples per channel.
const MAX_FRAME_SAMPLES: usize = 5760;

/// Shared by every chaos listener (all on one thread).
#[derive(Debug)]
pub struct ListenContext {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub authority: String,
    pub station: String,
    pub bitrate: u32,
    /// `/stations/{id}/ws?bitrate=N`
    pub ws_path: String,
    /// When every listener stops.
    pub end_at: TokioInstant,
}

/// One WebSocket session of a slot, from connect to end.
#[derive(Debug)]
pub struct Session {
    pub slot: u32,
    /// The engine's id for the session, from the hello.
    pub id: Option<u64>,
    pub ended: Instant,
    pub end: EndReason,
    pub tracker: StreamTracker,
}

/// Runs slot `slot` until the end of the run and returns all its sessions.
pub async fn run_slot(ctx: Rc<ListenContext>, slot: u32) -> Vec<Session> {
    let mut sessions = Vec::new();
    let mut audio = vec![0.0_f32; MAX_FRAME_SAMPLES * CHANNELS];
    loop {
        let mut tracker = StreamTracker::new();
        let mut id = None;
        let end = listen_once(&ctx, &mut tracker, &mut id, &mut audio).await;
        tracker.finish();
        let connected = id.is_some() || tracker.packets > 0;
        let run_ended = end == EndReason::RunEnded;
        sessions.push(Session {
            slot,
            id,
            ended: Instant::now(),
            end,
            tracker,
        });
        if run_ended || TokioInstant::now() >= ctx.end_at {
            return sessions;
        }
        let pause = if connected {
            RECONNECT_PAUSE
        } else {
            RETRY_PAUSE
        };
        if tokio::time::timeout_at(ctx.end_at, tokio::time::sleep(pause))
            .await
            .is_err()
        {
            return sessions;
        }
    }
}

async fn listen_once(
    ctx: &ListenContext,
    tracker: &mut StreamTracker,
    id: &mut Option<u64>,
    audio: &mut [f32],
) -> EndReason {
    let deadline = (TokioInstant::now() + CONNECT_TIMEOUT).min(ctx.end_at);
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(ctx.addr)).await {
        Err(_) => return EndReason::Timeout(TimeoutKind::Connect),
        Ok(Err(error)) => return EndReason::ConnectError(error.kind()),
        Ok(Ok(tcp)) => tcp,
    };
    // Best effort: the listener works without it.
    let _ = tcp.set_nodelay(true);
    let request = match format!("ws://{}{}", ctx.authority, ctx.ws_path).into_client_request() {
        Ok(request) => request,
        Err(error) => {
            return EndReason::Protocol(format!("cannot build the upgrade request: {error}"));
        }
    };
    let handshake = tokio_tungstenite::client_async_with_config(request, tcp, Some(config()));
    let mut ws = match tokio::time::timeout_at(deadline, handshake).await {
        Err(_) => return EndReason::Timeout(TimeoutKind::Connect),
        Ok(Err(tungstenite::Error::Http(response))) => {
            return EndReason::Rejected {
                status: response.status().as_u16(),
            };
        }
        Ok(Err(tungstenite::Error::Io(error))) => return EndReason::Io(error.kind()),
        Ok(Err(other)) => return EndReason::Protocol(format!("upgrade failed: {other}")),
        Ok(Ok((ws, _response))) => ws,
    };
    let end = receive(ctx, tracker, id, audio, &mut ws).await;
    if end == EndReason::RunEnded {
        let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(None)).await;
    }
    end
}

async fn receive(
    ctx: &ListenContext,
    tracker: &mut StreamTracker,
    id: &mut Option<u64>,
    audio: &mut [f32],
    ws: &mut WebSocketStream<TcpStream>,
) -> EndReason {
    let end = tokio::time::sleep_until(ctx.end_at);
    tokio::pin!(end);
    let idle = tokio::time::sleep(IDLE_TIMEOUT);
    tokio::pin!(idle);
    let mut last_message = Instant::now();
    let mut decoder: Option<opus::Decoder> = None;
    loop {
        let message = tokio::select! {
            biased;
            () = &mut end => return EndReason::RunEnded,
            () = &mut idle => {
                let due = last_message + IDLE_TIMEOUT;
                if Instant::now() >= due {
                    return EndReason::Timeout(if tracker.packets == 0 {
                        TimeoutKind::FirstAudio
                    } else {
                        TimeoutKind::Idle
                    });
                }
                idle.as_mut().reset(TokioInstant::from_std(due));
                continue;
            }
            message = ws.next() => message,
        };
        let now = Instant::now();
        last_message = now;
        let message = match message {
            None => return EndReason::ServerEof,
            Some(Err(error)) => return stream_failure(error),
            Some(Ok(message)) => message,
        };
        match message {
            Message::Binary(bytes) => {
                let Some(decoder) = decoder.as_mut() else {
                    return EndReason::Protocol("audio before the hello".into());
                };
                let header = match parse_packet_header(&bytes) {
                    Ok(header) => header,
                    Err(error) => return EndReason::Protocol(error.to_string()),
                };
                tracker.packet(now, header.pts, header.is_discontinuity());
                match decoder.decode_float(&bytes[WIRE_HEADER_LEN..], audio, false) {
                    Ok(samples) => {
                        let interleaved = audio.get(..samples * CHANNELS).unwrap_or(audio);
                        tracker.audio(now, interleaved);
                    }
                    Err(error) => tracker.decode_error(&error),
                }
            }
            Message::Text(text) if decoder.is_none() => {
                let hello = match Hello::parse(text.as_str(), &ctx.station, ctx.bitrate) {
                    Ok(hello) => hello,
                    Err(error) => return EndReason::Protocol(error.to_string()),
                };
                *id = hello.session;
                decoder = match opus::Decoder::new(48_000, opus::Channels::Stereo) {
                    Ok(decoder) => Some(decoder),
                    Err(error) => {
                        return EndReason::Protocol(format!("cannot create a decoder: {error}"));
                    }
                };
            }
            Message::Text(text) => {
                if let Err(error) = serde_json::from_str::<TextKind<'_>>(text.as_str()) {
                    return EndReason::Protocol(format!(
                        "text message is not JSON with a type: {error}"
                    ));
                }
            }
            Message::Close(frame) => return closed_by_server(frame),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::SinkExt;

    use super::*;
    use crate::chaos::track::GlitchKind;

    fn packet(flags: u8, pts: u64, opus: &[u8]) -> Message {
        let mut bytes = vec![1, flags, 0, 0];
        bytes.extend_from_slice(&pts.to_be_bytes());
        bytes.extend_from_slice(opus);
        Message::binary(bytes)
    }

    /// One 20 ms stereo Opus packet of a steady tone.
    fn tone_packet(encoder: &mut opus::Encoder, phase: &mut f32) -> Vec<u8> {
        let mut pcm = [0.0_f32; 960 * 2];
        for frame in pcm.chunks_exact_mut(2) {
            let sample = 0.3 * phase.sin();
            *phase += 2.0 * std::f32::consts::PI * 440.0 / 48_000.0;
            frame[0] = sample;
            frame[1] = sample;
        }
        encoder.encode_vec_float(&pcm, 4000).unwrap()
    }

    #[tokio::test]
    async fn sessions_are_decoded_tracked_and_reconnected() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut encoder =
                opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio)
                    .unwrap();
            let mut phase = 0.0_f32;
            for session in 1..=2u64 {
                let (socket, _) = listener.accept().await.unwrap();
                let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
                let hello = format!(
                    r#"{{"type":"hello","session":{session},"codec":"opus","sample_rate":48000,"channels":2,"bitrate":128,"station":"main","frame_samples":960,"pre_roll_ms":300,"clock":{{"pts":0,"unix_ms":0}},"now_playing":null}}"#
                );
                ws.send(Message::text(hello)).await.unwrap();
                let mut pts = 96_000;
                for step in 0..30 {
                    let flags = u8::from(step == 20);
                    if step == 20 {
                        // Two packets lost, flagged.
                        pts += 2 * 960;
                    }
                    let opus = tone_packet(&mut encoder, &mut phase);
                    ws.send(packet(flags, pts, &opus)).await.unwrap();
                    pts += 960;
                }
                ws.send(Message::text(
                    r#"{"type":"now_playing","now_playing":null}"#,
                ))
                .await
                .unwrap();
                if session == 1 {
                    // The first session is killed: the server just drops it.
                    drop(ws);
                } else {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        });
        let ctx = Rc::new(ListenContext {
            addr,
            authority: addr.to_string(),
            station: "main".into(),
            bitrate: 128,
            ws_path: "/stations/main/ws?bitrate=128".into(),
            end_at: TokioInstant::now() + Duration::from_millis(1500),
        });
        let local = tokio::task::LocalSet::new();
        let sessions = local.run_until(run_slot(ctx, 3)).await;
        server.abort();
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        assert_eq!(sessions[0].id, Some(1));
        assert_eq!(sessions[0].end, EndReason::ServerEof);
        assert_eq!(sessions[1].id, Some(2));
        assert_eq!(sessions[1].end, EndReason::RunEnded);
        for session in &sessions {
            let tracker = &session.tracker;
            assert_eq!(session.slot, 3);
            assert_eq!(tracker.packets, 30);
            assert_eq!(tracker.decoded_samples, 30 * 960);
            assert_eq!(tracker.decode_errors, 0);
            assert!(tracker.samples_match_span());
            let kinds: Vec<GlitchKind> = tracker.glitches().iter().map(|g| g.kind).collect();
            assert_eq!(
                kinds,
                [GlitchKind::Gap {
                    ms: 40.0,
                    flagged: true
                }]
            );
        }
    }

    #[tokio::test]
    async fn a_packet_that_is_not_opus_is_a_decode_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
            let hello = r#"{"type":"hello","codec":"opus","sample_rate":48000,"channels":2,"bitrate":128,"station":"main","frame_samples":960,"clock":null}"#;
            ws.send(Message::text(hello)).await.unwrap();
            // A code 3 packet that announces more frames than it holds.
            ws.send(packet(0, 0, &[0x03, 0xff])).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let ctx = Rc::new(ListenContext {
            addr,
            authority: addr.to_string(),
            station: "main".into(),
            bitrate: 128,
            ws_path: "/stations/main/ws?bitrate=128".into(),
            end_at: TokioInstant::now() + Duration::from_millis(500),
        });
        let local = tokio::task::LocalSet::new();
        let sessions = local.run_until(run_slot(ctx, 0)).await;
        server.abort();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].id, None);
        assert_eq!(sessions[0].tracker.decode_errors, 1);
        assert!(sessions[0].tracker.first_decode_error.is_some());
    }
}
