//! TEMPORARY: writes WAVs for listening checks.
use super::*;
use std::io::Write;

fn wav(path: &str, samples: &[f32]) {
    let mut f = std::fs::File::create(path).unwrap();
    let data = (samples.len() * 2) as u32;
    f.write_all(b"RIFF").unwrap();
    f.write_all(&(36 + data).to_le_bytes()).unwrap();
    f.write_all(b"WAVEfmt ").unwrap();
    f.write_all(&16u32.to_le_bytes()).unwrap();
    f.write_all(&1u16.to_le_bytes()).unwrap();
    f.write_all(&2u16.to_le_bytes()).unwrap();
    f.write_all(&48000u32.to_le_bytes()).unwrap();
    f.write_all(&(48000u32 * 4).to_le_bytes()).unwrap();
    f.write_all(&4u16.to_le_bytes()).unwrap();
    f.write_all(&16u16.to_le_bytes()).unwrap();
    f.write_all(b"data").unwrap();
    f.write_all(&data.to_le_bytes()).unwrap();
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    f.write_all(&bytes).unwrap();
}

#[test]
#[ignore]
fn write_listening_wavs() {
    let seconds: u64 = std::env::var("LISTEN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    for prompt in ["lofi chill 80 bpm A minor", "dark techno 128 bpm", "ambient calm 70 bpm C major", "house 124 bpm", "synthwave 100 bpm"] {
        let started = std::time::Instant::now();
        let track = ProceduralGenerator::default()
            .render(&TrackRequest { prompt: prompt.into(), seed: 42, length: Some(Duration::from_secs(seconds)) })
            .unwrap();
        let took = started.elapsed().as_secs_f64();
        let name = track.style.genre.name();
        println!("{prompt}: {} '{}' {:?} rtf {:.0}x", track.id, track.title, track.style, seconds as f64 / took);
        wav(&format!("/tmp/listen_{name}.wav"), &track.samples);
    }
}

#[test]
#[ignore]
fn stem_levels() {
    use super::arrange::{Part, SectionKind};
    use super::instruments::Drum;
    let groups: [(&str, fn(Part) -> bool); 9] = [
        ("kick", |p| p == Part::Drum(Drum::Kick)),
        ("snare", |p| matches!(p, Part::Drum(Drum::Snare | Drum::Clap))),
        ("hats", |p| matches!(p, Part::Drum(Drum::ClosedHat | Drum::OpenHat | Drum::Shaker | Drum::Rim | Drum::Crash))),
        ("bass", |p| p == Part::Bass),
        ("chords", |p| p == Part::Chords),
        ("pad", |p| p == Part::Pad),
        ("lead", |p| p == Part::Lead),
        ("arp", |p| p == Part::Arp),
        ("all", |_| true),
    ];
    for prompt in ["lofi chill 80 bpm A minor", "dark techno 128 bpm", "ambient calm 70 bpm C major", "house 124 bpm", "synthwave 100 bpm"] {
        let style = style_for(prompt, 42).unwrap();
        let frames = 120 * 48000;
        let full = arrange::compose(&style, 42, frames);
        let chorus = full.sections.iter().find(|s| s.kind == SectionKind::Chorus).unwrap();
        let from = (chorus.start_bar as f64 * full.bar_frames) as usize;
        let to = ((chorus.start_bar + chorus.bars) as f64 * full.bar_frames) as usize;
        let mut line = format!("{:10}", style.genre.name());
        for (name, keep) in groups {
            let mut score = full.clone();
            score.notes.retain(|n| keep(n.part));
            let (out, _) = render::mix(&style, &score, 42);
            let part = &out[from * 2..to.min(frames) * 2];
            let mut meter = dsp::LoudnessMeter::new(part.len() / 2);
            for f in part.chunks_exact(2) { meter.push(f[0], f[1]); }
            let l = meter.integrated().unwrap_or(-99.0);
            line += &format!(" {name} {l:6.1}");
        }
        println!("{line}");
    }
}

#[test]
#[ignore]
fn kit_levels() {
    use super::instruments::{Drum, Kit};
    let drums = [Drum::Kick, Drum::Snare, Drum::Clap, Drum::ClosedHat, Drum::OpenHat, Drum::Shaker, Drum::Rim, Drum::Crash, Drum::MidTom];
    for genre in Genre::ALL {
        let kit = Kit::new(genre, 1);
        let mut line = format!("{:10}", genre.name());
        for drum in drums {
            let s = kit.sample(drum);
            let n = s.len().min(7200);
            let rms = (s[..n].iter().map(|x| x * x).sum::<f32>() / n as f32).sqrt();
            line += &format!(" {:?} {:5.1}", drum, 20.0 * rms.log10());
        }
        println!("{line}");
    }
}

#[test]
#[ignore]
fn stem_costs() {
    use super::arrange::Part;
    let groups: [(&str, fn(Part) -> bool); 8] = [
        ("none", |_| false),
        ("drums", |p| matches!(p, Part::Drum(_))),
        ("bass", |p| p == Part::Bass),
        ("chords", |p| p == Part::Chords),
        ("pad", |p| p == Part::Pad),
        ("lead", |p| p == Part::Lead),
        ("arp", |p| p == Part::Arp),
        ("all", |_| true),
    ];
    for prompt in ["lofi chill 80 bpm A minor", "ambient calm 70 bpm C major", "house 124 bpm"] {
        let style = style_for(prompt, 42).unwrap();
        let frames = 60 * 48000;
        let full = arrange::compose(&style, 42, frames);
        let mut line = format!("{:10}", style.genre.name());
        for (name, keep) in groups {
            let mut score = full.clone();
            score.notes.retain(|n| keep(n.part));
            let t = std::time::Instant::now();
            let _ = render::mix(&style, &score, 42);
            line += &format!(" {name} {:4.0}ms", t.elapsed().as_secs_f64() * 1000.0);
        }
        println!("{line}");
    }
}

#[test]
#[ignore]
fn component_costs() {
    use super::dsp::*;
    let n = 2_880_000usize;
    let mut acc = 0.0f32;
    let t = std::time::Instant::now();
    let mut reverb = Reverb::new(ReverbSettings { decay: 7.0, size: 1.5, damping_hz: 4500.0, predelay: 0.03 });
    for i in 0..n { let x = (i % 100) as f32 * 0.001; let (l, r) = reverb.process(x, -x); acc += l + r; }
    println!("reverb {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = std::time::Instant::now();
    let mut meter = LoudnessMeter::new(n);
    for i in 0..n { let x = (i % 100) as f32 * 0.001; meter.push(x, -x); }
    acc += meter.integrated().unwrap_or(0.0);
    println!("meter {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = std::time::Instant::now();
    let mut delay = PingPong::new(0.3, 0.4);
    for i in 0..n { let x = (i % 100) as f32 * 0.001; let (l, r) = delay.process(x, -x); acc += l + r; }
    println!("delay {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = std::time::Instant::now();
    let mut osc = Oscillator::new(440.0, 0.0);
    for _ in 0..n { acc += osc.sine(); }
    println!("sine {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = std::time::Instant::now();
    let mut osc = Oscillator::new(440.0, 0.0);
    for _ in 0..n { acc += osc.saw(); }
    println!("saw {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = std::time::Instant::now();
    let mut svf = Svf::new(1000.0, 0.7);
    for i in 0..n { acc += svf.low((i % 100) as f32 * 0.001); }
    println!("svf {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = std::time::Instant::now();
    let mut env = Envelope::new(Adsr { attack: 0.01, decay: 1.0, sustain: 0.5, release: 1.0 }, n);
    for _ in 0..n { acc += env.next(); }
    println!("envelope {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    println!("{acc}");
}

#[test]
#[ignore]
fn render_each_genre_once() {
    let only = std::env::var("GENRE").unwrap_or_default();
    for prompt in ["lofi chill 80 bpm A minor", "dark techno 128 bpm", "ambient calm 70 bpm C major", "house 124 bpm", "synthwave 100 bpm"] {
        if !prompt.contains(only.as_str()) { continue; }
        let track = ProceduralGenerator::default()
            .render(&TrackRequest { prompt: prompt.into(), seed: 42, length: Some(Duration::from_secs(60)) })
            .unwrap();
        assert!(track.frames() > 0);
    }
}
