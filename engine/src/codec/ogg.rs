//! Ogg/Opus muxing (RFC 3533 pages, RFC 7845 Opus mapping) for the HTTP stream, and
//! a page reader for tests and tools.
//!
//! 20 ms packets are grouped into pages of a chosen duration. A page's granule
//! position counts every sample of the packets completed on it and before it (the
//! pre-skip included, as RFC 7845 requires), so a player's position is
//! `granule - pre_skip`.

use crate::frame::{FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE};

const CAPTURE: &[u8; 4] = b"OggS";
const HEADER_LEN: usize = 27;
const MAX_SEGMENTS: usize = 255;
const FLAG_CONTINUED: u8 = 0x01;
const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;

/// CRC-32 as Ogg defines it: polynomial 0x04c11db7, no reflection, initial value 0.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn ogg_crc(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |crc, byte| {
        (crc << 8) ^ CRC_TABLE[(((crc >> 24) as u8) ^ byte) as usize]
    })
}

/// Writes one logical Ogg/Opus stream, page by page.
#[derive(Debug)]
pub struct OggOpusMuxer {
    serial: u32,
    pre_skip: u16,
    packets_per_page: usize,
    page_sequence: u32,
    granule: u64,
    lacing: Vec<u8>,
    data: Vec<u8>,
    packets_in_page: usize,
}

impl OggOpusMuxer {
    /// A stream with serial number `serial`, whose pages hold `page_duration_ms`
    /// of 20 ms packets (clamped to 20..=1000 ms).
    pub fn new(serial: u32, pre_skip: u16, page_duration_ms: u32) -> Self {
        let page_duration_ms = page_duration_ms.clamp(FRAME_MS, 1000);
        Self {
            serial,
            pre_skip,
            packets_per_page: (page_duration_ms / FRAME_MS).max(1) as usize,
            page_sequence: 0,
            granule: 0,
            lacing: Vec::with_capacity(MAX_SEGMENTS),
            data: Vec::with_capacity(8 * 1024),
            packets_in_page: 0,
        }
    }

    /// Writes the identification header (OpusHead, first page) and the comment
    /// header (OpusTags with `vendor` and `comments` such as `TITLE=...`).
    pub fn write_headers(&mut self, vendor: &str, out: &mut Vec<u8>) {
        self.write_headers_with_comments(vendor, &[], out);
    }

    /// [`Self::write_headers`] with user comments (`KEY=value`).
    pub fn write_headers_with_comments(&mut self, vendor: &str, comments: &[&str], out: &mut Vec<u8>) {
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(2); // channels
        head.extend_from_slice(&self.pre_skip.to_le_bytes());
        head.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family
        self.write_page(FLAG_BOS, 0, &[&head], out);

        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&(comments.len() as u32).to_le_bytes());
        for comment in comments {
            tags.extend_from_slice(&(comment.len() as u32).to_le_bytes());
            tags.extend_from_slice(comment.as_bytes());
        }
        self.write_page(0, 0, &[&tags], out);
    }

    /// Adds a 20 ms packet; appends a page to `out` when the page is full and
    /// returns whether it did.
    pub fn push_packet(&mut self, packet: &[u8], out: &mut Vec<u8>) -> bool {
        let mut wrote = false;
        if self.lacing.len() + packet.len() / 255 + 1 > MAX_SEGMENTS {
            self.flush(out);
            wrote = true;
        }
        let mut remaining = packet.len();
        while remaining >= 255 {
            self.lacing.push(255);
            remaining -= 255;
        }
        self.lacing.push(remaining as u8);
        self.data.extend_from_slice(packet);
        self.granule += FRAME_SAMPLES as u64;
        self.packets_in_page += 1;
        if self.packets_in_page >= self.packets_per_page {
            self.flush(out);
            wrote = true;
        }
        wrote
    }

    /// Writes the pending packets, if any, as a page.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        self.flush_with(0, out);
    }

    /// Writes the pending packets as the stream's last page.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.packets_in_page == 0 {
            self.write_page(FLAG_EOS, self.granule, &[], out);
        } else {
            self.flush_with(FLAG_EOS, out);
        }
    }

    fn flush_with(&mut self, flags: u8, out: &mut Vec<u8>) {
        if self.packets_in_page == 0 {
            return;
        }
        let start = out.len();
        out.extend_from_slice(CAPTURE);
        out.push(0);
        out.push(flags);
        out.extend_from_slice(&self.granule.to_le_bytes());
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&self.page_sequence.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(self.lacing.len() as u8);
        out.extend_from_slice(&self.lacing);
        out.extend_from_slice(&self.data);
        self.seal(start, out);
        self.lacing.clear();
        self.data.clear();
        self.packets_in_page = 0;
    }

    /// Writes a page of whole packets that are not audio (headers, an empty EOS page).
    fn write_page(&mut self, flags: u8, granule: u64, packets: &[&[u8]], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(CAPTURE);
        out.push(0);
        out.push(flags);
        out.extend_from_slice(&granule.to_le_bytes());
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&self.page_sequence.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let mut lacing = Vec::new();
        for packet in packets {
            let mut remaining = packet.len();
            while remaining >= 255 {
                lacing.push(255u8);
                remaining -= 255;
            }
            lacing.push(remaining as u8);
        }
        out.push(lacing.len() as u8);
        out.extend_from_slice(&lacing);
        for packet in packets {
            out.extend_from_slice(packet);
        }
        self.seal(start, out);
    }

    fn seal(&mut self, start: usize, out: &mut [u8]) {
        let crc = ogg_crc(&out[start..]);
        out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
        self.page_sequence = self.page_sequence.wrapping_add(1);
    }
}

/// A page as read back by [`parse_pages`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggPage {
    pub flags: u8,
    pub granule: u64,
    pub serial: u32,
    pub sequence: u32,
    /// Packets completed on this page (a packet continued from an earlier page is joined).
    pub packets: Vec<Vec<u8>>,
}

impl OggPage {
    pub fn is_bos(&self) -> bool {
        self.flags & FLAG_BOS != 0
    }

    pub fn is_eos(&self) -> bool {
        self.flags & FLAG_EOS != 0
    }
}

/// Why bytes are not a valid Ogg stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OggError {
    #[error("no capture pattern at byte {offset}")]
    Capture { offset: usize },
    #[error("page at byte {offset} has version {version}")]
    Version { offset: usize, version: u8 },
    #[error("page at byte {offset} is cut short")]
    Truncated { offset: usize },
    #[error("page at byte {offset} has CRC {found:#010x}, expected {expected:#010x}")]
    Crc { offset: usize, found: u32, expected: u32 },
}

/// Reads every page of `bytes`, checking capture patterns, versions and CRCs.
pub fn parse_pages(bytes: &[u8]) -> Result<Vec<OggPage>, OggError> {
    let mut pages = Vec::new();
    let mut offset = 0;
    let mut partial: Vec<u8> = Vec::new();
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < HEADER_LEN {
            return Err(OggError::Truncated { offset });
        }
        if &rest[..4] != CAPTURE {
            return Err(OggError::Capture { offset });
        }
        if rest[4] != 0 {
            return Err(OggError::Version { offset, version: rest[4] });
        }
        let segments = rest[26] as usize;
        if rest.len() < HEADER_LEN + segments {
            return Err(OggError::Truncated { offset });
        }
        let lacing = &rest[HEADER_LEN..HEADER_LEN + segments];
        let body_len: usize = lacing.iter().map(|l| *l as usize).sum();
        let page_len = HEADER_LEN + segments + body_len;
        if rest.len() < page_len {
            return Err(OggError::Truncated { offset });
        }
        let mut page_bytes = rest[..page_len].to_vec();
        let found = u32::from_le_bytes([rest[22], rest[23], rest[24], rest[25]]);
        page_bytes[22..26].fill(0);
        let expected = ogg_crc(&page_bytes);
        if found != expected {
            return Err(OggError::Crc { offset, found, expected });
        }
        let field = |range: std::ops::Range<usize>| {
            let mut value = [0u8; 8];
            value[..range.len()].copy_from_slice(&rest[range]);
            u64::from_le_bytes(value)
        };
        let flags = rest[5];
        if flags & FLAG_CONTINUED == 0 {
            partial.clear();
        }
        let mut packets = Vec::new();
        let mut body = &rest[HEADER_LEN + segments..page_len];
        for value in lacing {
            let (chunk, tail) = body.split_at(*value as usize);
            partial.extend_from_slice(chunk);
            body = tail;
            if *value < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        pages.push(OggPage {
            flags,
            granule: field(6..14),
            serial: field(14..18) as u32,
            sequence: field(18..22) as u32,
            packets,
        });
        offset += page_len;
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(index: usize) -> Vec<u8> {
        // Sizes straddle the 255-byte lacing boundary.
        (0..(100 + index * 37 % 600)).map(|i| (i + index) as u8).collect()
    }

    #[test]
    fn headers_and_pages_read_back_with_valid_crcs_and_granules() {
        let mut muxer = OggOpusMuxer::new(0xabcd, 312, 100);
        let mut out = Vec::new();
        muxer.write_headers_with_comments("SonicForge test", &["TITLE=Test"], &mut out);
        let sent: Vec<Vec<u8>> = (0..100).map(packet).collect();
        let mut pages_written = 0;
        for p in &sent {
            if muxer.push_packet(p, &mut out) {
                pages_written += 1;
            }
        }
        muxer.finish(&mut out);
        assert_eq!(pages_written, 20);

        let pages = parse_pages(&out).unwrap();
        assert!(pages[0].is_bos());
        assert!(pages.last().unwrap().is_eos());
        let head = &pages[0].packets[0];
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!(head[8], 1);
        assert_eq!(head[9], 2);
        assert_eq!(u16::from_le_bytes([head[10], head[11]]), 312);
        assert_eq!(u32::from_le_bytes([head[12], head[13], head[14], head[15]]), 48_000);
        assert_eq!(&pages[1].packets[0][..8], b"OpusTags");
        for (index, page) in pages.iter().enumerate() {
            assert_eq!(page.serial, 0xabcd);
            assert_eq!(page.sequence, index as u32);
        }
        let audio = &pages[2..];
        let received: Vec<Vec<u8>> = audio.iter().flat_map(|p| p.packets.clone()).collect();
        assert_eq!(received, sent);
        let mut samples = 0;
        for page in audio.iter().filter(|p| !p.packets.is_empty()) {
            samples += page.packets.len() as u64 * 960;
            assert_eq!(page.granule, samples);
        }
    }

    #[test]
    fn page_duration_sets_packets_per_page() {
        for (ms, per_page) in [(20, 1), (100, 5), (200, 10)] {
            let mut muxer = OggOpusMuxer::new(1, 312, ms);
            let mut out = Vec::new();
            for _ in 0..per_page * 3 {
                muxer.push_packet(&[1; 300], &mut out);
            }
            let pages = parse_pages(&out).unwrap();
            assert_eq!(pages.len(), 3, "{ms} ms pages");
            assert!(pages.iter().all(|p| p.packets.len() == per_page));
        }
    }

    #[test]
    fn long_pages_split_before_the_segment_limit() {
        let mut muxer = OggOpusMuxer::new(1, 312, 1000);
        let mut out = Vec::new();
        for _ in 0..50 {
            muxer.push_packet(&[9; 1275], &mut out);
        }
        muxer.flush(&mut out);
        let pages = parse_pages(&out).unwrap();
        assert!(pages.len() > 1);
        assert_eq!(pages.iter().map(|p| p.packets.len()).sum::<usize>(), 50);
        assert_eq!(pages.last().unwrap().granule, 50 * 960);
    }

    #[test]
    fn corrupted_page_is_detected() {
        let mut muxer = OggOpusMuxer::new(1, 312, 20);
        let mut out = Vec::new();
        muxer.push_packet(&[5; 100], &mut out);
        let last = out.len() - 1;
        out[last] ^= 0xff;
        assert!(matches!(parse_pages(&out), Err(OggError::Crc { offset: 0, .. })));
        assert_eq!(parse_pages(b"OggX"), Err(OggError::Truncated { offset: 0 }));
    }

    #[test]
    fn ffmpeg_decodes_the_muxed_stream() {
        let Some(ffmpeg) = find_ffmpeg() else {
            return;
        };
        let mut encoder = crate::codec::opus::OpusEncoder::new(96_000).unwrap();
        let mut muxer = OggOpusMuxer::new(7, encoder.pre_skip(), 100);
        let mut out = Vec::new();
        muxer.write_headers("SonicForge test", &mut out);
        let mut frame = [0f32; crate::frame::FRAME_LEN];
        let mut packet = [0u8; crate::codec::opus::MAX_PACKET_LEN];
        for index in 0..150 {
            for (i, pair) in frame.chunks_exact_mut(2).enumerate() {
                let t = (index * FRAME_SAMPLES + i) as f32 / 48_000.0;
                let value = (t * 440.0 * std::f32::consts::TAU).sin() * 0.3;
                pair[0] = value;
                pair[1] = value;
            }
            let len = encoder.encode(&frame, &mut packet).unwrap();
            muxer.push_packet(&packet[..len], &mut out);
        }
        muxer.finish(&mut out);
        let path = std::env::temp_dir().join(format!("sonicforge-ogg-{}.opus", std::process::id()));
        std::fs::write(&path, &out).unwrap();
        let output = std::process::Command::new(ffmpeg)
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && stderr.trim().is_empty(), "ffmpeg: {stderr}");
    }

    /// ffmpeg on PATH; in CI its absence fails the test instead of skipping it.
    fn find_ffmpeg() -> Option<std::path::PathBuf> {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("ffmpeg"))
                .find(|candidate| candidate.is_file())
        });
        if found.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "ffmpeg is required in CI and is not installed; `make test` installs it"
            );
            eprintln!("note: ffmpeg is not installed; skipping (run `make test` to install it)");
        }
        found
    }
}
