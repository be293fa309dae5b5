//! One actor per WebSocket listener (actix-ws underneath).
//!
//! The session's send loop waits on its rendition's notification, reads packets
//! through its [`Cursor`] and writes one binary message per packet (wire format in
//! `sonicforge_engine::codec::wire`). Every send has a timeout. Messages are built in
//! a per-session buffer that is reused once the socket has written them, so the
//! steady state allocates nothing.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, WrapFuture,
};
use actix_ws::{CloseCode, CloseReason, MessageStream, Session};
use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use serde_json::json;
use sonicforge_engine::codec::wire::{FLAG_DISCONTINUITY, WIRE_HEADER_LEN, WireHeader};
use sonicforge_engine::frame::{CHANNELS, FRAME_SAMPLES, SAMPLE_RATE};
use sonicforge_engine::ring::PacketBuf;

use super::{
    BatchedCount, Cursor, CursorStep, DisconnectReason, ListenerEvents, ListenerOrigin,
    ListenerSlot,
};
use crate::metrics::ListenerMetrics;
use crate::station::{NowPlaying, Station};
use crate::supervise::chaos::{ChaosMode, Kill};
use crate::supervise::tree::{ExitReason, catch_panic};
use sonicforge_engine::events::Transport;

/// Largest message a listener may send us (pings, a close); anything larger is a protocol error.
const MAX_INBOUND_FRAME: usize = 4096;
/// Bytes reserved at a time for outgoing messages. The socket layer copies each
/// message into its own buffer and drops it, so a block is freed once the messages cut
/// from it are written; a small block (a few packets) keeps per-listener memory small.
const SEND_BUFFER_BYTES: usize = 2 * 1024;
/// A connection lost while a send has waited this long was lost to a stalled client.
const STALLED_SEND: Duration = Duration::from_millis(500);

/// How often a session pings its client to learn how far behind the client's reading is.
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// When the session's current send started waiting, shared by its two halves.
#[derive(Debug, Default)]
struct SendWait(Cell<Option<Instant>>);

/// The client's own lag, measured with WebSocket pings. A ping travels behind the
/// audio already sent, and the client answers it only when it has read that far: the
/// round trip is how far behind live the client's reading is, wherever the unread
/// audio sits (our queues, the kernel's buffers on either side).
#[derive(Debug, Default)]
struct ClientLag {
    ping_sent_at: Cell<Option<Instant>>,
    last_round_trip: Cell<Duration>,
}

impl ClientLag {
    /// The larger of the last round trip and the age of the unanswered ping.
    fn lag(&self, now: Instant) -> Duration {
        let waiting = self
            .ping_sent_at
            .get()
            .map_or(Duration::ZERO, |sent| now.saturating_duration_since(sent));
        waiting.max(self.last_round_trip.get())
    }

    /// How long the current ping has gone unanswered.
    fn unanswered_for(&self, now: Instant) -> Option<Duration> {
        self.ping_sent_at
            .get()
            .map(|sent| now.saturating_duration_since(sent))
    }

    fn pong_received(&self) {
        if let Some(sent) = self.ping_sent_at.take() {
            self.last_round_trip.set(sent.elapsed());
        }
    }
}

impl SendWait {
    /// Awaits one send for at most `deadline`; a closed session or the deadline ends it.
    async fn send(
        &self,
        send: impl std::future::Future<Output = Result<(), actix_ws::Closed>>,
        deadline: Duration,
    ) -> Result<(), DisconnectReason> {
        self.0.set(Some(Instant::now()));
        let result = tokio::time::timeout(deadline, send).await;
        self.0.set(None);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(actix_ws::Closed)) => Err(DisconnectReason::ClientClosed),
            Err(_) => Err(DisconnectReason::Stalled),
        }
    }

    fn is_stalled(&self) -> bool {
        self.0
            .get()
            .is_some_and(|since| since.elapsed() >= STALLED_SEND)
    }
}

/// Asks a session to end (used by operators and chaos tests).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Disconnect(pub DisconnectReason);

/// A WebSocket listener.
pub struct ListenerSession {
    /// Unique in the process; sent in the hello.
    id: u64,
    station: Arc<Station>,
    rendition: usize,
    session: Option<Session>,
    inbound: Option<MessageStream>,
    metrics: ListenerMetrics,
    reason: Option<DisconnectReason>,
    connected_at: Instant,
    send_wait: Rc<SendWait>,
    client_lag: Rc<ClientLag>,
    origin: Option<ListenerOrigin>,
    events: Option<ListenerEvents>,
    /// The listener's place under the caps, freed when the session is dropped.
    _slot: ListenerSlot,
}

impl std::fmt::Debug for ListenerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSession")
            .field("id", &self.id)
            .field("station", &self.station.id())
            .field(
                "rendition",
                &self.station.feeds[self.rendition].bitrate_kbps,
            )
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl ListenerSession {
    /// A session for the station's rendition at index `rendition` of `station.feeds`.
    pub fn new(
        station: Arc<Station>,
        rendition: usize,
        session: Session,
        inbound: MessageStream,
        metrics: ListenerMetrics,
        origin: ListenerOrigin,
        slot: ListenerSlot,
    ) -> Self {
        Self {
            _slot: slot,
            origin: Some(origin),
            events: None,
            id: super::next_session_id(),
            station,
            rendition,
            session: Some(session),
            inbound: Some(inbound),
            metrics,
            reason: None,
            connected_at: Instant::now(),
            send_wait: Rc::default(),
            client_lag: Rc::default(),
        }
    }

    fn end(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        // The socket layer may give up on a client that stopped reading (TCP_USER_TIMEOUT)
        // before our own deadline does: while a send is stuck, or a ping has gone
        // unanswered for longer than the ping interval, that is a stall.
        let reason = match reason {
            DisconnectReason::ClientClosed
                if self.send_wait.is_stalled()
                    || self
                        .client_lag
                        .unanswered_for(Instant::now())
                        .is_some_and(|waited| waited > PING_INTERVAL) =>
            {
                DisconnectReason::Stalled
            }
            other => other,
        };
        self.reason.get_or_insert(reason);
        ctx.stop();
    }
}

impl Actor for ListenerSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.listeners.inc();
        self.metrics.connects.inc();
        self.station
            .listener_joined(self.id, ctx.address().recipient());
        if let Some(origin) = self.origin.take() {
            self.events = Some(ListenerEvents::joined(
                Arc::clone(&self.station),
                self.id,
                Transport::Websocket,
                self.station.feeds[self.rendition].bitrate_kbps,
                origin,
            ));
        }
        let (Some(session), Some(inbound)) = (self.session.clone(), self.inbound.take()) else {
            ctx.stop();
            return;
        };
        let sender = SendLoop {
            id: self.id,
            station: Arc::clone(&self.station),
            rendition: self.rendition,
            session: session.clone(),
            metrics: self.metrics.clone(),
            send_wait: Rc::clone(&self.send_wait),
            client_lag: Rc::clone(&self.client_lag),
        };
        ctx.spawn(
            sender
                .run()
                .into_actor(self)
                .map(|reason, actor, ctx| actor.end(reason, ctx)),
        );
        ctx.spawn(
            receive(inbound, session, Rc::clone(&self.client_lag))
                .into_actor(self)
                .map(|reason, actor, ctx| actor.end(reason, ctx)),
        );
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let reason = self.reason.unwrap_or(DisconnectReason::ClientClosed);
        self.station.listener_left(self.id);
        if let Some(events) = &self.events {
            events.left(reason);
        }
        self.metrics.listeners.dec();
        self.metrics.disconnected(reason.label());
        tracing::debug!(
            station = %self.station.id(),
            reason = reason.label(),
            seconds = self.connected_at.elapsed().as_secs_f64(),
            "websocket listener left"
        );
        if let Some(session) = self.session.take() {
            let code = match reason {
                DisconnectReason::ClientClosed => CloseCode::Normal,
                DisconnectReason::ProtocolError => CloseCode::Protocol,
                DisconnectReason::StationStopped => CloseCode::Away,
                DisconnectReason::Killed => CloseCode::Restart,
                DisconnectReason::Stalled | DisconnectReason::TooSlow => CloseCode::Policy,
            };
            let close = session.close(Some(CloseReason {
                code,
                description: Some(reason.label().replace('_', " ")),
            }));
            // A stalled client may never take the close frame: bounded wait.
            actix::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
            });
        }
    }
}

impl Handler<Disconnect> for ListenerSession {
    type Result = ();

    fn handle(&mut self, Disconnect(reason): Disconnect, ctx: &mut Context<Self>) {
        self.end(reason, ctx);
    }
}

impl Handler<Kill> for ListenerSession {
    type Result = ();

    /// Chaos: the session dies by stopping or by a panic in this handler. Listener
    /// sessions are not restarted by the server: their client reconnects.
    fn handle(&mut self, Kill(mode): Kill, ctx: &mut Context<Self>) {
        let session = self.id;
        tracing::warn!(station = %self.station.id(), session, ?mode, "chaos: killing listener session");
        let reason = match mode {
            ChaosMode::Stop => ExitReason::Stopped,
            ChaosMode::Panic => {
                if let Err(message) = catch_panic(|| -> () {
                    panic!("chaos: injected panic in listener session {session}")
                }) {
                    tracing::error!(station = %self.station.id(), session, panic = %message, "listener session panicked; ending it");
                }
                ExitReason::Panicked
            }
        };
        self.station.count_restart("listener", reason);
        self.end(DisconnectReason::Killed, ctx);
    }
}

/// Reads what the client sends: pongs to pings, an end on close or on abuse.
async fn receive(
    inbound: MessageStream,
    mut session: Session,
    client_lag: Rc<ClientLag>,
) -> DisconnectReason {
    let mut inbound = inbound.max_frame_size(MAX_INBOUND_FRAME);
    while let Some(message) = inbound.next().await {
        match message {
            Ok(actix_ws::Message::Pong(_)) => client_lag.pong_received(),
            Ok(actix_ws::Message::Ping(bytes)) => {
                if session.pong(&bytes).await.is_err() {
                    return DisconnectReason::ClientClosed;
                }
            }
            Ok(actix_ws::Message::Close(_)) => return DisconnectReason::ClientClosed,
            Ok(_) => {}
            // The connection itself ended (reset, timeout, end of stream).
            Err(actix_ws::ProtocolError::Io(_)) => return DisconnectReason::ClientClosed,
            Err(error) => {
                tracing::debug!(%error, "websocket listener broke the protocol");
                return DisconnectReason::ProtocolError;
            }
        }
    }
    DisconnectReason::ClientClosed
}

/// The half of a session that writes audio.
struct SendLoop {
    id: u64,
    station: Arc<Station>,
    rendition: usize,
    session: Session,
    metrics: ListenerMetrics,
    send_wait: Rc<SendWait>,
    client_lag: Rc<ClientLag>,
}

impl SendLoop {
    /// Pings the client when no ping is outstanding and the last is a second old, and
    /// ends the session when the client's reading stays behind past the deadline.
    async fn check_client_lag(
        &mut self,
        now: Instant,
        last_ping: &mut Instant,
        lag_behind_since: &mut Option<Instant>,
        max_lag: Duration,
        deadline: Duration,
    ) -> Result<(), DisconnectReason> {
        if self
            .client_lag
            .unanswered_for(now)
            .is_some_and(|waited| waited > deadline)
        {
            return Err(DisconnectReason::Stalled);
        }
        if self.client_lag.lag(now) > max_lag {
            let since = *lag_behind_since.get_or_insert(now);
            if now.saturating_duration_since(since) > deadline {
                return Err(DisconnectReason::TooSlow);
            }
        } else {
            *lag_behind_since = None;
        }
        if self.client_lag.ping_sent_at.get().is_none()
            && now.saturating_duration_since(*last_ping) >= PING_INTERVAL
        {
            *last_ping = now;
            self.client_lag.ping_sent_at.set(Some(now));
            self.send_wait
                .send(self.session.ping(b"lag"), deadline)
                .await?;
        }
        Ok(())
    }

    async fn run(self) -> DisconnectReason {
        match self.serve().await {
            Err(reason) => reason,
            Ok(never) => match never {},
        }
    }

    /// Sends the hello, then audio until the session has to end.
    async fn serve(mut self) -> Result<std::convert::Infallible, DisconnectReason> {
        let station = Arc::clone(&self.station);
        let config = station.listener_config.for_station(&station.config);
        let feed = &station.feeds[self.rendition];
        let deadline = Duration::from_millis(u64::from(config.behind_deadline_ms));
        let batch = u64::from(config.send_batch_packets);
        let batch_pause = Duration::from_millis(20 * (batch - 1));

        // Listeners that come before the first track is on air wait for it.
        while station.clock().is_none() {
            if station.is_stopping() {
                return Err(DisconnectReason::StationStopped);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let hello = hello_message(self.id, &station, feed.bitrate_kbps);
        self.send_wait
            .send(self.session.text(hello), deadline)
            .await?;

        let mut cursor = Cursor::new(&feed.ring, &config);
        let mut packet = PacketBuf::default();
        let mut out = BytesMut::with_capacity(SEND_BUFFER_BYTES);
        let mut last_epoch = station.board.on_air_epoch();
        let mut sent = BatchedCount::new(self.metrics.packets_sent.clone());
        let mut skipped_reported = 0u64;
        let max_lag = Duration::from_millis(u64::from(config.max_lag_ms));
        let mut last_ping = Instant::now();
        let mut lag_behind_since = None;
        // One timer for the whole session, re-armed only when it fires: waiting on a
        // fresh timeout per packet would cost a timer-wheel insert and removal per
        // listener every 20 ms.
        let silence = tokio::time::sleep(deadline);
        tokio::pin!(silence);
        loop {
            if station.is_stopping() {
                return Err(DisconnectReason::StationStopped);
            }
            self.check_client_lag(
                Instant::now(),
                &mut last_ping,
                &mut lag_behind_since,
                max_lag,
                deadline,
            )
            .await?;
            let notified = feed.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if batch > 1 && cursor.backlog(&feed.ring) < batch {
                tokio::time::sleep(batch_pause).await;
            }
            loop {
                let now = Instant::now();
                if cursor.is_past_deadline(now) {
                    return Err(DisconnectReason::TooSlow);
                }
                let CursorStep::Packet {
                    meta,
                    discontinuity,
                } = cursor.next(&feed.ring, &mut packet, now)
                else {
                    break;
                };
                if meta.epoch != last_epoch {
                    last_epoch = meta.epoch;
                    if let Some(message) = now_playing_message(&station, meta.epoch, meta.pts) {
                        self.send_wait
                            .send(self.session.text(message), deadline)
                            .await?;
                    }
                }
                let flags = meta.flags | if discontinuity { FLAG_DISCONTINUITY } else { 0 };
                let payload = packet.as_slice(meta.len);
                if out.capacity() < WIRE_HEADER_LEN + payload.len() {
                    out.reserve(SEND_BUFFER_BYTES);
                }
                let mut header = [0u8; WIRE_HEADER_LEN];
                WireHeader {
                    flags,
                    pts: meta.pts,
                }
                .write_to(&mut header);
                out.put_slice(&header);
                out.put_slice(payload);
                let message = out.split().freeze();
                self.send_wait
                    .send(self.session.binary(message), deadline)
                    .await?;
                sent.add(1);
            }
            if cursor.skipped_packets > skipped_reported {
                self.metrics
                    .packets_skipped
                    .inc_by(cursor.skipped_packets - skipped_reported);
                skipped_reported = cursor.skipped_packets;
            }
            // Wake on the next packet; the timer notices a station that went silent.
            tokio::select! {
                biased;
                () = &mut notified => {}
                () = &mut silence => {
                    silence
                        .as_mut()
                        .reset(tokio::time::Instant::now() + deadline);
                }
            }
        }
    }
}

/// The first message of every session.
fn hello_message(session: u64, station: &Station, bitrate_kbps: u32) -> String {
    let clock = station
        .clock()
        .map(|anchor| json!({ "pts": anchor.pts, "unix_ms": anchor.unix_ms }));
    json!({
        "type": "hello",
        "session": session,
        "codec": "opus",
        "sample_rate": SAMPLE_RATE,
        "channels": CHANNELS,
        "bitrate": bitrate_kbps,
        "station": station.id(),
        "frame_samples": FRAME_SAMPLES,
        "pre_roll_ms": station.listener_config.pre_roll_ms,
        "clock": clock,
        "now_playing": station.now_playing(),
    })
    .to_string()
}

/// The message sent when the track on air changes (`None` for the fallback loop).
fn now_playing_message(station: &Station, epoch: u32, pts: u64) -> Option<String> {
    let track = station.board.get(epoch)?;
    let now_playing = NowPlaying {
        track: (*track).clone(),
        started_pts: pts,
    };
    Some(json!({ "type": "now_playing", "now_playing": now_playing }).to_string())
}
