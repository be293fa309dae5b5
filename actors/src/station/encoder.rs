//! The encoder actor: takes PCM frames from the mixer's ring, encodes one Opus
//! packet per rendition and publishes it into that rendition's broadcast ring.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context};
use prometheus::Histogram;
use sonicforge_engine::codec::opus::{MAX_PACKET_LEN, OpusEncoder};
use sonicforge_engine::codec::wire::FLAG_DISCONTINUITY;
use sonicforge_engine::frame::{FRAME_SAMPLES, SILENT_FRAME};
use sonicforge_engine::mix::FALLBACK_EPOCH;
use sonicforge_engine::ring::{PacketWriter, PcmConsumer, PcmFrame};

use super::Station;

/// How often the actor looks for new frames.
const TICK: Duration = Duration::from_millis(5);

/// One rendition: its encoder, its ring's writer and its scratch packet.
#[derive(Debug)]
pub(crate) struct RenditionEncoder {
    encoder: OpusEncoder,
    writer: PacketWriter,
    encode_seconds: Histogram,
    packet: [u8; MAX_PACKET_LEN],
}

impl RenditionEncoder {
    pub(crate) fn new(
        encoder: OpusEncoder,
        writer: PacketWriter,
        encode_seconds: Histogram,
    ) -> Self {
        Self {
            encoder,
            writer,
            encode_seconds,
            packet: [0; MAX_PACKET_LEN],
        }
    }
}

/// Encoder state that outlives the actor: the ring's consumer end, the encoders,
/// the packet writers and the next expected timestamp.
#[derive(Debug)]
pub(crate) struct EncoderParts {
    pcm: PcmConsumer,
    renditions: Vec<RenditionEncoder>,
    expected_pts: Option<u64>,
    frame: Box<PcmFrame>,
}

impl EncoderParts {
    pub(crate) fn new(pcm: PcmConsumer, renditions: Vec<RenditionEncoder>) -> Self {
        Self {
            pcm,
            renditions,
            expected_pts: None,
            frame: Box::new(PcmFrame {
                pts: 0,
                epoch: FALLBACK_EPOCH,
                samples: SILENT_FRAME,
            }),
        }
    }
}

/// Encodes the station's audio for every rendition.
#[derive(Debug)]
pub struct EncoderActor {
    station: Arc<Station>,
    parts: Option<EncoderParts>,
}

impl EncoderActor {
    /// The station this actor belongs to.
    pub(crate) fn station(&self) -> &Station {
        &self.station
    }

    pub fn new(station: Arc<Station>) -> Self {
        Self {
            station,
            parts: None,
        }
    }

    fn tick(&mut self, _ctx: &mut Context<Self>) {
        let station = Arc::clone(&self.station);
        station.heartbeats.encoder.beat();
        super::run_guarded(&station, "encoder", || self.encode_ready_frames());
    }

    fn encode_ready_frames(&mut self) {
        let Some(parts) = &mut self.parts else {
            return;
        };
        if parts.pcm.generation() != self.station.pcm_generation() {
            // A subtree restart re-wired the ring: frames left in the old one are lost,
            // and the next packet's timestamp shows it (discontinuity flag).
            if let Some(consumer) = self.station.pending_pcm_consumer.try_take() {
                parts.pcm = consumer;
            }
        }
        let mut published = false;
        while parts.pcm.pop_into(&mut parts.frame) {
            let frame = &parts.frame;
            let flags = match parts.expected_pts {
                Some(expected) if expected != frame.pts => FLAG_DISCONTINUITY,
                _ => 0,
            };
            parts.expected_pts = Some(frame.pts + FRAME_SAMPLES as u64);
            for rendition in &mut parts.renditions {
                let started = Instant::now();
                match rendition
                    .encoder
                    .encode(&frame.samples, &mut rendition.packet)
                {
                    Ok(len) => {
                        rendition
                            .encode_seconds
                            .observe(started.elapsed().as_secs_f64());
                        if let Err(error) = rendition.writer.publish(
                            frame.pts,
                            flags,
                            frame.epoch,
                            &rendition.packet[..len],
                        ) {
                            tracing::error!(station = %self.station.id(), %error, "packet not published");
                        }
                    }
                    Err(error) => {
                        tracing::error!(station = %self.station.id(), bitrate = rendition.encoder.bitrate(), %error, "encode failed");
                    }
                }
            }
            published = true;
        }
        if published {
            self.station.mark_packet_published();
            for feed in &self.station.feeds {
                feed.notify.notify_waiters();
            }
        }
    }
}

impl Actor for EncoderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.station.actor_running("encoder");
        if self.parts.is_none() {
            self.parts = self.station.encoder_parts.take();
        }
        if let Some(parts) = &mut self.parts
            && let Some(consumer) = self.station.pending_pcm_consumer.take()
        {
            parts.pcm = consumer;
        }
        ctx.run_interval(TICK, Self::tick);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.station.actor_stopped("encoder");
        if let Some(parts) = self.parts.take() {
            self.station.encoder_parts.put(parts);
        }
    }
}
