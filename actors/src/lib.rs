//! SonicForge's actors: supervised station pipelines, the listener fan-out, the
//! HTTP application, configuration and metrics. The `sonicforge` binary is
//! `src/main.rs`.

pub mod auth;
pub mod config;
pub mod events;
pub mod files;
pub mod http;
pub mod http_metrics;
pub mod listen;
pub mod mastering;
pub mod media_library;
pub mod metrics;
pub mod playlists;
pub mod server;
pub mod station;
pub mod station_control;
pub mod station_events;
pub mod supervise;
pub mod webhooks;
