//! A WebSocket listener: `GET /stations/{id}/ws?bitrate=N`, a hello with the clock
//! mapping, then one binary message per Opus packet.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::time::Instant as TokioInstant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{
    EndReason, ListenerKind, ListenerSpec, Meter, TimeoutKind, established, slow_reader_due,
    stalls_now, stay_stalled, tune_socket,
};
use crate::storm::MeterMark;
use crate::swarm::SwarmContext;
use crate::wire::{ClockMapping, Hello, PACKET_SAMPLES, TextKind, parse_packet_header};

/// Bytes read from the socket at a time: a few packets. Small, because every listener
/// holds one such buffer.
const READ_BUFFER: usize = 4 * 1024;
/// Largest message accepted from the server (an Opus packet is at most ~1.3 KB).
const MAX_MESSAGE: usize = 64 * 1024;
/// Packets per second of a 20 ms packet stream.
const PACKETS_PER_SEC: f64 = 50.0;

/// The client configuration of every WebSocket listener (swarm and chaos driver):
/// small read buffers, no write buffering, bounded messages.
pub(crate) fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64() * 1000.0)
}

/// What the hello told this session.
#[derive(Debug, Clone, Copy)]
struct Session {
    clock: ClockMapping,
    /// Packets starting before this sample were already on air when the hello came: pre-roll.
    live_from_pts: u64,
}

/// Connects, listens until the run ends or the session does, and says how it ended.
pub async fn listen(ctx: &SwarmContext, spec: ListenerSpec, meter: &mut Meter) -> EndReason {
    let connect_deadline =
        TokioInstant::from_std(meter.connect_started + ctx.connect_timeout).min(ctx.end_at);
    let tcp = match tokio::time::timeout_at(connect_deadline, TcpStream::connect(ctx.addr)).await {
        Err(_) => return EndReason::Timeout(TimeoutKind::Connect),
        Ok(Err(error)) => return EndReason::ConnectError(error.kind()),
        Ok(Ok(tcp)) => tcp,
    };
    tune_socket(&tcp, spec.kind);
    let request = match format!("ws://{}{}", ctx.authority, ctx.ws_path).into_client_request() {
        Ok(request) => request,
        Err(error) => {
            return EndReason::Protocol(format!("cannot build the upgrade request: {error}"));
        }
    };
    let handshake = tokio_tungstenite::client_async_with_config(request, tcp, Some(config()));
    let mut ws = match tokio::time::timeout_at(connect_deadline, handshake).await {
        Err(_) => return EndReason::Timeout(TimeoutKind::Connect),
        Ok(Err(error)) => return handshake_failure(error),
        Ok(Ok((ws, _response))) => ws,
    };
    established(ctx, meter);
    let end = receive(ctx, spec, meter, &mut ws).await;
    if end == EndReason::RunEnded {
        // Only a listener that still reads can take part in a closing handshake.
        if spec.kind != ListenerKind::Stalled {
            let _ = tokio::time::timeout(super::CLOSE_WAIT, ws.close(None)).await;
        }
    }
    end
}

fn handshake_failure(error: tungstenite::Error) -> EndReason {
    match error {
        tungstenite::Error::Http(response) => EndReason::Rejected {
            status: response.status().as_u16(),
        },
        tungstenite::Error::Io(error) => EndReason::Io(error.kind()),
        other => EndReason::Protocol(format!("upgrade failed: {other}")),
    }
}

async fn receive(
    ctx: &SwarmContext,
    spec: ListenerSpec,
    meter: &mut Meter,
    ws: &mut WebSocketStream<TcpStream>,
) -> EndReason {
    let end = tokio::time::sleep_until(ctx.end_at);
    tokio::pin!(end);
    let first_audio_deadline =
        TokioInstant::from_std(meter.connect_started + ctx.first_audio_timeout);
    let idle = tokio::time::sleep_until(first_audio_deadline);
    tokio::pin!(idle);
    let mut last_activity = Instant::now();
    let mut session: Option<Session> = None;
    loop {
        let message = tokio::select! {
            biased;
            () = &mut end => return EndReason::RunEnded,
            () = &mut idle => {
                let Some(_) = meter.first_audio else {
                    return EndReason::Timeout(TimeoutKind::FirstAudio);
                };
                let due = last_activity + ctx.idle_timeout;
                if Instant::now() >= due {
                    return EndReason::Timeout(TimeoutKind::Idle);
                }
                idle.as_mut().reset(TokioInstant::from_std(due));
                continue;
            }
            message = ws.next() => message,
        };
        let now = Instant::now();
        last_activity = now;
        let message = match message {
            None => return EndReason::ServerEof,
            Some(Err(error)) => return stream_failure(error),
            Some(Ok(message)) => message,
        };
        match message {
            Message::Binary(bytes) => {
                let Some(session) = session else {
                    return EndReason::Protocol("audio before the hello".into());
                };
                let header = match parse_packet_header(&bytes) {
                    Ok(header) => header,
                    Err(error) => return EndReason::Protocol(error.to_string()),
                };
                let first = meter.first_audio.is_none();
                let mark = MeterMark::of(meter);
                {
                    let mut recorder = ctx.recorder.borrow_mut();
                    let group = recorder.group_for(spec);
                    meter.audio_arrived(now, PACKET_SAMPLES, bytes.len() as u64, group);
                    if header.pts < session.live_from_pts {
                        meter.pre_roll_units += 1;
                    } else {
                        group
                            .record_latency_ms(session.clock.latency_ms(header.pts, unix_ms_now()));
                    }
                    meter.packet_timestamp(header.pts, header.is_discontinuity());
                    recorder.storm_window_unit(spec, now, mark, meter);
                }
                if first {
                    // The idle timer now watches for audio that stops.
                    idle.as_mut()
                        .reset(TokioInstant::from_std(now + ctx.idle_timeout));
                }
                match spec.kind {
                    ListenerKind::Normal => {}
                    ListenerKind::Stalled => {
                        if stalls_now(ctx, spec, meter, now) {
                            return stay_stalled(ws.get_ref(), ctx.end_at, meter).await;
                        }
                    }
                    ListenerKind::Slow => {
                        let Some(since) = meter.first_audio else {
                            continue;
                        };
                        let due = slow_reader_due(
                            since,
                            meter.units as f64,
                            PACKETS_PER_SEC,
                            ctx.slow_rate,
                        );
                        if tokio::time::timeout_at(ctx.end_at, tokio::time::sleep_until(due.into()))
                            .await
                            .is_err()
                        {
                            return EndReason::RunEnded;
                        }
                        // Time spent asleep by choice is not idleness.
                        last_activity = Instant::now();
                    }
                }
            }
            Message::Text(text) => match session {
                None => match Hello::parse(text.as_str(), &ctx.station, ctx.bitrate) {
                    Ok(Hello {
                        clock: Some(clock), ..
                    }) => {
                        session = Some(Session {
                            clock,
                            live_from_pts: clock.pts_on_air_at(unix_ms_now()),
                        });
                    }
                    Ok(Hello { clock: None, .. }) => {
                        return EndReason::Protocol("hello has no clock mapping".into());
                    }
                    Err(error) => return EndReason::Protocol(error.to_string()),
                },
                Some(_) => match serde_json::from_str::<TextKind<'_>>(text.as_str()) {
                    Ok(kind) if kind.kind == "now_playing" => meter.now_playing_messages += 1,
                    Ok(_) => {}
                    Err(error) => {
                        return EndReason::Protocol(format!(
                            "text message is not JSON with a type: {error}"
                        ));
                    }
                },
            },
            Message::Close(frame) => return closed_by_server(frame),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// How a session ended when the server sent a close frame.
pub(crate) fn closed_by_server(frame: Option<tungstenite::protocol::CloseFrame>) -> EndReason {
    match frame {
        Some(frame) => EndReason::ServerClosed {
            code: u16::from(frame.code),
            reason: frame.reason.as_str().to_owned(),
        },
        None => EndReason::ServerClosed {
            code: 1005,
            reason: String::new(),
        },
    }
}

/// How a session ended when reading the stream failed.
pub(crate) fn stream_failure(error: tungstenite::Error) -> EndReason {
    use tungstenite::error::ProtocolError;
    match error {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            EndReason::ServerEof
        }
        tungstenite::Error::Io(error) => EndReason::Io(error.kind()),
        other => EndReason::Protocol(other.to_string()),
    }
}
