//! Webhooks: a JSON post to each configured URL when a track goes on air and when a
//! station goes up or down.
//!
//! The body is `{"id", "type", "station", "time", "payload"}`: `id` is unique per
//! event (a retry repeats it), `type` is `track_change`, `station_up` or
//! `station_down`, `time` is RFC 3339 in UTC, and `payload` is what the event stream
//! carries for the change (`{"now_playing"}` or `{"state", "previous"}`). With
//! `secret_env` set, the header `X-SonicForge-Signature: sha256=<hex>` carries the
//! HMAC-SHA256 of the body under that secret.
//!
//! Delivery never holds a station up: a router task takes the changes from
//! [`StationEvents`](crate::station_events::StationEvents) and puts them on a
//! bounded queue per URL (when it is full the oldest event is dropped and counted),
//! and one task per URL posts them in order, each attempt bounded by `timeout_ms`,
//! retried with doubling back-off up to `max_attempts`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};

use crate::metrics::Metrics;
use crate::station_events::{StationChange, StationEvent, StationState};

/// Header carrying the body's HMAC-SHA256 signature (`sha256=<hex>`).
pub const SIGNATURE_HEADER: &str = "x-sonicforge-signature";
/// Header carrying the event type.
pub const EVENT_HEADER: &str = "x-sonicforge-event";
/// Header carrying the event id.
pub const DELIVERY_HEADER: &str = "x-sonicforge-delivery";

/// The events a webhook can be posted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// A track (or the fallback loop, `now_playing: null`) went on air.
    TrackChange,
    /// Audio reaches the listeners again (or for the first time).
    StationUp,
    /// Audio stopped reaching the listeners, the station stopped, or it degraded.
    StationDown,
}

impl WebhookEvent {
    pub fn name(self) -> &'static str {
        match self {
            Self::TrackChange => "track_change",
            Self::StationUp => "station_up",
            Self::StationDown => "station_down",
        }
    }

    /// The webhook event a station change is posted as, if any.
    pub fn of(change: &StationChange) -> Option<Self> {
        match change {
            StationChange::TrackChange { .. } => Some(Self::TrackChange),
            StationChange::State { state, .. } => match state {
                StationState::Up => Some(Self::StationUp),
                StationState::Down | StationState::Degraded => Some(Self::StationDown),
                StationState::Starting => None,
            },
            StationChange::Listeners { .. } => None,
        }
    }
}

fn all_events() -> Vec<WebhookEvent> {
    vec![
        WebhookEvent::TrackChange,
        WebhookEvent::StationUp,
        WebhookEvent::StationDown,
    ]
}

/// `[webhooks]`: where and how events are posted.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Receivers of every event in `events` (http:// or https:// URLs).
    pub urls: Vec<String>,
    /// The events posted to `urls`; all three by default.
    pub events: Vec<WebhookEvent>,
    /// Receivers with their own list of events (`[[webhooks.endpoints]]`).
    pub endpoints: Vec<WebhookEndpoint>,
    /// Time one attempt may take, connecting included, in milliseconds.
    pub timeout_ms: u64,
    /// Attempts per event before it is given up (1 means no retry).
    pub max_attempts: u32,
    /// Wait before the first retry; each further retry waits twice as long.
    pub backoff_initial_ms: u64,
    /// Longest wait between two attempts.
    pub backoff_max_ms: u64,
    /// Events waiting per URL; when full, the oldest is dropped.
    pub queue_capacity: usize,
    /// Name of the environment variable holding the signing secret; no signature
    /// when unset.
    pub secret_env: Option<String>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            events: all_events(),
            endpoints: Vec::new(),
            timeout_ms: 5000,
            max_attempts: 5,
            backoff_initial_ms: 1000,
            backoff_max_ms: 60_000,
            queue_capacity: 256,
            secret_env: None,
        }
    }
}

/// One receiver with its own events.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    pub url: String,
    /// The events posted to it; all three when left out.
    #[serde(default = "all_events")]
    pub events: Vec<WebhookEvent>,
}

impl WebhooksConfig {
    /// Every receiver with its events.
    pub fn targets(&self) -> Vec<WebhookEndpoint> {
        self.urls
            .iter()
            .map(|url| WebhookEndpoint {
                url: url.clone(),
                events: self.events.clone(),
            })
            .chain(self.endpoints.iter().cloned())
            .collect()
    }

    /// Checks the section; the error names the key and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (index, url) in self.urls.iter().enumerate() {
            check_url(url).map_err(|message| (format!("webhooks.urls[{index}]"), message))?;
        }
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            check_url(&endpoint.url)
                .map_err(|message| (format!("webhooks.endpoints[{index}].url"), message))?;
        }
        for (key, value, min, max) in [
            ("webhooks.timeout_ms", self.timeout_ms, 50, 120_000),
            (
                "webhooks.max_attempts",
                u64::from(self.max_attempts),
                1,
                100,
            ),
            (
                "webhooks.backoff_initial_ms",
                self.backoff_initial_ms,
                1,
                3_600_000,
            ),
            (
                "webhooks.backoff_max_ms",
                self.backoff_max_ms,
                self.backoff_initial_ms,
                86_400_000,
            ),
            (
                "webhooks.queue_capacity",
                self.queue_capacity as u64,
                1,
                100_000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err((key.to_string(), format!("{value} is outside {min}..={max}")));
            }
        }
        if self.secret_env.as_deref().is_some_and(str::is_empty) {
            return Err((
                "webhooks.secret_env".into(),
                "names no environment variable".into(),
            ));
        }
        Ok(())
    }

    /// Wait before attempt `attempt + 1` (attempts count from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .backoff_initial_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
        Duration::from_millis(doubled.min(self.backoff_max_ms))
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: awc::http::Uri = url
        .parse()
        .map_err(|error| format!("`{url}` is not a URL: {error}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("`{url}` is not an http:// or https:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` names no host"));
    }
    Ok(())
}

/// The URL as metric labels and logs show it: without user, password or query,
/// which may hold secrets.
pub fn url_label(url: &str) -> String {
    match url.parse::<awc::http::Uri>() {
        Ok(uri) => {
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}{}",
                uri.scheme_str().unwrap_or("http"),
                uri.host().unwrap_or_default(),
                uri.path()
            )
        }
        Err(_) => "invalid".to_string(),
    }
}

/// Why the webhooks cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhooks.secret_env names `{env}`, which is not set in the environment")]
    MissingSecret { env: String },
    #[error("cannot set up TLS for webhook posts: {0}")]
    Tls(#[source] rustls::Error),
}

/// One event as posted.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    station: &'a str,
    time: String,
    payload: &'a StationChange,
}

/// A body ready to post, shared by every URL that takes it.
#[derive(Debug, Clone)]
struct Delivery {
    id: Arc<str>,
    kind: WebhookEvent,
    body: Bytes,
    signature: Option<Arc<str>>,
}

/// A receiver: its queue and counters.
#[derive(Debug)]
struct Target {
    url: String,
    label: String,
    events: Vec<WebhookEvent>,
    queue: Mutex<VecDeque<Delivery>>,
    capacity: usize,
    ready: Notify,
    delivered: IntCounter,
    failures: IntCounter,
    dropped_queue_full: IntCounter,
    dropped_attempts_exhausted: IntCounter,
}

impl Target {
    /// Queues `delivery`, dropping the oldest when the queue is full; never waits
    /// for the sender.
    fn push(&self, delivery: Delivery) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= self.capacity {
            queue.pop_front();
            self.dropped_queue_full.inc();
        }
        queue.push_back(delivery);
        drop(queue);
        self.ready.notify_one();
    }

    async fn next(&self) -> Delivery {
        loop {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            if let Some(delivery) = next {
                return delivery;
            }
            self.ready.notified().await;
        }
    }
}

/// Starts the router and one sender per URL on the current actix system; does
/// nothing without URLs. `lookup` reads the environment (for `secret_env`).
pub fn start(
    config: &WebhooksConfig,
    lookup: impl Fn(&str) -> Option<String>,
    metrics: &Metrics,
    events: broadcast::Receiver<Arc<StationEvent>>,
) -> Result<(), WebhookError> {
    let endpoints = config.targets();
    if endpoints.is_empty() {
        return Ok(());
    }
    let secret = match &config.secret_env {
        Some(env) => Some(
            lookup(env)
                .filter(|secret| !secret.is_empty())
                .ok_or_else(|| WebhookError::MissingSecret { env: env.clone() })?
                .into_bytes(),
        ),
        None => None,
    };
    let tls = Arc::new(tls_config()?);
    let targets: Vec<Arc<Target>> = endpoints
        .into_iter()
        .map(|endpoint| {
            let label = url_label(&endpoint.url);
            let dropped = |reason: &str| {
                metrics
                    .webhook_dropped
                    .with_label_values(&[label.as_str(), reason])
            };
            Arc::new(Target {
                delivered: metrics.webhook_deliveries.with_label_values(&[&label]),
                failures: metrics.webhook_failures.with_label_values(&[&label]),
                dropped_queue_full: dropped("queue_full"),
                dropped_attempts_exhausted: dropped("attempts_exhausted"),
                url: endpoint.url,
                label,
                events: endpoint.events,
                queue: Mutex::new(VecDeque::with_capacity(config.queue_capacity.min(64))),
                capacity: config.queue_capacity,
                ready: Notify::new(),
            })
        })
        .collect();
    for target in &targets {
        actix::spawn(send_loop(
            Arc::clone(target),
            config.clone(),
            Arc::clone(&tls),
        ));
    }
    actix::spawn(route(events, targets, secret));
    Ok(())
}

/// Rustls with the webpki roots and the aws-lc-rs provider, named explicitly so that
/// no process-wide default is needed.
fn tls_config() -> Result<rustls::ClientConfig, WebhookError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(WebhookError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Takes every station change and queues its webhook for the URLs that want it.
async fn route(
    mut events: broadcast::Receiver<Arc<StationEvent>>,
    targets: Vec<Arc<Target>>,
    secret: Option<Vec<u8>>,
) {
    let boot_ms = crate::station::unix_ms_now();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "webhook router fell behind; events dropped");
                for target in &targets {
                    target.dropped_queue_full.inc_by(missed);
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(kind) = WebhookEvent::of(&event.change) else {
            continue;
        };
        if !targets.iter().any(|t| t.events.contains(&kind)) {
            continue;
        }
        let delivery = delivery(&event, kind, boot_ms, secret.as_deref());
        for target in targets.iter().filter(|t| t.events.contains(&kind)) {
            target.push(delivery.clone());
        }
    }
}

fn delivery(
    event: &StationEvent,
    kind: WebhookEvent,
    boot_ms: u64,
    secret: Option<&[u8]>,
) -> Delivery {
    let id = format!("{}-{boot_ms}-{}", event.station, event.seq);
    let envelope = Envelope {
        id: id.clone(),
        kind: kind.name(),
        station: &event.station,
        time: rfc3339_utc(event.unix_ms),
        payload: &event.change,
    };
    let body = Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default());
    let signature = secret.map(|secret| Arc::from(sign(secret, &body).as_str()));
    Delivery {
        id: Arc::from(id.as_str()),
        kind,
        body,
        signature,
    }
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <hmac::Hmac<sha2::Sha256> as KeyInit>::new(&Default::default()));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in digest.iter() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Posts the target's events in order, each until it is accepted or its attempts
/// run out.
async fn send_loop(target: Arc<Target>, config: WebhooksConfig, tls: Arc<rustls::ClientConfig>) {
    let timeout = Duration::from_millis(config.timeout_ms);
    let client = awc::Client::builder()
        .connector(awc::Connector::new().timeout(timeout).rustls_0_23(tls))
        .timeout(timeout)
        .disable_redirects()
        .finish();
    loop {
        let delivery = target.next().await;
        for attempt in 1..=config.max_attempts {
            let mut request = client
                .post(&target.url)
                .insert_header(("content-type", "application/json"))
                .insert_header((EVENT_HEADER, delivery.kind.name()))
                .insert_header((DELIVERY_HEADER, &*delivery.id));
            if let Some(signature) = &delivery.signature {
                request = request.insert_header((SIGNATURE_HEADER, &**signature));
            }
            let failure = match request.send_body(delivery.body.clone()).await {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("answered {}", response.status())),
                Err(error) => Some(error.to_string()),
            };
            let Some(failure) = failure else {
                target.delivered.inc();
                break;
            };
            target.failures.inc();
            tracing::warn!(url = %target.label, id = %delivery.id, attempt, %failure, "webhook post failed");
            if attempt == config.max_attempts {
                target.dropped_attempts_exhausted.inc();
                tracing::error!(url = %target.label, id = %delivery.id, "webhook event given up");
                break;
            }
            tokio::time::sleep(config.backoff(attempt)).await;
        }
    }
}

/// `unix_ms` as RFC 3339 in UTC with milliseconds, e.g. `2026-11-24T21:00:00.000Z`.
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    // Days to civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_utc(1_795_555_427_406), "2026-11-24T21:23:47.406Z");
    }

    #[test]
    fn signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn urls_lose_their_secrets_in_labels() {
        assert_eq!(
            url_label("https://user:pw@hooks.example:8443/radio?token=abc"),
            "https://hooks.example:8443/radio"
        );
        assert_eq!(url_label("http://127.0.0.1/x"), "http://127.0.0.1/x");
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let config = WebhooksConfig {
            backoff_initial_ms: 100,
            backoff_max_ms: 500,
            ..WebhooksConfig::default()
        };
        let waits: Vec<u64> = (1..=5)
            .map(|a| config.backoff(a).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        assert_eq!(config.backoff(u32::MAX).as_millis(), 500);
    }

    #[test]
    fn bad_sections_name_the_key() {
        let bad_url = WebhooksConfig {
            urls: vec!["ftp://hooks.example/".into()],
            ..WebhooksConfig::default()
        };
        assert_eq!(bad_url.validate().unwrap_err().0, "webhooks.urls[0]");
        let no_host = WebhooksConfig {
            endpoints: vec![WebhookEndpoint {
                url: "http:///path".into(),
                events: all_events(),
            }],
            ..WebhooksConfig::default()
        };
        assert_eq!(
            no_host.validate().unwrap_err().0,
            "webhooks.endpoints[0].url"
        );
        let backoff = WebhooksConfig {
            backoff_initial_ms: 5000,
            backoff_max_ms: 1000,
            ..WebhooksConfig::default()
        };
        assert_eq!(backoff.validate().unwrap_err().0, "webhooks.backoff_max_ms");
        assert!(WebhooksConfig::default().validate().is_ok());
    }

    #[test]
    fn station_changes_map_to_webhook_events() {
        let up = StationChange::State {
            state: StationState::Up,
            previous: StationState::Starting,
        };
        let degraded = StationChange::State {
            state: StationState::Degraded,
            previous: StationState::Up,
        };
        let starting = StationChange::State {
            state: StationState::Starting,
            previous: StationState::Starting,
        };
        assert_eq!(WebhookEvent::of(&up), Some(WebhookEvent::StationUp));
        assert_eq!(WebhookEvent::of(&degraded), Some(WebhookEvent::StationDown));
        assert_eq!(WebhookEvent::of(&starting), None);
        assert_eq!(
            WebhookEvent::of(&StationChange::Listeners { listeners: 3 }),
            None
        );
    }

    #[test]
    fn a_full_queue_drops_its_oldest_event() {
        let metrics = Metrics::new();
        let target = Target {
            url: "http://127.0.0.1/".into(),
            label: "http://127.0.0.1/".into(),
            events: all_events(),
            queue: Mutex::new(VecDeque::new()),
            capacity: 2,
            ready: Notify::new(),
            delivered: metrics.webhook_deliveries.with_label_values(&["t"]),
            failures: metrics.webhook_failures.with_label_values(&["t"]),
            dropped_queue_full: metrics
                .webhook_dropped
                .with_label_values(&["t", "queue_full"]),
            dropped_attempts_exhausted: metrics
                .webhook_dropped
                .with_label_values(&["t", "attempts_exhausted"]),
        };
        for id in ["a", "b", "c"] {
            target.push(Delivery {
                id: Arc::from(id),
                kind: WebhookEvent::TrackChange,
                body: Bytes::new(),
                signature: None,
            });
        }
        let left: Vec<String> = target
            .queue
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.id.to_string())
            .collect();
        assert_eq!(left, ["b", "c"]);
        assert_eq!(target.dropped_queue_full.get(), 1);
    }

    #[test]
    fn the_body_carries_id_type_station_time_and_payload() {
        let event = StationEvent {
            station: Arc::from("main"),
            seq: 7,
            unix_ms: 0,
            change: StationChange::State {
                state: StationState::Down,
                previous: StationState::Up,
            },
        };
        let delivery = delivery(&event, WebhookEvent::StationDown, 42, Some(b"key"));
        let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": "main-42-7",
                "type": "station_down",
                "station": "main",
                "time": "1970-01-01T00:00:00.000Z",
                "payload": { "state": "down", "previous": "up" },
            })
        );
        assert_eq!(
            delivery.signature.as_deref(),
            Some(sign(b"key", &delivery.body).as_str())
        );
    }
}
