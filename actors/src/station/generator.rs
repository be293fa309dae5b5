//! The generator actor: renders tracks and masters them, on its own thread, off the
//! real-time path. A track reaches the scheduler only once it is mastered.

use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Context, Handler, Message};
use sonicforge_engine::generate::{
    GenerateError, Generator, ProceduralGenerator, Track, TrackRequest,
};
use sonicforge_engine::master::{MasterError, Mastering, MasteringStats};

use super::Station;
use crate::mastering::KernelBackend;

/// Asks for one track; the answer carries the whole track as a shared buffer.
#[derive(Debug)]
pub struct Render(pub TrackRequest);

impl Message for Render {
    type Result = Result<MasteredTrack, RenderError>;
}

/// A rendered track, mastered, with what mastering did.
#[derive(Debug, Clone)]
pub struct MasteredTrack {
    pub track: Track,
    pub mastering: MasteringStats,
}

/// Why a render produced no track.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error("mastering failed: {0}")]
    Master(#[from] MasterError),
    #[error("the generator panicked (counted as a restart)")]
    Panicked,
}

/// Renders and masters tracks for one station.
#[derive(Debug)]
pub struct GeneratorActor {
    station: Arc<Station>,
    generator: ProceduralGenerator,
    /// Made on the actor's own thread when it starts (GPU kernels belong to it).
    mastering: Option<Mastering>,
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
            mastering: None,
        }
    }

    /// The mastering chain on the station's backend; the CPU when the GPU fails.
    fn mastering(&mut self) -> &mut Mastering {
        let settings = &self.station.mastering;
        self.mastering.get_or_insert_with(|| {
            let kernels = settings.backend.kernels().unwrap_or_else(|error| {
                tracing::error!(station = %self.station.id(), %error, "GPU kernels unavailable; mastering on the CPU");
                Box::new(sonicforge_engine::master::CpuKernels::new())
            });
            Mastering::new(kernels, settings.options.clone())
        })
    }

    fn render_and_master(&mut self, request: &TrackRequest) -> Result<MasteredTrack, RenderError> {
        let track = self.generator.render(request)?;
        let options = self
            .station
            .mastering
            .options_for(self.station.config.mastering_target_lufs, track.style.genre);
        let station = Arc::clone(&self.station);
        let mastering = self.mastering();
        mastering.set_options(options);
        let mastered = match mastering.master(&track.samples) {
            Ok(mastered) => mastered,
            Err(error) if mastering.backend() != KernelBackend::Cpu.name() => {
                tracing::error!(station = %station.id(), %error, "GPU mastering failed; the CPU takes over");
                let mut cpu = Mastering::cpu(mastering.options().clone());
                let mastered = cpu.master(&track.samples)?;
                self.mastering = Some(cpu);
                mastered
            }
            Err(error) => return Err(error.into()),
        };
        Ok(MasteredTrack {
            track: Track {
                samples: mastered.samples.into(),
                ..track
            },
            mastering: mastered.stats,
        })
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
    type Result = Result<MasteredTrack, RenderError>;

    fn handle(&mut self, Render(request): Render, _ctx: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        let station = Arc::clone(&self.station);
        station.heartbeats.generator.beat();
        let result = super::run_guarded(&station, "generator", || self.render_and_master(&request));
        station.heartbeats.generator.idle();
        let Some(result) = result else {
            station.metrics.generate_failures.inc();
            return Err(RenderError::Panicked);
        };
        let elapsed = started.elapsed();
        match &result {
            Ok(MasteredTrack { track, mastering }) => {
                let metrics = &station.metrics;
                metrics.generate_seconds.observe(elapsed.as_secs_f64());
                metrics.mastering_seconds.observe(mastering.seconds);
                metrics.track_output_lufs.set(mastering.output_lufs);
                metrics.track_true_peak_dbtp.set(mastering.true_peak_dbtp);
                tracing::info!(
                    station = %station.id(),
                    track = %track.id,
                    title = %track.title,
                    prompt = %track.prompt,
                    seconds = track.duration().as_secs_f64(),
                    realtime_factor = track.duration().as_secs_f64() / elapsed.as_secs_f64().max(1e-9),
                    input_lufs = mastering.input_lufs,
                    output_lufs = mastering.output_lufs,
                    true_peak_dbtp = mastering.true_peak_dbtp,
                    eq_min_db = mastering.eq_range_db.min_db,
                    eq_max_db = mastering.eq_range_db.max_db,
                    mastering_seconds = mastering.seconds,
                    backend = mastering.backend,
                    "track rendered and mastered"
                );
            }
            Err(error) => {
                station.metrics.generate_failures.inc();
                tracing::error!(station = %station.id(), prompt = %request.prompt, %error, "track render failed");
            }
        }
        result
    }
}
