//! `sonicforge master`, `sonicforge mastering-corpus` and `sonicforge spectral-error`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use sonicforge_actors::config::{MasteringBackendChoice, MasteringConfig};
use sonicforge_actors::mastering::{self, KernelBackend};
use sonicforge_engine::frame::{CHANNELS, SAMPLE_RATE};
use sonicforge_engine::master::audio_file::{WavFormat, read_audio_file, write_wav};
use sonicforge_engine::master::corpus::CorpusTrack;
use sonicforge_engine::master::spectral_error::spectral_error_db;
use sonicforge_engine::master::{EqTarget, Mastered, Mastering};

/// Arguments of `sonicforge master`.
#[derive(Debug, clap::Args)]
pub struct MasterArgs {
    /// Input WAV or FLAC file (with --batch: a directory of them).
    input: PathBuf,
    /// Output WAV file (with --batch: a directory, created if missing).
    output: PathBuf,
    /// Master every WAV and FLAC file of INPUT into OUTPUT in one batch.
    #[arg(long)]
    batch: bool,
    /// A reference track whose spectrum the EQ aims for (default: the neutral curve).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Integrated loudness of the output in LUFS.
    #[arg(long, default_value_t = -14.0, allow_hyphen_values = true)]
    target_lufs: f64,
    /// Highest true peak of the output in dBTP.
    #[arg(long, default_value_t = -1.0, allow_hyphen_values = true)]
    ceiling: f64,
    /// Width of the spectral EQ's correction in dB, from deepest cut to largest boost (0..=60).
    #[arg(long, default_value_t = sonicforge_engine::master::eq::DEFAULT_EQ_RANGE_DB)]
    eq_range_db: f64,
    /// Where the spectral stages run.
    #[arg(long, value_enum, default_value = "auto")]
    backend: MasteringBackendChoice,
    /// Write what mastering did as JSON to this file.
    #[arg(long)]
    stats_json: Option<PathBuf>,
}

pub fn master(args: &MasterArgs) -> anyhow::Result<()> {
    let config = MasteringConfig {
        backend: args.backend,
        target_lufs: args.target_lufs,
        ceiling_dbtp: args.ceiling,
        eq_range_db: args.eq_range_db,
    };
    let settings = mastering::choose(&config)?;
    let adapter = match settings.backend {
        KernelBackend::Gpu => Some(
            sonicforge_engine::master::gpu::find_adapter()
                .context("cannot describe the GPU adapter")?
                .name,
        ),
        KernelBackend::Cpu => None,
    };
    let kernels = settings
        .backend
        .kernels()
        .with_context(|| format!("cannot set up the {} kernels", settings.backend.name()))?;
    let mut chain = Mastering::new(kernels, settings.options.clone());
    if let Some(reference) = &args.reference {
        let samples = read_audio_file(reference)?;
        let spectrum = chain
            .analyse_reference(&samples)
            .with_context(|| format!("cannot analyse the reference {}", reference.display()))?;
        chain.set_eq_target(EqTarget::Reference(spectrum));
    }

    let (inputs, outputs) = if args.batch {
        batch_files(&args.input, &args.output)?
    } else {
        (vec![args.input.clone()], vec![args.output.clone()])
    };
    let tracks = inputs
        .iter()
        .map(read_audio_file)
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let views: Vec<&[f32]> = tracks.iter().map(Vec::as_slice).collect();
    let mastered = chain.master_batch(&views)?;
    let wall = started.elapsed();

    let mut stats = Vec::new();
    for ((input, output), track) in inputs.iter().zip(&outputs).zip(&mastered) {
        write_wav(output, &track.samples, WavFormat::Float32)?;
        let seconds = (track.samples.len() / CHANNELS) as f64 / f64::from(SAMPLE_RATE);
        println!(
            "{} -> {}: {:.1} -> {:.1} LUFS, true peak {:.2} dBTP, EQ {:+.1}..{:+.1} dB, {:.2} s ({:.0}x real time, {})",
            input.display(),
            output.display(),
            track.stats.input_lufs,
            track.stats.output_lufs,
            track.stats.true_peak_dbtp,
            track.stats.eq_range_db.min_db,
            track.stats.eq_range_db.max_db,
            track.stats.seconds,
            seconds / track.stats.seconds.max(1e-9),
            track.stats.backend,
        );
        stats.push(stats_json(input, output, track, adapter.as_deref()));
    }
    if args.batch {
        println!(
            "{} files in {:.2} s, one batch on the {} backend",
            mastered.len(),
            wall.as_secs_f64(),
            settings.backend.name()
        );
    }
    if let Some(path) = &args.stats_json {
        let value = if args.batch {
            serde_json::Value::Array(stats)
        } else {
            stats.pop().unwrap_or_default()
        };
        std::fs::write(path, serde_json::to_string_pretty(&value)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn stats_json(
    input: &Path,
    output: &Path,
    track: &Mastered,
    adapter: Option<&str>,
) -> serde_json::Value {
    let stats = &track.stats;
    let finite = |x: f64| x.is_finite().then_some(x);
    json!({
        "input": input.display().to_string(),
        "output": output.display().to_string(),
        "input_lufs": finite(stats.input_lufs),
        "output_lufs": finite(stats.output_lufs),
        "true_peak_dbtp": finite(stats.true_peak_dbtp),
        "eq_range_db": [stats.eq_range_db.min_db, stats.eq_range_db.max_db],
        "loudness_gain_db": finite(stats.loudness_gain_db),
        "limiter_reduction_db": finite(stats.limiter_reduction_db),
        "passes": stats.passes,
        "seconds": stats.seconds,
        "backend": stats.backend,
        "adapter": adapter,
    })
}

/// The WAV and FLAC files of `input_dir` (sorted) and their outputs in `output_dir`.
fn batch_files(
    input_dir: &Path,
    output_dir: &Path,
) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(input_dir)
        .with_context(|| format!("cannot read the directory {}", input_dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    e.eq_ignore_ascii_case("wav") || e.eq_ignore_ascii_case("flac")
                })
        })
        .collect();
    inputs.sort();
    if inputs.is_empty() {
        bail!("{} holds no .wav or .flac file", input_dir.display());
    }
    std::fs::create_dir_all(output_dir)
        .with_context(|| format!("cannot create {}", output_dir.display()))?;
    let outputs = inputs
        .iter()
        .map(|input| {
            let stem = input.file_stem().unwrap_or_default();
            output_dir.join(stem).with_extension("wav")
        })
        .collect();
    Ok((inputs, outputs))
}

pub fn write_corpus(dir: &Path, seconds: u64) -> anyhow::Result<()> {
    if !(1..=600).contains(&seconds) {
        bail!("--seconds {seconds} is outside 1..=600");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for track in CorpusTrack::ALL {
        let samples = track
            .render(Duration::from_secs(seconds))
            .with_context(|| format!("cannot render the {} corpus track", track.name()))?;
        let path = dir.join(format!("{}.wav", track.name()));
        write_wav(&path, &samples, WavFormat::Float32)?;
        println!("{}", path.display());
    }
    Ok(())
}

pub fn spectral_error(a: &Path, b: &Path) -> anyhow::Result<()> {
    let a = read_audio_file(a)?;
    let b = read_audio_file(b)?;
    println!("{:.3}", spectral_error_db(&a, &b));
    Ok(())
}
