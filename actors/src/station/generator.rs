//! The generator actor: renders tracks (from a prompt, or decoded from a media file)
//! and masters them, on its own thread, off the real-time path. A track reaches the
//! scheduler only once it is mastered.

use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, Context, Handler, Message};
use sonicforge_engine::generate::{GenerateError, Generator, ProceduralGenerator, TrackRequest};
use sonicforge_engine::master::{EqTarget, GenreTarget, MasterError, Mastering, MasteringStats};

use super::{Station, TrackInfo};
use crate::mastering::KernelBackend;

/// Asks for one track; the answer carries the whole track as a shared buffer.
#[derive(Debug)]
pub struct Render(pub RenderSource);

/// What to render.
#[derive(Debug, Clone)]
pub enum RenderSource {
    /// Generate from a prompt.
    Prompt(TrackRequest),
    /// Decode a file of the media library.
    File { media_id: String },
}

impl RenderSource {
    /// A short description for logs.
    pub fn describe(&self) -> &str {
        match self {
            Self::Prompt(request) => &request.prompt,
            Self::File { media_id } => media_id,
        }
    }
}

impl Message for Render {
    type Result = Result<MasteredTrack, RenderError>;
}

/// A rendered track, mastered, with what listeners are told of it.
#[derive(Debug, Clone)]
pub struct MasteredTrack {
    /// Interleaved stereo at 48 kHz, mastered.
    pub samples: Arc<[f32]>,
    pub info: TrackInfo,
    pub mastering: MasteringStats,
}

impl MasteredTrack {
    pub fn duration_seconds(&self) -> f64 {
        (self.samples.len() / sonicforge_engine::frame::CHANNELS) as f64
            / f64::from(sonicforge_engine::frame::SAMPLE_RATE)
    }
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
    #[error("media `{media_id}`: {message}")]
    File { media_id: String, message: String },
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

    fn render_and_master(&mut self, source: &RenderSource) -> Result<MasteredTrack, RenderError> {
        match source {
            RenderSource::Prompt(request) => {
                let track = self.generator.render(request)?;
                let options = self
                    .station
                    .mastering
                    .options_for(self.station.config.mastering_target_lufs, track.style.genre);
                let (samples, mastering) = self.master(options, &track.samples)?;
                let info = TrackInfo::mastered(&track, &mastering);
                Ok(MasteredTrack {
                    samples,
                    info,
                    mastering,
                })
            }
            RenderSource::File { media_id } => self.decode_and_master(media_id),
        }
    }

    /// Decodes a media file and masters it like a generated track (toward the curve
    /// of the genre its tags name, when the chain has one).
    fn decode_and_master(&mut self, media_id: &str) -> Result<MasteredTrack, RenderError> {
        let file_error = |message: String| RenderError::File {
            media_id: media_id.to_string(),
            message,
        };
        let library = self
            .station
            .media_library()
            .ok_or_else(|| file_error("the media library is not available".into()))?;
        let decoded = library
            .decode(media_id)
            .map_err(|error| file_error(error.to_string()))?;
        if decoded.frames() == 0 {
            return Err(file_error("the file holds no audio".into()));
        }
        // The catalog's tags name an upload as it was uploaded, not as it is stored.
        let tags = library
            .get(media_id)
            .map_or_else(|| decoded.tags.clone(), |entry| entry.tags);
        let genre = tags
            .genre
            .as_deref()
            .and_then(GenreTarget::from_name)
            .unwrap_or(GenreTarget::Neutral);
        let mut options = self.station.mastering.options.clone();
        if let Some(target) = self.station.config.mastering_target_lufs {
            options.target_lufs = target;
        }
        options.eq_target = EqTarget::Genre(genre);
        let (samples, mastering) = self.master(options, &decoded.samples)?;
        let info = TrackInfo {
            track_id: media_id.to_string(),
            title: tags.title,
            prompt: String::new(),
            generator: "file".to_string(),
            genre: tags.genre.unwrap_or_default(),
            bpm: 0.0,
            key: String::new(),
            duration_ms: decoded.duration.as_millis() as u64,
            mastering: Some((&mastering).into()),
            file: Some(media_id.to_string()),
            artist: tags.artist,
            playlist: None,
            scheduled_as: "rotation",
        };
        Ok(MasteredTrack {
            samples,
            info,
            mastering,
        })
    }

    /// Masters `samples` with `options`; the CPU takes over when the GPU fails.
    fn master(
        &mut self,
        options: sonicforge_engine::master::MasteringOptions,
        samples: &[f32],
    ) -> Result<(Arc<[f32]>, MasteringStats), RenderError> {
        let station = Arc::clone(&self.station);
        let mastering = self.mastering();
        mastering.set_options(options);
        let mastered = match mastering.master(samples) {
            Ok(mastered) => mastered,
            Err(error) if mastering.backend() != KernelBackend::Cpu.name() => {
                tracing::error!(station = %station.id(), %error, "GPU mastering failed; the CPU takes over");
                let mut cpu = Mastering::cpu(mastering.options().clone());
                let mastered = cpu.master(samples)?;
                self.mastering = Some(cpu);
                mastered
            }
            Err(error) => return Err(error.into()),
        };
        Ok((mastered.samples.into(), mastered.stats))
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

    fn handle(&mut self, Render(source): Render, _ctx: &mut Context<Self>) -> Self::Result {
        let started = Instant::now();
        let station = Arc::clone(&self.station);
        station.heartbeats.generator.beat();
        let result = super::run_guarded(&station, "generator", || self.render_and_master(&source));
        station.heartbeats.generator.idle();
        let Some(result) = result else {
            station.metrics.generate_failures.inc();
            return Err(RenderError::Panicked);
        };
        let elapsed = started.elapsed();
        match &result {
            Ok(track) => {
                let MasteredTrack {
                    info, mastering, ..
                } = track;
                let metrics = &station.metrics;
                metrics.generate_seconds.observe(elapsed.as_secs_f64());
                metrics.mastering_seconds.observe(mastering.seconds);
                metrics.track_output_lufs.set(mastering.output_lufs);
                metrics.track_true_peak_dbtp.set(mastering.true_peak_dbtp);
                tracing::info!(
                    station = %station.id(),
                    track = %info.track_id,
                    title = %info.title,
                    source = %source.describe(),
                    seconds = track.duration_seconds(),
                    realtime_factor = track.duration_seconds() / elapsed.as_secs_f64().max(1e-9),
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
                tracing::error!(station = %station.id(), source = %source.describe(), %error, "track render failed");
            }
        }
        result
    }
}
