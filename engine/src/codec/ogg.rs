//! Ogg/Opus muxing (RFC 3533 pages, RFC 7845 Opus mapping) for the HTTP stream, and
//! a page reader for tests and tools.
//!
//! 20 ms packets are grouped into pages of a chosen duration. A page's granule
//! position counts the decoded samples of every packet completed on it and before
//! it. Those samples include the pre-skip that the decoder drops, so a player's
//! position is `granule - pre_skip` (RFC 7845, section 4). A page on which no packet
//! ends carries [`NO_GRANULE`].
//!
//! The muxer allocates only when it is built and when it writes the headers: for
//! packets up to [`MAX_PACKET_LEN`] bytes it reuses its page buffer, and appends to
//! the caller's `out` without growing it once `out` has room for a page.

use crate::codec::opus::MAX_PACKET_LEN;
use crate::frame::{FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE};

const CAPTURE: &[u8; 4] = b"OggS";
const HEADER_LEN: usize = 27;
const CRC_OFFSET: usize = 22;
const MAX_SEGMENTS: usize = 255;
const SEGMENT_LEN: usize = 255;
/// Largest page body: 255 segments of 255 bytes.
const MAX_BODY_LEN: usize = MAX_SEGMENTS * SEGMENT_LEN;

/// Header flag: the page starts with the rest of a packet begun on the page before.
pub const FLAG_CONTINUED: u8 = 0x01;
/// Header flag: first page of the logical stream.
pub const FLAG_BOS: u8 = 0x02;
/// Header flag: last page of the logical stream.
pub const FLAG_EOS: u8 = 0x04;
/// Granule position of a page on which no packet ends (RFC 3533: -1).
pub const NO_GRANULE: u64 = u64::MAX;
/// Shortest page duration the muxer accepts: one packet per page.
pub const MIN_PAGE_MS: u32 = FRAME_MS;
/// Longest page duration the muxer accepts.
pub const MAX_PAGE_MS: u32 = 1000;
/// Largest page the muxer writes: header, full lacing table and body.
pub const MAX_PAGE_LEN: usize = HEADER_LEN + MAX_SEGMENTS + MAX_BODY_LEN;

/// CRC-32 as Ogg defines it: polynomial 0x04c11db7, not reflected, initial value 0,
/// no final XOR.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc_update(crc: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(crc, |crc, byte| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)]
    })
}

/// Writes one logical Ogg/Opus stream, page by page.
///
/// Call [`Self::write_headers`] first, then [`Self::push_packet`] for every 20 ms
/// packet, and [`Self::finish`] to end the stream.
#[derive(Debug)]
pub struct OggOpusMuxer {
    serial: u32,
    pre_skip: u16,
    packets_per_page: usize,
    page_sequence: u32,
    bos_written: bool,
    /// Samples of every packet completed so far, written or pending.
    granule: u64,
    /// Lacing values of the pending page.
    lacing: Vec<u8>,
    /// Body of the pending page.
    body: Vec<u8>,
    /// Packets that end on the pending page.
    packets_ending: usize,
    /// The pending page starts with the rest of a packet begun on the page before.
    continued: bool,
}

impl OggOpusMuxer {
    /// A stream with serial number `serial` whose OpusHead announces `pre_skip`, and
    /// whose pages hold `page_duration_ms` of 20 ms packets (clamped to
    /// [`MIN_PAGE_MS`]`..=`[`MAX_PAGE_MS`] and rounded down to whole packets). A page
    /// is closed early when the next packet would overflow its 255 lacing values.
    pub fn new(serial: u32, pre_skip: u16, page_duration_ms: u32) -> Self {
        let packets_per_page =
            (page_duration_ms.clamp(MIN_PAGE_MS, MAX_PAGE_MS) / FRAME_MS) as usize;
        Self {
            serial,
            pre_skip,
            packets_per_page,
            page_sequence: 0,
            bos_written: false,
            granule: 0,
            lacing: Vec::with_capacity(MAX_SEGMENTS),
            body: Vec::with_capacity((packets_per_page * MAX_PACKET_LEN).min(MAX_BODY_LEN)),
            packets_ending: 0,
            continued: false,
        }
    }

    /// Packets of 20 ms grouped on one page.
    pub fn packets_per_page(&self) -> usize {
        self.packets_per_page
    }

    /// Writes the identification header (OpusHead, alone on the first page, with the
    /// beginning-of-stream flag) and the comment header (OpusTags with `vendor` and
    /// no comments). Call it before the first packet.
    pub fn write_headers(&mut self, vendor: &str, out: &mut Vec<u8>) {
        self.write_headers_with_comments(vendor, &[], out);
    }

    /// [`Self::write_headers`] with user comments, each `KEY=value` (for example
    /// `TITLE=Night Drive`). Comments of any length are written; a long OpusTags
    /// packet spans several pages.
    pub fn write_headers_with_comments(
        &mut self,
        vendor: &str,
        comments: &[&str],
        out: &mut Vec<u8>,
    ) {
        self.flush(out);
        let mut head = [0u8; 19];
        head[..8].copy_from_slice(b"OpusHead");
        head[8] = 1; // version
        head[9] = 2; // channels
        head[10..12].copy_from_slice(&self.pre_skip.to_le_bytes());
        head[12..16].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
        // Bytes 16-17: output gain 0 dB; byte 18: channel mapping family 0.
        self.append(&head, 0, out);
        self.write_page(0, out);

        let length = |text: &str| u32::try_from(text.len()).unwrap_or(u32::MAX).to_le_bytes();
        let total = 16 + vendor.len() + comments.iter().map(|c| 4 + c.len()).sum::<usize>();
        let mut tags = Vec::with_capacity(total);
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&length(vendor));
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(
            &u32::try_from(comments.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        for comment in comments {
            tags.extend_from_slice(&length(comment));
            tags.extend_from_slice(comment.as_bytes());
        }
        self.append(&tags, 0, out);
        self.write_page(0, out);
    }

    /// Adds a 20 ms packet. Appends the page to `out` when it holds the page's
    /// duration (or cannot take the next packet) and returns whether a page was
    /// written.
    pub fn push_packet(&mut self, packet: &[u8], out: &mut Vec<u8>) -> bool {
        let pages_before = self.page_sequence;
        self.append(packet, FRAME_SAMPLES as u64, out);
        if self.packets_ending >= self.packets_per_page {
            self.write_page(0, out);
        }
        self.page_sequence != pages_before
    }

    /// Writes the pending packets, if any, as a page.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if !self.lacing.is_empty() {
            self.write_page(0, out);
        }
    }

    /// Writes the pending packets as the stream's last page, with the end-of-stream
    /// flag (an empty page when nothing is pending).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.write_page(FLAG_EOS, out);
    }

    /// Adds `packet` to the pending page, writing pages as they fill: a packet that
    /// fits an empty page but not the pending one starts a new page; a longer packet
    /// spans pages. `samples` is what the packet adds to the granule position.
    fn append(&mut self, packet: &[u8], samples: u64, out: &mut Vec<u8>) {
        // A packet of n bytes takes n / 255 + 1 lacing values; the last is below 255.
        let needed = packet.len() / SEGMENT_LEN + 1;
        let free = MAX_SEGMENTS - self.lacing.len();
        if needed > free && (needed <= MAX_SEGMENTS || free == 0) {
            self.write_page(0, out);
        }
        let mut rest = packet;
        loop {
            let free = MAX_SEGMENTS - self.lacing.len();
            if rest.len() / SEGMENT_LEN < free {
                let full = rest.len() / SEGMENT_LEN;
                self.lacing.extend(std::iter::repeat_n(255u8, full));
                self.lacing.push((rest.len() - full * SEGMENT_LEN) as u8);
                self.body.extend_from_slice(rest);
                self.packets_ending += 1;
                self.granule += samples;
                return;
            }
            let (head, tail) = rest.split_at(free * SEGMENT_LEN);
            self.lacing.extend(std::iter::repeat_n(255u8, free));
            self.body.extend_from_slice(head);
            rest = tail;
            self.write_page(0, out);
            self.continued = true;
        }
    }

    /// Writes the pending page (which may be empty) with `flags` and resets it.
    fn write_page(&mut self, flags: u8, out: &mut Vec<u8>) {
        let mut flags = flags;
        if !self.bos_written {
            flags |= FLAG_BOS;
            self.bos_written = true;
        }
        if self.continued {
            flags |= FLAG_CONTINUED;
        }
        // Every packet ends on a page unless a page is written mid-packet, and only
        // an empty end-of-stream page has no packets at all: it repeats the granule.
        let granule = if self.packets_ending > 0 || self.lacing.is_empty() {
            self.granule
        } else {
            NO_GRANULE
        };
        let start = out.len();
        out.extend_from_slice(CAPTURE);
        out.push(0); // version
        out.push(flags);
        out.extend_from_slice(&granule.to_le_bytes());
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&self.page_sequence.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // CRC, filled in below
        out.push(self.lacing.len() as u8);
        out.extend_from_slice(&self.lacing);
        out.extend_from_slice(&self.body);
        let crc = crc_update(0, &out[start..]);
        out[start + CRC_OFFSET..start + CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        self.page_sequence = self.page_sequence.wrapping_add(1);
        self.lacing.clear();
        self.body.clear();
        self.packets_ending = 0;
        self.continued = false;
    }
}

/// A page as read back by [`parse_pages`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggPage {
    pub flags: u8,
    /// [`NO_GRANULE`] when no packet ends on the page.
    pub granule: u64,
    pub serial: u32,
    pub sequence: u32,
    /// Packets that end on this page, joined with their parts from earlier pages.
    pub packets: Vec<Vec<u8>>,
}

impl OggPage {
    pub fn is_bos(&self) -> bool {
        self.flags & FLAG_BOS != 0
    }

    pub fn is_eos(&self) -> bool {
        self.flags & FLAG_EOS != 0
    }

    pub fn is_continued(&self) -> bool {
        self.flags & FLAG_CONTINUED != 0
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
    Crc {
        offset: usize,
        found: u32,
        expected: u32,
    },
}

/// Reads every page of `bytes`, checking capture patterns, versions and CRCs, and
/// joins packets that span pages. Meant for tests and tools: it allocates freely,
/// but never more than the input's size, and never panics.
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
            return Err(OggError::Version {
                offset,
                version: rest[4],
            });
        }
        let segments = usize::from(rest[26]);
        let Some(lacing) = rest.get(HEADER_LEN..HEADER_LEN + segments) else {
            return Err(OggError::Truncated { offset });
        };
        let page_len =
            HEADER_LEN + segments + lacing.iter().map(|l| usize::from(*l)).sum::<usize>();
        let Some(page) = rest.get(..page_len) else {
            return Err(OggError::Truncated { offset });
        };
        let le_u32 =
            |at: usize| u32::from_le_bytes([page[at], page[at + 1], page[at + 2], page[at + 3]]);
        let found = le_u32(CRC_OFFSET);
        let expected = crc_update(
            crc_update(crc_update(0, &page[..CRC_OFFSET]), &[0; 4]),
            &page[CRC_OFFSET + 4..],
        );
        if found != expected {
            return Err(OggError::Crc {
                offset,
                found,
                expected,
            });
        }
        let flags = page[5];
        if flags & FLAG_CONTINUED == 0 {
            partial.clear();
        }
        let mut packets = Vec::new();
        let mut body = &page[HEADER_LEN + segments..];
        for value in lacing {
            let (chunk, tail) = body.split_at(usize::from(*value));
            partial.extend_from_slice(chunk);
            body = tail;
            if *value < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        let mut granule = [0u8; 8];
        granule.copy_from_slice(&page[6..14]);
        pages.push(OggPage {
            flags,
            granule: u64::from_le_bytes(granule),
            serial: le_u32(14),
            sequence: le_u32(18),
            packets,
        });
        offset += page_len;
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::opus::OpusEncoder;
    use crate::frame::{CHANNELS, FRAME_LEN};

    /// Packet `index` of a test stream: sizes straddle the 255-byte lacing boundary
    /// and include exact multiples of 255.
    fn packet(index: usize) -> Vec<u8> {
        let len = match index % 7 {
            0 => 255,
            1 => 510,
            _ => 100 + index * 37 % 600,
        };
        (0..len).map(|i| (i * 31 + index) as u8).collect()
    }

    #[test]
    fn crc_matches_the_ogg_reference_value() {
        // CRC-32/MPEG-2 without the initial and final inversion: the Ogg variant.
        assert_eq!(crc_update(0, b"123456789"), 0x89a1_897f);
        assert_eq!(crc_update(0, b""), 0);
    }

    #[test]
    fn headers_and_a_hundred_packets_read_back_intact() {
        let pre_skip = 312;
        let mut muxer = OggOpusMuxer::new(0xabcd, pre_skip, 100);
        let mut out = Vec::new();
        muxer.write_headers_with_comments(
            "SonicForge test",
            &["TITLE=Test", "ENCODER=SonicForge"],
            &mut out,
        );
        let sent: Vec<Vec<u8>> = (0..100).map(packet).collect();
        assert!(sent.iter().any(|p| p.len() > 255));
        let pages_written = sent
            .iter()
            .filter(|p| muxer.push_packet(p, &mut out))
            .count();
        muxer.finish(&mut out);
        assert_eq!(pages_written, 20);

        let pages = parse_pages(&out).unwrap();
        assert_eq!(pages.len(), 2 + 20 + 1);
        for (index, page) in pages.iter().enumerate() {
            assert_eq!(page.serial, 0xabcd);
            assert_eq!(page.sequence, index as u32);
            assert_eq!(page.is_bos(), index == 0, "BOS on page {index}");
            assert_eq!(
                page.is_eos(),
                index == pages.len() - 1,
                "EOS on page {index}"
            );
            assert!(!page.is_continued());
        }

        assert_eq!(pages[0].packets.len(), 1);
        assert_eq!(pages[0].granule, 0);
        let head = &pages[0].packets[0];
        assert_eq!(head.len(), 19);
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!(head[8], 1, "version");
        assert_eq!(head[9], 2, "channels");
        assert_eq!(u16::from_le_bytes([head[10], head[11]]), pre_skip);
        assert_eq!(
            u32::from_le_bytes([head[12], head[13], head[14], head[15]]),
            48_000
        );
        assert_eq!(i16::from_le_bytes([head[16], head[17]]), 0, "output gain");
        assert_eq!(head[18], 0, "mapping family");

        assert_eq!(pages[1].granule, 0);
        let tags = &pages[1].packets[0];
        let field = |text: &str| [&(text.len() as u32).to_le_bytes()[..], text.as_bytes()].concat();
        let expected_tags = [
            b"OpusTags".to_vec(),
            field("SonicForge test"),
            2u32.to_le_bytes().to_vec(),
            field("TITLE=Test"),
            field("ENCODER=SonicForge"),
        ]
        .concat();
        assert_eq!(tags, &expected_tags);

        let audio = &pages[2..];
        let received: Vec<Vec<u8>> = audio.iter().flat_map(|p| p.packets.clone()).collect();
        assert_eq!(received, sent);
        let mut samples = 0;
        for page in &audio[..20] {
            samples += page.packets.len() as u64 * 960;
            assert_eq!(page.granule, samples);
        }
        let last = audio.last().unwrap();
        assert!(last.packets.is_empty());
        assert_eq!(last.granule, 100 * 960);
    }

    #[test]
    fn page_duration_sets_packets_per_page() {
        for (ms, per_page) in [
            (20, 1),
            (100, 5),
            (200, 10),
            (1000, 50),
            (5, 1),
            (5000, 50),
            (50, 2),
        ] {
            let mut muxer = OggOpusMuxer::new(1, 312, ms);
            assert_eq!(muxer.packets_per_page(), per_page, "{ms} ms");
            let mut out = Vec::new();
            let mut written = Vec::new();
            for index in 0..per_page * 3 {
                written.push(muxer.push_packet(&[1; 300], &mut out));
                assert_eq!(
                    written[index],
                    (index + 1) % per_page == 0,
                    "{ms} ms, packet {index}"
                );
            }
            let pages = parse_pages(&out).unwrap();
            assert_eq!(pages.len(), 3, "{ms} ms pages");
            assert!(pages.iter().all(|p| p.packets.len() == per_page));
        }
    }

    #[test]
    fn flush_writes_a_partial_page_and_nothing_when_empty() {
        let mut muxer = OggOpusMuxer::new(1, 312, 100);
        let mut out = Vec::new();
        muxer.flush(&mut out);
        assert!(out.is_empty());
        muxer.push_packet(&[1; 50], &mut out);
        muxer.push_packet(&[2; 50], &mut out);
        assert!(out.is_empty());
        muxer.flush(&mut out);
        let pages = parse_pages(&out).unwrap();
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].packets, vec![vec![1; 50], vec![2; 50]]);
        assert_eq!(pages[0].granule, 2 * 960);
    }

    #[test]
    fn long_pages_close_early_rather_than_split_a_packet() {
        let mut muxer = OggOpusMuxer::new(1, 312, 1000);
        let mut out = Vec::new();
        for _ in 0..50 {
            muxer.push_packet(&[9; MAX_PACKET_LEN], &mut out);
        }
        muxer.flush(&mut out);
        let pages = parse_pages(&out).unwrap();
        // A 1275-byte packet takes 6 lacing values: 42 fit a page.
        assert_eq!(
            pages.iter().map(|p| p.packets.len()).collect::<Vec<_>>(),
            [42, 8]
        );
        assert!(pages.iter().all(|p| !p.is_continued()));
        assert_eq!(pages[0].granule, 42 * 960);
        assert_eq!(pages[1].granule, 50 * 960);
    }

    #[test]
    fn packet_longer_than_a_page_spans_pages_with_continuation() {
        let mut muxer = OggOpusMuxer::new(1, 312, 20);
        let mut out = Vec::new();
        muxer.write_headers_with_comments("SonicForge test", &[&"x".repeat(70_000)], &mut out);
        let huge: Vec<u8> = (0..140_000).map(|i| (i % 251) as u8).collect();
        assert!(muxer.push_packet(&[7; 20], &mut out));
        assert!(muxer.push_packet(&huge, &mut out));
        assert!(muxer.push_packet(&[8; 20], &mut out));
        let pages = parse_pages(&out).unwrap();

        // OpusHead, OpusTags over two pages, the small packet, the huge one over
        // three pages, the last small packet.
        assert_eq!(pages.len(), 1 + 2 + 1 + 3 + 1);
        assert_eq!(pages[1].granule, NO_GRANULE);
        assert!(pages[1].packets.is_empty());
        assert!(pages[2].is_continued());
        assert_eq!(pages[2].granule, 0);
        assert!(pages[2].packets[0].ends_with(&[b'x'; 100]));
        assert_eq!(pages[3].packets, vec![vec![7; 20]]);
        assert_eq!(pages[3].granule, 960);
        assert_eq!(
            (pages[4].granule, pages[5].granule),
            (NO_GRANULE, NO_GRANULE)
        );
        assert!(!pages[4].is_continued());
        assert!(pages[5].is_continued() && pages[6].is_continued());
        assert_eq!(pages[6].packets, vec![huge]);
        assert_eq!(pages[6].granule, 2 * 960);
        assert_eq!(pages[7].packets, vec![vec![8; 20]]);
        assert_eq!(pages[7].granule, 3 * 960);
    }

    #[test]
    fn packet_after_a_full_page_starts_a_fresh_page() {
        let mut muxer = OggOpusMuxer::new(1, 312, 1000);
        let mut out = Vec::new();
        // 254 * 255 bytes take exactly the 255 lacing values of one page.
        let filling = vec![1u8; 254 * SEGMENT_LEN];
        let huge = vec![2u8; 70_000];
        assert!(!muxer.push_packet(&filling, &mut out));
        assert!(muxer.push_packet(&huge, &mut out));
        muxer.flush(&mut out);
        let pages = parse_pages(&out).unwrap();
        assert_eq!(pages.len(), 3);
        assert_eq!(
            (pages[0].packets.clone(), pages[0].granule),
            (vec![filling], 960)
        );
        assert!(!pages[1].is_continued() && pages[1].packets.is_empty());
        assert_eq!(pages[1].granule, NO_GRANULE);
        assert!(pages[2].is_continued());
        assert_eq!(
            (pages[2].packets.clone(), pages[2].granule),
            (vec![huge], 2 * 960)
        );
    }

    #[test]
    fn muxing_into_a_presized_buffer_never_reallocates() {
        let mut muxer = OggOpusMuxer::new(1, 312, 1000);
        let mut out = Vec::with_capacity(2 * MAX_PAGE_LEN);
        let (buffer, capacity) = (out.as_ptr(), out.capacity());
        let (lacing, body) = (muxer.lacing.as_ptr(), muxer.body.as_ptr());
        for index in 0..500 {
            let len = [MAX_PACKET_LEN, 1, 300, 255, 1000][index % 5];
            if muxer.push_packet(&vec![3; len], &mut out) {
                out.clear();
            }
        }
        assert_eq!((out.as_ptr(), out.capacity()), (buffer, capacity));
        assert_eq!((muxer.lacing.as_ptr(), muxer.body.as_ptr()), (lacing, body));
    }

    #[test]
    fn damaged_streams_are_refused() {
        let mut muxer = OggOpusMuxer::new(1, 312, 20);
        let mut out = Vec::new();
        muxer.push_packet(&[5; 100], &mut out);
        muxer.push_packet(&[6; 100], &mut out);
        let page_len = out.len() / 2;
        assert_eq!(parse_pages(&out).unwrap().len(), 2);

        let mut flipped = out.clone();
        flipped[page_len + 40] ^= 0x10;
        assert!(matches!(
            parse_pages(&flipped),
            Err(OggError::Crc { offset, .. }) if offset == page_len
        ));
        assert_eq!(
            parse_pages(&out[..out.len() - 1]),
            Err(OggError::Truncated { offset: page_len })
        );
        assert_eq!(
            parse_pages(&out[..page_len + 20]),
            Err(OggError::Truncated { offset: page_len })
        );
        let mut versioned = out.clone();
        versioned[4] = 1;
        assert_eq!(
            parse_pages(&versioned),
            Err(OggError::Version {
                offset: 0,
                version: 1
            })
        );
        let mut garbage = out.clone();
        garbage[page_len] = b'X';
        assert_eq!(
            parse_pages(&garbage),
            Err(OggError::Capture { offset: page_len })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_reader() {
        let mut muxer = OggOpusMuxer::new(1, 312, 40);
        let mut valid = Vec::new();
        muxer.write_headers("SonicForge test", &mut valid);
        for index in 0..20 {
            muxer.push_packet(&packet(index), &mut valid);
        }
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let mut bytes = valid.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            bytes.truncate((next() % (bytes.len() as u64 + 1)) as usize);
            let _ = parse_pages(&bytes);
        }
    }

    #[test]
    fn ffmpeg_decodes_the_muxed_stream_without_complaint() {
        let Some(ffmpeg) = find_ffmpeg() else {
            return;
        };
        let mut encoder = OpusEncoder::new(96_000).unwrap();
        let mut muxer = OggOpusMuxer::new(7, encoder.pre_skip(), 100);
        let mut out = Vec::new();
        muxer.write_headers_with_comments("SonicForge test", &["TITLE=Ogg test"], &mut out);
        let mut frame = [0f32; FRAME_LEN];
        let mut packet = [0u8; MAX_PACKET_LEN];
        for index in 0..150 {
            for (i, pair) in frame.chunks_exact_mut(CHANNELS).enumerate() {
                let t = (index * FRAME_SAMPLES + i) as f32 / 48_000.0;
                let value = (t * 440.0 * std::f32::consts::TAU).sin() * 0.3;
                pair[0] = value;
                pair[1] = value * 0.5;
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
        assert!(output.status.success(), "ffmpeg failed: {stderr}");
        assert!(stderr.trim().is_empty(), "ffmpeg reported: {stderr}");
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
                "ffmpeg is required when CI is set and is not on PATH; `make test` installs it"
            );
            eprintln!("note: ffmpeg is not on PATH; skipping the ffmpeg decode check");
        }
        found
    }
}
