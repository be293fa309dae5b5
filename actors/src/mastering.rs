//! Choosing where the mastering chain's spectral stages run, once at start.
//!
//! `mastering.backend = "auto"` measures both backends on the same work (a short
//! deterministic signal through both kernels) and keeps the faster; `"gpu"` insists
//! on an adapter; `"cpu"` never looks for one.

use std::time::{Duration, Instant};

use sonicforge_engine::frame::{CHANNELS, SAMPLE_RATE};
use sonicforge_engine::generate::Genre;
use sonicforge_engine::master::gpu::GpuKernels;
use sonicforge_engine::master::{
    ConvolveJob, CpuKernels, EqTarget, GenreTarget, KernelError, MasteringOptions, SpectralKernels,
};

use crate::config::{MasteringBackendChoice, MasteringConfig};

/// Seconds of audio the calibration pushes through each backend.
const CALIBRATION_SECONDS: usize = 20;

/// Why mastering cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum MasteringSetupError {
    #[error("mastering.backend = \"gpu\" but no GPU is usable: {0}")]
    NoGpu(KernelError),
    #[error("the {backend} kernels failed during calibration: {source}")]
    Calibration {
        backend: &'static str,
        source: KernelError,
    },
}

/// The backend chosen at start, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelBackend {
    Cpu,
    Gpu,
}

impl KernelBackend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
        }
    }

    /// New kernels of this backend (each generator has its own).
    pub fn kernels(self) -> Result<Box<dyn SpectralKernels + Send>, KernelError> {
        Ok(match self {
            Self::Cpu => Box::new(CpuKernels::new()),
            Self::Gpu => Box::new(GpuKernels::new()?),
        })
    }
}

/// Everything a station needs to master its tracks.
#[derive(Debug, Clone, PartialEq)]
pub struct MasteringSettings {
    pub backend: KernelBackend,
    pub options: MasteringOptions,
}

impl MasteringSettings {
    /// The options for one station's track of `genre`.
    pub fn options_for(&self, target_lufs: Option<f64>, genre: Genre) -> MasteringOptions {
        let mut options = self.options.clone();
        if let Some(target) = target_lufs {
            options.target_lufs = target;
        }
        options.eq_target = EqTarget::Genre(GenreTarget::from(genre));
        options
    }
}

/// The chain's options from the config.
pub fn options(config: &MasteringConfig) -> MasteringOptions {
    MasteringOptions {
        target_lufs: config.target_lufs,
        ceiling_dbtp: config.ceiling_dbtp,
        eq_range_db: config.eq_range_db,
        ..MasteringOptions::default()
    }
}

/// Picks the backend the config asks for (measuring both for `auto`).
pub fn choose(config: &MasteringConfig) -> Result<MasteringSettings, MasteringSetupError> {
    let backend = match config.backend {
        MasteringBackendChoice::Cpu => {
            tracing::info!("mastering on the CPU (configured)");
            KernelBackend::Cpu
        }
        MasteringBackendChoice::Gpu => {
            let gpu = GpuKernels::new().map_err(MasteringSetupError::NoGpu)?;
            tracing::info!(adapter = %gpu.adapter().name, backend = %gpu.adapter().backend, "mastering on the GPU (configured)");
            KernelBackend::Gpu
        }
        MasteringBackendChoice::Auto => match GpuKernels::new() {
            Err(error) => {
                tracing::info!(%error, "mastering on the CPU: no usable GPU");
                KernelBackend::Cpu
            }
            Ok(mut gpu) => {
                let adapter = gpu.adapter().clone();
                let gpu_time = calibrate(&mut gpu)?;
                let cpu_time = calibrate(&mut CpuKernels::new())?;
                let backend = if gpu_time < cpu_time {
                    KernelBackend::Gpu
                } else {
                    KernelBackend::Cpu
                };
                tracing::info!(
                    adapter = %adapter.name,
                    gpu_ms = gpu_time.as_secs_f64() * 1000.0,
                    cpu_ms = cpu_time.as_secs_f64() * 1000.0,
                    chosen = backend.name(),
                    "mastering backend calibrated"
                );
                backend
            }
        },
    };
    Ok(MasteringSettings {
        backend,
        options: options(config),
    })
}

/// The best of two runs of both kernels on the same stereo-length work.
fn calibrate(kernels: &mut dyn SpectralKernels) -> Result<Duration, MasteringSetupError> {
    let samples = CALIBRATION_SECONDS * SAMPLE_RATE as usize;
    let signal: Vec<f32> = (0..samples)
        .map(|i| ((i as f32 * 0.031).sin() + (i as f32 * 0.47).sin()) * 0.25)
        .collect();
    // The chain's own FIR length, so the calibration does the chain's work.
    let length = MasteringOptions::default().fir_taps;
    let mut taps = vec![0.0f32; length];
    taps[length / 2] = 1.0;
    let mut outputs = vec![vec![0.0f32; samples]; CHANNELS];
    let backend = kernels.name();
    let fail = |source| MasteringSetupError::Calibration { backend, source };
    let mut best = Duration::MAX;
    for _ in 0..2 {
        let started = Instant::now();
        kernels
            .average_power_spectra(&[&signal, &signal])
            .map_err(fail)?;
        let mut jobs: Vec<ConvolveJob<'_>> = outputs
            .iter_mut()
            .map(|output| ConvolveJob {
                input: &signal,
                taps: &taps,
                output,
            })
            .collect();
        kernels.convolve(&mut jobs).map_err(fail)?;
        best = best.min(started.elapsed());
    }
    Ok(best)
}
