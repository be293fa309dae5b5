//! Cost per 20 ms frame of the stages after the mixer: the PCM ring, Opus encoding
//! per rendition, Ogg muxing per packet, and the packet ring's publish and read.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sonicforge_engine::codec::ogg::OggOpusMuxer;
use sonicforge_engine::codec::opus::{MAX_PACKET_LEN, OpusEncoder};
use sonicforge_engine::frame::{FRAME_LEN, FRAME_SAMPLES, Frame, SAMPLE_RATE};
use sonicforge_engine::ring::{PacketBuf, PacketRing, PcmFrame, ReadOutcome, pcm_ring};

/// Frames of a musical test signal: a chord with a moving bass and some noise.
fn music_frames(count: usize) -> Vec<Frame> {
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    (0..count)
        .map(|index| {
            let mut frame = [0f32; FRAME_LEN];
            for (i, pair) in frame.chunks_exact_mut(2).enumerate() {
                let t = (index * FRAME_SAMPLES + i) as f32 / SAMPLE_RATE as f32;
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                let hiss = (noise as f32 / u64::MAX as f32 - 0.5) * 0.02;
                let bass = (t * 55.0 * (1.0 + (t * 0.5).floor() % 3.0) * std::f32::consts::TAU)
                    .sin()
                    * 0.3;
                let chord: f32 = [261.6f32, 329.6, 392.0]
                    .iter()
                    .map(|f| (t * f * std::f32::consts::TAU).sin() * 0.1)
                    .sum();
                pair[0] = bass + chord + hiss;
                pair[1] = bass + chord * 0.8 - hiss;
            }
            frame
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let frames = music_frames(250);
    let mut group = c.benchmark_group("encode_frame");
    for kbps in [64u32, 128] {
        group.bench_function(format!("opus_{kbps}kbps"), |b| {
            let mut encoder = OpusEncoder::new(kbps * 1000).unwrap_or_else(|e| panic!("{e}"));
            let mut packet = [0u8; MAX_PACKET_LEN];
            let mut index = 0;
            b.iter(|| {
                index = (index + 1) % frames.len();
                black_box(encoder.encode(&frames[index], &mut packet).unwrap_or(0))
            });
        });
    }
    group.finish();
}

fn ogg_mux(c: &mut Criterion) {
    // About the size of a 128 kb/s packet.
    let packet = [0x5au8; 330];
    let mut group = c.benchmark_group("ogg_mux_packet");
    for page_ms in [20u32, 100] {
        group.bench_function(format!("{page_ms}ms_pages"), |b| {
            let mut muxer = OggOpusMuxer::new(1, 312, page_ms);
            let mut out = Vec::with_capacity(64 * 1024);
            b.iter(|| {
                if muxer.push_packet(black_box(&packet), &mut out) {
                    out.clear();
                }
            });
        });
    }
    group.finish();
}

fn pcm_ring_round_trip(c: &mut Criterion) {
    let frames = music_frames(1);
    c.bench_function("pcm_ring_push_pop_frame", |b| {
        let (mut producer, mut consumer) = pcm_ring(200, 1);
        let mut frame = PcmFrame {
            pts: 0,
            epoch: 1,
            samples: frames[0],
        };
        let mut out = PcmFrame::default();
        b.iter(|| {
            frame.pts += FRAME_SAMPLES as u64;
            let pushed = producer.push(black_box(&frame)).is_ok();
            black_box(pushed && consumer.pop_into(&mut out));
        });
    });
}

fn packet_ring(c: &mut Criterion) {
    let payload = vec![0x5au8; 330];
    c.bench_function("packet_ring_publish", |b| {
        let (mut writer, _ring) = PacketRing::with_capacity(200);
        let mut pts = 0u64;
        b.iter(|| {
            pts += 960;
            black_box(writer.publish(pts, 0, 1, black_box(&payload)).ok())
        });
    });
    c.bench_function("packet_ring_read", |b| {
        let (mut writer, ring) = PacketRing::with_capacity(200);
        for seq in 0..200u64 {
            writer.publish(seq * 960, 0, 1, &payload).ok();
        }
        let mut buf = PacketBuf::default();
        let mut seq = 0;
        b.iter(|| {
            seq = 1 + (seq + 1) % 198;
            match ring.read(black_box(seq), &mut buf) {
                ReadOutcome::Ready(meta) => black_box(meta.len),
                _ => 0,
            }
        });
    });
}

criterion_group!(benches, pcm_ring_round_trip, encode, ogg_mux, packet_ring);
criterion_main!(benches);
