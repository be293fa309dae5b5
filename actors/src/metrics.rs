//! Prometheus metrics. Every metric name is defined here, in the form
//! `sonicforge_<what>_<unit>`, with `_total` for counters. Label values are few
//! (stations, renditions, transports, reasons); nothing is recorded per sample.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Transport label values.
pub const TRANSPORT_WEBSOCKET: &str = "websocket";
pub const TRANSPORT_HTTP: &str = "http";

/// All metrics of the process, registered in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub listeners: IntGaugeVec,
    pub listener_connects: IntCounterVec,
    pub packets_sent: IntCounterVec,
    pub packets_skipped: IntCounterVec,
    pub listener_disconnects: IntCounterVec,
    pub mixer_underruns: IntCounterVec,
    pub mixer_frames: IntCounterVec,
    pub mixer_late_frames: IntCounterVec,
    pub encode_seconds: HistogramVec,
    pub encoder_dropped_frames: IntCounterVec,
    pub upcoming_tracks: IntGaugeVec,
    pub generate_seconds: HistogramVec,
    pub generate_failures: IntCounterVec,
    pub track_changes: IntCounterVec,
    pub actor_restarts: IntCounterVec,
    pub fallback_switches: IntCounterVec,
    pub dead_air_frames: IntCounterVec,
    pub actor_restart_seconds: HistogramVec,
    pub escalations: IntCounterVec,
    pub station_degraded: IntGaugeVec,
    pub station_running: IntGaugeVec,
    pub mastering_seconds: HistogramVec,
    pub track_lufs: prometheus::GaugeVec,
    pub track_true_peak_dbtp: prometheus::GaugeVec,
    pub events_emitted: IntCounterVec,
    pub events_written: IntCounterVec,
    pub events_dropped: IntCounterVec,
    pub events_pending: IntGaugeVec,
    pub event_write_errors: IntCounterVec,
    pub event_spool_bytes: IntGaugeVec,
    pub event_spool_events: IntGaugeVec,
    pub event_spool_oldest_age_seconds: prometheus::GaugeVec,
    pub event_spool_full: IntGaugeVec,
    pub event_spool_corrupt_records: IntCounterVec,
    pub event_spool_errors: IntCounterVec,
    pub event_spool_appended: IntCounterVec,
    pub event_spool_replayed: IntCounterVec,
    pub sse_clients: IntGaugeVec,
    pub sse_lagged: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    pub webhook_failures: IntCounterVec,
    pub webhook_dropped: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub media_uploads_in_progress: IntGauge,
}

fn build<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<T>,
) -> T {
    // Names and labels are constants of this module, checked by the tests below.
    #[allow(clippy::expect_used)]
    let metric = metric.expect("metric definitions are valid");
    #[allow(clippy::expect_used)]
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let frame_buckets = vec![
            0.000_05, 0.000_1, 0.000_2, 0.000_4, 0.000_8, 0.001_6, 0.003_2, 0.006_4, 0.012_8, 0.025,
        ];
        Self {
            listeners: build(
                r,
                IntGaugeVec::new(
                    Opts::new("sonicforge_listeners", "Listeners connected now."),
                    &["station", "transport", "rendition"],
                ),
            ),
            listener_connects: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_listener_connects_total",
                        "Listener connections accepted.",
                    ),
                    &["station", "transport", "rendition"],
                ),
            ),
            packets_sent: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_packets_sent_total",
                        "Opus packets written to listeners.",
                    ),
                    &["station", "transport", "rendition"],
                ),
            ),
            packets_skipped: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_packets_skipped_total",
                        "Packets skipped because a listener fell behind.",
                    ),
                    &["station", "transport", "rendition"],
                ),
            ),
            listener_disconnects: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_listener_disconnects_total",
                        "Listener disconnections by reason.",
                    ),
                    &["station", "transport", "reason"],
                ),
            ),
            mixer_underruns: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_mixer_underruns_total",
                        "Frames the mixer filled from the fallback loop because no track was ready.",
                    ),
                    &["station"],
                ),
            ),
            mixer_frames: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_mixer_frames_total",
                        "20 ms frames played out by the mixer.",
                    ),
                    &["station"],
                ),
            ),
            mixer_late_frames: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_mixer_late_frames_total",
                        "Frames the mixer produced more than one frame late (clock catch-up).",
                    ),
                    &["station"],
                ),
            ),
            encode_seconds: build(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "sonicforge_encode_seconds",
                        "Time to encode one 20 ms frame.",
                    )
                    .buckets(frame_buckets),
                    &["station", "rendition"],
                ),
            ),
            encoder_dropped_frames: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_encoder_dropped_frames_total",
                        "Frames lost between mixer and encoder because the PCM ring was full.",
                    ),
                    &["station"],
                ),
            ),
            upcoming_tracks: build(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "sonicforge_upcoming_tracks",
                        "Rendered tracks waiting for the mixer.",
                    ),
                    &["station"],
                ),
            ),
            generate_seconds: build(
                r,
                HistogramVec::new(
                    HistogramOpts::new("sonicforge_generate_seconds", "Time to render one track.")
                        .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
                    &["station", "generator"],
                ),
            ),
            generate_failures: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_generate_failures_total",
                        "Track renders that failed.",
                    ),
                    &["station", "generator"],
                ),
            ),
            track_changes: build(
                r,
                IntCounterVec::new(
                    Opts::new("sonicforge_track_changes_total", "Tracks that went on air."),
                    &["station"],
                ),
            ),
            actor_restarts: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_actor_restarts_total",
                        "Actors restarted, by station, actor and reason (a caught panic, a stop).",
                    ),
                    &["station", "actor", "reason"],
                ),
            ),
            actor_restart_seconds: build(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "sonicforge_actor_restart_seconds",
                        "Time from an actor's death (stop or caught panic) until it runs again.",
                    )
                    .buckets(vec![
                        0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                    ]),
                    &["station", "actor"],
                ),
            ),
            escalations: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_supervisor_escalations_total",
                        "Times a station supervisor went past its restart intensity, by level: subtree_restart (every actor restarted) or degraded (fallback loop held on air).",
                    ),
                    &["station", "level"],
                ),
            ),
            mastering_seconds: build(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "sonicforge_mastering_seconds",
                        "Time the mastering chain took per track.",
                    )
                    .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]),
                    &["station", "backend"],
                ),
            ),
            track_lufs: build(
                r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "sonicforge_track_lufs",
                        "Integrated loudness of the last mastered track, after mastering.",
                    ),
                    &["station"],
                ),
            ),
            track_true_peak_dbtp: build(
                r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "sonicforge_track_true_peak_dbtp",
                        "True peak of the last mastered track, after mastering.",
                    ),
                    &["station"],
                ),
            ),
            events_emitted: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_events_emitted_total",
                        "Play events handed to the event writer's queue (those dropped not counted).",
                    ),
                    &["station"],
                ),
            ),
            events_written: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_events_written_total",
                        "Play events stored by the event writer.",
                    ),
                    &["station"],
                ),
            ),
            events_dropped: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_events_dropped_total",
                        "Play events dropped because the event queue was full (the store failed for long); alert on any.",
                    ),
                    &["station"],
                ),
            ),
            events_pending: build(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "sonicforge_events_pending",
                        "Play events taken from the queue and not stored yet.",
                    ),
                    &["station"],
                ),
            ),
            event_write_errors: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_event_write_errors_total",
                        "Failed writes of a batch of play events (retried).",
                    ),
                    &["station"],
                ),
            ),
            event_spool_bytes: build(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "sonicforge_event_spool_bytes",
                        "Bytes the play-event spool takes on disk (events waiting for the store).",
                    ),
                    &["station"],
                ),
            ),
            event_spool_events: build(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "sonicforge_event_spool_events",
                        "Play events waiting in the spool for the store to take them.",
                    ),
                    &["station"],
                ),
            ),
            event_spool_oldest_age_seconds: build(
                r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "sonicforge_event_spool_oldest_age_seconds",
                        "Age of the oldest play event waiting in the spool; 0 when it is empty.",
                    ),
                    &["station"],
                ),
            ),
            event_spool_full: build(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "sonicforge_event_spool_full",
                        "1 while the play-event spool is at its bound and events wait in memory; alert on it.",
                    ),
                    &["station"],
                ),
            ),
            event_spool_corrupt_records: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_event_spool_corrupt_records_total",
                        "Bad records or torn tails found in the play-event spool and moved aside; alert on any.",
                    ),
                    &["station"],
                ),
            ),
            event_spool_errors: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_event_spool_errors_total",
                        "Failed opens, appends, reads and syncs of the play-event spool (disk errors).",
                    ),
                    &["station"],
                ),
            ),
            event_spool_appended: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_event_spool_appended_total",
                        "Play events appended to the spool because the store failed or the spool held older ones.",
                    ),
                    &["station"],
                ),
            ),
            event_spool_replayed: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_event_spool_replayed_total",
                        "Play events replayed from the spool into the store.",
                    ),
                    &["station"],
                ),
            ),
            station_degraded: build(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "sonicforge_station_degraded",
                        "1 while a station holds its fallback loop on air because restarts did not help; alert on it.",
                    ),
                    &["station"],
                ),
            ),
            station_running: build(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "sonicforge_station_running",
                        "1 while a station runs, 0 while it is stopped through the station API; a removed station has no series.",
                    ),
                    &["station"],
                ),
            ),
            dead_air_frames: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_dead_air_frames_total",
                        "Frames in which music stayed below -50 dBFS past the dead-air time and the fallback loop played.",
                    ),
                    &["station"],
                ),
            ),
            fallback_switches: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_fallback_switches_total",
                        "Switches between music and the fallback loop (dead air or no track ready), by direction.",
                    ),
                    &["station", "to"],
                ),
            ),
            sse_clients: build(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "sonicforge_sse_clients",
                        "Clients of the server-sent event stream of a station now.",
                    ),
                    &["station"],
                ),
            ),
            sse_lagged: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_sse_lagged_total",
                        "Times an event-stream client fell behind and skipped to the latest state.",
                    ),
                    &["station"],
                ),
            ),
            webhook_deliveries: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_webhook_deliveries_total",
                        "Webhook events the receiver accepted (a 2xx answer).",
                    ),
                    &["url"],
                ),
            ),
            webhook_failures: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_webhook_failures_total",
                        "Webhook posts that failed (an error status, a timeout, no connection); retried until the attempts run out.",
                    ),
                    &["url"],
                ),
            ),
            webhook_dropped: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_webhook_dropped_total",
                        "Webhook events given up, by reason: queue_full (the oldest waiting event made room) or attempts_exhausted.",
                    ),
                    &["url", "reason"],
                ),
            ),
            http_requests: build(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "sonicforge_http_requests_total",
                        "HTTP requests answered, by route pattern, method and status class (2xx, 4xx...).",
                    ),
                    &["route", "method", "status"],
                ),
            ),
            media_uploads_in_progress: build(
                r,
                IntGauge::new(
                    "sonicforge_media_uploads_in_progress",
                    "Media uploads being read, decoded or stored; further uploads get 503 while it is at the limit.",
                ),
            ),
            registry,
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Handles to one station's metrics, looked up once so the hot paths only touch atomics.
#[derive(Debug, Clone)]
pub struct StationMetrics {
    pub mixer_underruns: IntCounter,
    pub mixer_frames: IntCounter,
    pub mixer_late_frames: IntCounter,
    pub encoder_dropped_frames: IntCounter,
    pub upcoming_tracks: IntGauge,
    pub track_changes: IntCounter,
    pub generate_seconds: Histogram,
    pub generate_failures: IntCounter,
    pub switches_to_fallback: IntCounter,
    pub switches_to_music: IntCounter,
    pub dead_air_frames: IntCounter,
    pub degraded: IntGauge,
    pub mastering_seconds: Histogram,
    pub track_output_lufs: prometheus::Gauge,
    pub track_true_peak_dbtp: prometheus::Gauge,
}

impl StationMetrics {
    pub fn new(metrics: &Metrics, station: &str, generator: &str, mastering_backend: &str) -> Self {
        Self {
            mixer_underruns: metrics.mixer_underruns.with_label_values(&[station]),
            mixer_frames: metrics.mixer_frames.with_label_values(&[station]),
            mixer_late_frames: metrics.mixer_late_frames.with_label_values(&[station]),
            encoder_dropped_frames: metrics.encoder_dropped_frames.with_label_values(&[station]),
            upcoming_tracks: metrics.upcoming_tracks.with_label_values(&[station]),
            track_changes: metrics.track_changes.with_label_values(&[station]),
            generate_seconds: metrics
                .generate_seconds
                .with_label_values(&[station, generator]),
            generate_failures: metrics
                .generate_failures
                .with_label_values(&[station, generator]),
            switches_to_fallback: metrics
                .fallback_switches
                .with_label_values(&[station, "fallback"]),
            switches_to_music: metrics
                .fallback_switches
                .with_label_values(&[station, "music"]),
            dead_air_frames: metrics.dead_air_frames.with_label_values(&[station]),
            degraded: metrics.station_degraded.with_label_values(&[station]),
            mastering_seconds: metrics
                .mastering_seconds
                .with_label_values(&[station, mastering_backend]),
            track_output_lufs: metrics.track_lufs.with_label_values(&[station]),
            track_true_peak_dbtp: metrics.track_true_peak_dbtp.with_label_values(&[station]),
        }
    }
}

/// Handles to one listener kind's metrics (station, transport, rendition).
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    pub listeners: IntGauge,
    pub connects: IntCounter,
    pub packets_sent: IntCounter,
    pub packets_skipped: IntCounter,
    disconnects: IntCounterVec,
    station: String,
    transport: &'static str,
}

impl ListenerMetrics {
    pub fn new(
        metrics: &Metrics,
        station: &str,
        transport: &'static str,
        rendition_kbps: u32,
    ) -> Self {
        let rendition = rendition_kbps.to_string();
        let labels = [station, transport, rendition.as_str()];
        Self {
            listeners: metrics.listeners.with_label_values(&labels),
            connects: metrics.listener_connects.with_label_values(&labels),
            packets_sent: metrics.packets_sent.with_label_values(&labels),
            packets_skipped: metrics.packets_skipped.with_label_values(&labels),
            disconnects: metrics.listener_disconnects.clone(),
            station: station.to_string(),
            transport,
        }
    }

    /// Counts one disconnection for `reason`.
    pub fn disconnected(&self, reason: &str) {
        self.disconnects
            .with_label_values(&[self.station.as_str(), self.transport, reason])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_in_the_project_form() {
        let metrics = Metrics::new();
        let station = StationMetrics::new(&metrics, "main", "procedural", "cpu");
        station.mixer_frames.inc();
        let listener = ListenerMetrics::new(&metrics, "main", TRANSPORT_WEBSOCKET, 128);
        listener.disconnected("client_closed");
        metrics
            .encode_seconds
            .with_label_values(&["main", "128"])
            .observe(0.001);
        metrics
            .generate_seconds
            .with_label_values(&["main", "procedural"])
            .observe(1.0);
        let text = metrics.render();
        for family in metrics.registry.gather() {
            let name = family.name();
            assert!(name.starts_with("sonicforge_"), "{name}");
            let is_counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
            assert_eq!(is_counter, name.ends_with("_total"), "{name}");
        }
        assert!(text.contains("sonicforge_listener_disconnects_total{reason=\"client_closed\""));
        assert!(text.contains("sonicforge_mixer_frames_total{station=\"main\"} 1"));
    }
}
