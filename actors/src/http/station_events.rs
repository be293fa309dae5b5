//! `GET /api/stations/{id}/events`: a station's changes as server-sent events.
//!
//! Events: `station` (`{"state", "previous"}`: starting, up, degraded, down),
//! `track_change` (`{"now_playing"}`, what the WebSocket `now_playing` message carries,
//! `null` while the fallback loop plays) and `listeners` (`{"listeners"}`, at most
//! once a second). Every event's data also carries `station`, `seq` (its `id:`) and
//! `unix_ms`. A new client first gets the station's current state as one event of
//! each kind; a comment line keeps the connection open every [`KEEP_ALIVE`].
//!
//! A client that does not read holds at most the server's write buffer: its stream
//! is not polled while that is full, its subscription falls behind, and when it reads
//! again it gets the latest state instead of the changes it missed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::{ApiError, AppState};
use crate::station_events::{StationEvent, StationEvents, Subscription};

/// A comment line goes out when nothing else did for this long.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a client waits before it reconnects (the `retry:` hint).
pub const RETRY_MS: u64 = 3000;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/stations/{id}/events", web::get().to(station_events));
}

/// `GET /api/stations/{id}/events`: the station's changes as server-sent events
/// (see the module documentation).
#[utoipa::path(
    get,
    path = "/api/stations/{id}/events",
    tag = "stations",
    params(("id" = String, Path, description = "The station's id")),
    responses(
        (status = 200, description = "An endless event stream: `station`, `track_change` and `listeners` events whose data is JSON", content_type = "text/event-stream", body = String),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 503, description = "The station is stopped", body = super::openapi::ErrorBody),
    )
)]
async fn station_events(
    state: web::Data<AppState>,
    hub: web::Data<StationEvents>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.station(&id)?;
    let subscription = hub
        .subscribe(&id)
        .ok_or_else(|| ApiError::UnknownStation(id.to_string()))?;
    let gauge = state.metrics.sse_clients.with_label_values(&[id.as_str()]);
    let lagged = state.metrics.sse_lagged.with_label_values(&[id.as_str()]);
    let client = Client::new(Arc::from(id.as_str()), subscription, gauge, lagged);
    let stream = futures_util::stream::unfold(client, |mut client| async move {
        let chunk = client.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), client))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        // Proxies that buffer responses (nginx) pass events on at once.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

/// One event-stream client: its subscription and the lines waiting to go out.
struct Client {
    station: Arc<str>,
    subscription: Subscription,
    pending: VecDeque<Bytes>,
    /// The last event sent; older ones arriving late are skipped.
    seq: u64,
    keep_alive_at: Instant,
    gauge: prometheus::IntGauge,
    lagged: prometheus::IntCounter,
}

impl Client {
    fn new(
        station: Arc<str>,
        subscription: Subscription,
        gauge: prometheus::IntGauge,
        lagged: prometheus::IntCounter,
    ) -> Self {
        gauge.inc();
        let mut client = Self {
            station,
            subscription,
            pending: VecDeque::with_capacity(4),
            seq: 0,
            keep_alive_at: Instant::now() + KEEP_ALIVE,
            gauge,
            lagged,
        };
        client
            .pending
            .push_back(Bytes::from(format!("retry: {RETRY_MS}\n\n")));
        client.queue_snapshot();
        client
    }

    /// The station's latest state, as one event of each kind.
    fn queue_snapshot(&mut self) {
        let snapshot = Arc::clone(&self.subscription.snapshot.borrow_and_update());
        for change in snapshot.as_changes() {
            let event = StationEvent {
                station: Arc::clone(&self.station),
                seq: snapshot.seq,
                unix_ms: crate::station::unix_ms_now(),
                change,
            };
            self.pending.push_back(frame(&event));
        }
        self.seq = snapshot.seq;
    }

    /// The next bytes for the client; `None` ends the stream (the station is gone).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                self.keep_alive_at = Instant::now() + KEEP_ALIVE;
                return Some(chunk);
            }
            tokio::select! {
                received = self.subscription.events.recv() => match received {
                    Ok(event) if event.seq > self.seq => {
                        self.seq = event.seq;
                        self.pending.push_back(frame(&event));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        self.lagged.inc();
                        self.queue_snapshot();
                    }
                    Err(RecvError::Closed) => return None,
                },
                () = tokio::time::sleep_until(self.keep_alive_at) => {
                    self.pending.push_back(Bytes::from_static(b": keep-alive\n\n"));
                }
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// One event in the event-stream format.
fn frame(event: &StationEvent) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_string());
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        event.seq,
        event.change.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::station_events::{StationChange, StationSnapshot, StationState};
    use tokio::sync::{broadcast, watch};

    fn client() -> (
        Client,
        broadcast::Sender<Arc<StationEvent>>,
        watch::Sender<Arc<StationSnapshot>>,
    ) {
        let (events, receiver) = broadcast::channel(2);
        let (snapshot, snapshot_receiver) = watch::channel(Arc::new(StationSnapshot {
            seq: 5,
            state: StationState::Up,
            now_playing: None,
            listeners: 1,
        }));
        let metrics = crate::metrics::Metrics::new();
        let client = Client::new(
            Arc::from("main"),
            Subscription {
                snapshot: snapshot_receiver,
                events: receiver,
            },
            metrics.sse_clients.with_label_values(&["main"]),
            metrics.sse_lagged.with_label_values(&["main"]),
        );
        (client, events, snapshot)
    }

    fn event(seq: u64, listeners: i64) -> Arc<StationEvent> {
        Arc::new(StationEvent {
            station: Arc::from("main"),
            seq,
            unix_ms: 0,
            change: StationChange::Listeners { listeners },
        })
    }

    async fn text(client: &mut Client) -> String {
        String::from_utf8(client.next_chunk().await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_new_client_gets_the_retry_hint_and_the_current_state() {
        let (mut client, _events, _snapshot) = client();
        assert_eq!(text(&mut client).await, "retry: 3000\n\n");
        let station = text(&mut client).await;
        assert!(
            station.starts_with("id: 5\nevent: station\ndata: {"),
            "{station}"
        );
        assert!(station.contains(r#""state":"up""#), "{station}");
        assert!(text(&mut client).await.contains("event: track_change"));
        assert!(text(&mut client).await.contains(r#""listeners":1"#));
    }

    #[tokio::test]
    async fn changes_after_the_snapshot_follow_and_older_ones_are_skipped() {
        let (mut client, events, _snapshot) = client();
        for _ in 0..4 {
            client.next_chunk().await.unwrap();
        }
        events.send(event(4, 9)).unwrap();
        events.send(event(6, 2)).unwrap();
        let next = text(&mut client).await;
        assert!(next.starts_with("id: 6\nevent: listeners\n"), "{next}");
        assert!(next.contains(r#""listeners":2"#), "{next}");
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_the_latest_state() {
        let (mut client, events, snapshot) = client();
        for _ in 0..4 {
            client.next_chunk().await.unwrap();
        }
        for seq in 6..=10 {
            events.send(event(seq, seq as i64)).unwrap();
        }
        snapshot.send_replace(Arc::new(StationSnapshot {
            seq: 10,
            state: StationState::Up,
            now_playing: None,
            listeners: 10,
        }));
        let chunks = [
            text(&mut client).await,
            text(&mut client).await,
            text(&mut client).await,
        ];
        assert!(
            chunks[0].starts_with("id: 10\nevent: station\n"),
            "{chunks:?}"
        );
        assert!(chunks[2].contains(r#""listeners":10"#), "{chunks:?}");
        assert_eq!(client.lagged.get(), 1);
    }

    #[tokio::test]
    async fn the_stream_ends_when_the_station_goes_away() {
        let (mut client, events, _snapshot) = client();
        for _ in 0..4 {
            client.next_chunk().await.unwrap();
        }
        drop(events);
        assert!(client.next_chunk().await.is_none());
    }

    #[tokio::test]
    async fn a_quiet_stream_sends_keep_alive_comments() {
        let (mut client, _events, _snapshot) = client();
        for _ in 0..4 {
            client.next_chunk().await.unwrap();
        }
        client.keep_alive_at = Instant::now();
        assert_eq!(text(&mut client).await, ": keep-alive\n\n");
        assert_eq!(client.gauge.get(), 1);
        drop(client);
    }
}
