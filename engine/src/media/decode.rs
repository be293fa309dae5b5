//! Symphonia's demuxers and decoders, driven over a whole file.

use std::fs::File;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::time::Duration;

use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use super::downmix::Downmix;
use super::resample::ToEngineRate;
use super::tags::TagCollector;
use super::{DecodeLimits, DecodedAudio, MediaError};
use crate::frame::{CHANNELS, SAMPLE_RATE};

/// The lowest sample rate converted.
const MIN_RATE: u32 = 4_000;
/// The highest sample rate converted.
const MAX_RATE: u32 = 768_000;
/// Packets that fail to decode are skipped (a damaged frame in a long MP3 is common)
/// while they are at most one in this many; past that the file is malformed.
const BAD_PACKET_RATIO: u64 = 20;
/// Bad packets tolerated however short the file.
const BAD_PACKET_ALLOWANCE: u64 = 2;

/// Decodes an audio file into interleaved stereo `f32` at 48 kHz.
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<DecodedAudio, MediaError> {
    let open_error = |source| MediaError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    let bytes = file.metadata().map_err(open_error)?.len();
    check_size(path, bytes, limits)?;
    decode_source(path, Box::new(file), limits)
}

/// Decodes audio held in memory; `name` (a file name) names it in errors, gives the
/// format hint by its extension and the fallback title by its stem.
pub fn decode_bytes(
    name: &str,
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<DecodedAudio, MediaError> {
    let path = Path::new(name);
    check_size(path, bytes.len() as u64, limits)?;
    decode_source(path, Box::new(Cursor::new(bytes)), limits)
}

fn check_size(path: &Path, bytes: u64, limits: &DecodeLimits) -> Result<(), MediaError> {
    if bytes == 0 {
        return Err(MediaError::Empty {
            path: path.to_path_buf(),
        });
    }
    if bytes > limits.max_input_bytes {
        return Err(MediaError::TooLarge {
            path: path.to_path_buf(),
            bytes,
            max_bytes: limits.max_input_bytes,
        });
    }
    Ok(())
}

fn decode_source<'s>(
    path: &Path,
    source: Box<dyn MediaSource + 's>,
    limits: &DecodeLimits,
) -> Result<DecodedAudio, MediaError> {
    let mut opened = Opened::new(path, source)?;
    let rate = opened.rate;
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(MediaError::SampleRate {
            path: path.to_path_buf(),
            rate,
            min: MIN_RATE,
            max: MAX_RATE,
        });
    }
    let resample_error = |reason| MediaError::Resample {
        path: path.to_path_buf(),
        rate,
        reason,
    };
    let mut converter = ToEngineRate::new(rate).map_err(resample_error)?;
    let mut stereo = Vec::new();
    let summary = opened.decode(limits, |interleaved, downmix| {
        stereo.clear();
        downmix.apply(interleaved, &mut stereo);
        converter.push(&stereo).map_err(resample_error)
    })?;
    let samples = converter.finish().map_err(resample_error)?;
    let frames = samples.len() / CHANNELS;
    Ok(DecodedAudio {
        samples,
        tags: summary.tags,
        source_format: summary.format,
        source_codec: summary.codec,
        source_sample_rate: rate,
        source_channels: summary.channels,
        duration: Duration::from_secs_f64(frames as f64 / f64::from(SAMPLE_RATE)),
    })
}

/// A file's audio at its own rate, folded to stereo, for callers that refuse to
/// convert (the mastering CLI reads only 48 kHz files).
#[derive(Debug)]
pub(crate) struct SourceAudio {
    /// Interleaved stereo at the file's own rate.
    pub samples: Vec<f32>,
}

/// Why [`decode_source_rate`] stopped: the file, or the caller's check.
#[derive(Debug)]
pub(crate) enum SourceRateError<E> {
    Media(MediaError),
    Refused(E),
}

impl<E> From<MediaError> for SourceRateError<E> {
    fn from(error: MediaError) -> Self {
        Self::Media(error)
    }
}

/// Decodes without converting the rate. `check` sees the rate and channel count
/// from the header before any audio is decoded (and again for every packet), and may
/// refuse them.
pub(crate) fn decode_source_rate<E>(
    path: &Path,
    limits: &DecodeLimits,
    mut check: impl FnMut(u32, usize) -> Result<(), E>,
) -> Result<SourceAudio, SourceRateError<E>> {
    let open_error = |source| MediaError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(open_error)?;
    check_size(path, file.metadata().map_err(open_error)?.len(), limits)?;
    let mut opened = Opened::new(path, Box::new(file))?;
    check(opened.rate, opened.channels).map_err(SourceRateError::Refused)?;
    let rate = opened.rate;
    let mut samples = Vec::new();
    opened.decode(limits, |interleaved, downmix| {
        check(rate, downmix.channels()).map_err(SourceRateError::Refused)?;
        downmix.apply(interleaved, &mut samples);
        Ok::<(), SourceRateError<E>>(())
    })?;
    Ok(SourceAudio { samples })
}

/// A probed file: its format reader, the audio track's decoder, and what the header says.
struct Opened<'s> {
    path: PathBuf,
    format: Box<dyn FormatReader + 's>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    rate: u32,
    channels: usize,
    declared_frames: Option<u64>,
}

/// What a whole decode learnt besides the samples.
struct Summary {
    tags: super::MediaTags,
    format: String,
    codec: String,
    channels: usize,
}

impl<'s> Opened<'s> {
    fn new(path: &Path, source: Box<dyn MediaSource + 's>) -> Result<Self, MediaError> {
        let stream = MediaSourceStream::new(source, Default::default());
        let mut hint = Hint::new();
        if let Some(extension) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(extension);
        }
        let format = symphonia::default::get_probe()
            .probe(
                &hint,
                stream,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|error| classify(path, error))?;
        let no_track = || MediaError::NoAudioTrack {
            path: path.to_path_buf(),
        };
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(no_track)?;
        let track_id = track.id;
        let declared_frames = track.num_frames;
        let params: AudioCodecParameters = track
            .codec_params
            .as_ref()
            .and_then(|params| params.audio())
            .ok_or_else(no_track)?
            .clone();
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(|error| classify(path, error))?;
        let rate = params.sample_rate.unwrap_or(0);
        let channels = params.channels.as_ref().map_or(0, |c| c.count());
        Ok(Self {
            path: path.to_path_buf(),
            format,
            decoder,
            track_id,
            rate,
            channels,
            declared_frames,
        })
    }

    /// Decodes every packet of the track, handing each buffer (interleaved, whole
    /// frames) with its downmix to `sink`.
    fn decode<E: From<MediaError>>(
        &mut self,
        limits: &DecodeLimits,
        mut sink: impl FnMut(&[f32], &Downmix) -> Result<(), E>,
    ) -> Result<Summary, E> {
        let path = self.path.clone();
        let max_seconds = limits.max_duration.as_secs();
        let too_long = || MediaError::TooLong {
            path: path.clone(),
            max_seconds,
        };
        let max_frames = (limits.max_duration.as_secs_f64() * f64::from(self.rate.max(1))) as u64;
        if self
            .declared_frames
            .is_some_and(|frames| frames > max_frames)
        {
            return Err(too_long().into());
        }
        let mut tags = TagCollector::default();
        self.take_metadata(&mut tags);

        let mut downmix: Option<Downmix> = None;
        let mut decoded: Vec<f32> = Vec::new();
        let mut frames: u64 = 0;
        let mut packets: u64 = 0;
        let mut bad_packets: u64 = 0;
        let mut last_error = String::new();
        let mut channels = self.channels;
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                // The end of the file inside a packet: the file was cut short.
                Err(SymphoniaError::IoError(error))
                    if error.kind() == io::ErrorKind::UnexpectedEof =>
                {
                    return Err(E::from(MediaError::Malformed {
                        path,
                        reason: format!(
                            "the file ends part way through its audio (cut short?) after {} s",
                            frames / u64::from(self.rate.max(1))
                        ),
                    }));
                }
                Err(SymphoniaError::ResetRequired) => {
                    return Err(E::from(MediaError::Unsupported {
                        path,
                        reason: "the stream changes its parameters part way (chained streams)"
                            .to_string(),
                    }));
                }
                Err(error) => return Err(classify(&path, error).into()),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            packets += 1;
            let buffer = match self.decoder.decode(&packet) {
                Ok(buffer) => buffer,
                Err(SymphoniaError::DecodeError(reason)) => {
                    bad_packets += 1;
                    last_error = reason.to_string();
                    if bad_packets > BAD_PACKET_ALLOWANCE + packets / BAD_PACKET_RATIO {
                        return Err(E::from(MediaError::Malformed {
                            path,
                            reason: format!(
                                "{bad_packets} of {packets} packets do not decode ({last_error})"
                            ),
                        }));
                    }
                    continue;
                }
                Err(error) => return Err(classify(&path, error).into()),
            };
            if buffer.frames() == 0 {
                continue;
            }
            let spec = buffer.spec();
            if spec.rate() != self.rate {
                return Err(E::from(MediaError::Unsupported {
                    path,
                    reason: format!(
                        "the sample rate changes from {} Hz to {} Hz part way",
                        self.rate,
                        spec.rate()
                    ),
                }));
            }
            let layout = spec.channels();
            if layout.count() == 0 {
                return Err(E::from(MediaError::Malformed {
                    path,
                    reason: "a packet decodes to zero channels".to_string(),
                }));
            }
            if downmix
                .as_ref()
                .is_none_or(|d| d.channels() != layout.count())
            {
                downmix = Some(Downmix::new(layout));
                channels = layout.count();
            }
            frames += buffer.frames() as u64;
            if frames > max_frames {
                return Err(too_long().into());
            }
            buffer.copy_to_vec_interleaved(&mut decoded);
            if let Some(index) = decoded.iter().position(|x| !x.is_finite()) {
                return Err(E::from(MediaError::Malformed {
                    path,
                    reason: format!(
                        "sample {} is not a finite number",
                        frames as usize * channels - decoded.len() + index
                    ),
                }));
            }
            if let Some(downmix) = &downmix {
                sink(&decoded, downmix)?;
            }
        }
        if frames == 0 {
            return Err(E::from(if bad_packets > 0 {
                MediaError::Malformed {
                    path,
                    reason: format!("no packet decodes ({last_error})"),
                }
            } else {
                MediaError::NoSamples { path }
            }));
        }
        if let Some(declared) = self.declared_frames {
            // Lossy codecs may declare their encoder's padding too: allow 50 ms.
            let slack = u64::from(self.rate) / 20;
            if frames + slack < declared {
                let rate = f64::from(self.rate.max(1));
                return Err(E::from(MediaError::Malformed {
                    path,
                    reason: format!(
                        "the file ends after {:.1} s of the {:.1} s its header declares (cut short?)",
                        frames as f64 / rate,
                        declared as f64 / rate
                    ),
                }));
            }
        }
        self.take_metadata(&mut tags);
        Ok(Summary {
            tags: tags.finish(&self.path),
            format: self.format.format_info().short_name.to_string(),
            codec: self.decoder.codec_info().short_name.to_string(),
            channels,
        })
    }

    fn take_metadata(&mut self, tags: &mut TagCollector) {
        let mut metadata = self.format.metadata();
        while let Some(revision) = metadata.pop() {
            tags.add_revision(&revision, self.track_id);
        }
        if let Some(revision) = metadata.current() {
            tags.add_revision(revision, self.track_id);
        }
    }
}

/// Sorts Symphonia's errors into ours.
fn classify(path: &Path, error: SymphoniaError) -> MediaError {
    let path = path.to_path_buf();
    match error {
        SymphoniaError::Unsupported(what) => MediaError::Unsupported {
            path,
            reason: what.to_string(),
        },
        SymphoniaError::IoError(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            MediaError::Malformed {
                path,
                reason: "the file ends too early".to_string(),
            }
        }
        SymphoniaError::IoError(source) if source.kind() != io::ErrorKind::InvalidData => {
            MediaError::Open { path, source }
        }
        other => MediaError::Malformed {
            path,
            reason: other.to_string(),
        },
    }
}
