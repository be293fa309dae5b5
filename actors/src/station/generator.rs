//! The generator actor: renders tracks on its own thread, off the real-time path.

use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Context, Handler, Message};
use sonicforge_engine::generate::{
    GenerateError, Generator, ProceduralGenerator, Track, TrackRequest,
};

use super::Station;

/// Asks for one track; the answer carries the whole track as a shared buffer.
#[derive(Debug)]
pub struct Render(pub TrackRequest);

impl Message for Render {
    type Result = Result<Track, RenderError>;
}

/// Why a render produced no track.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error("the generator panicked (counted as a restart)")]
    Panicked,
}

/// Renders tracks for one station.
#[derive(Debug)]
pub struct GeneratorActor {
    station: Arc<Station>,
    generator: ProceduralGenerator,
}

impl GeneratorActor {
    /// The station this actor belongs to.
    pub(crate) fn station(&self) -> &Station {
        &self.station
    }

    pub fn new(station: Arc<Station>) -> Self {
        Self {
            station,
            generator: ProceduralGenerator::default(),
        }
    }
}

/// Niceness of the generator's thread: rendering is the one heavy job of a station,
/// and it must never take the CPU from the mixer, the encoder or the listeners.
const GENERATOR_NICENESS: i32 = 10;

impl Actor for GeneratorActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.station.actor_running("generator");
        let thread = rustix::thread::gettid();
        if let Err(error) = rustix::process::setpriority_process(Some(thread), GENERATOR_NICENESS) {
            tracing::warn!(station = %self.station.id(), %error, "cannot lower the generator thread's priority");
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.station.actor_stopped("generator");
    }
}

impl Handler<Render> for GeneratorActor {
    type Result = Result<Track, RenderError>;

    fn handle(&mut self, Render(request): Render, _ctx: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        let station = Arc::clone(&self.station);
        let generator = &mut self.generator;
        station.heartbeats.generator.beat();
        let result = super::run_guarded(&station, "generator", || generator.render(&request));
        station.heartbeats.generator.idle();
        let Some(result) = result else {
            self.station.metrics.generate_failures.inc();
            return Err(RenderError::Panicked);
        };
        let elapsed = started.elapsed();
        match &result {
            Ok(track) => {
                self.station
                    .metrics
                    .generate_seconds
                    .observe(elapsed.as_secs_f64());
                tracing::info!(
                    station = %self.station.id(),
                    track = %track.id,
                    title = %track.title,
                    prompt = %track.prompt,
                    seconds = track.duration().as_secs_f64(),
                    realtime_factor = track.duration().as_secs_f64() / elapsed.as_secs_f64().max(1e-9),
                    "track rendered"
                );
            }
            Err(error) => {
                self.station.metrics.generate_failures.inc();
                tracing::error!(station = %self.station.id(), prompt = %request.prompt, %error, "track render failed");
            }
        }
        result.map_err(RenderError::from)
    }
}
