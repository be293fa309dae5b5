//! Takes Opus packets out of an Ogg/Opus byte stream and writes them again on pages of
//! a chosen duration, as a source client feeding a peer server does.

use sonicforge_engine::codec::ogg::OggOpusMuxer;

use crate::ogg::{CAPTURE, page_crc};

const HEADER_LEN: usize = 27;
/// The largest Ogg page: header, 255 lacing values, 255 segments of 255 bytes.
const MAX_PAGE_LEN: usize = HEADER_LEN + 255 + 255 * 255;
/// The largest packet the reader assembles from continued pages.
const MAX_PACKET_LEN: usize = 64 * 1024;
const FLAG_CONTINUED: u8 = 0x01;

/// Why the upstream bytes are not an Ogg/Opus stream the relay can take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepageError {
    #[error("no Ogg capture pattern at stream offset {offset}")]
    Capture { offset: u64 },
    #[error("page at stream offset {offset} has stream structure version {version}, not 0")]
    Version { offset: u64, version: u8 },
    #[error(
        "page at stream offset {offset} has CRC {stored:#010x}, its bytes give {computed:#010x}"
    )]
    Crc {
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error("a packet spans pages past {MAX_PACKET_LEN} bytes")]
    PacketTooLong,
    #[error("OpusHead is {len} bytes, shorter than the 19 of its fixed fields")]
    ShortOpusHead { len: usize },
    #[error("audio packet before OpusHead")]
    AudioBeforeHead,
}

/// Reads packets from Ogg pages delivered in pieces of any size. Keeps at most one
/// page and one packet in progress.
#[derive(Debug, Default)]
pub struct OggPacketReader {
    pending: Vec<u8>,
    /// Stream offset of `pending[0]`.
    offset: u64,
    /// A packet begun on an earlier page.
    partial: Vec<u8>,
    /// Packets of the last complete page not handed out yet, as ranges of `page`.
    page: Vec<u8>,
    packets: std::collections::VecDeque<std::ops::Range<usize>>,
}

impl OggPacketReader {
    /// Adds bytes from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete packet, or `None` until more bytes arrive.
    pub fn next_packet(&mut self) -> Result<Option<Vec<u8>>, RepageError> {
        loop {
            if let Some(range) = self.packets.pop_front() {
                return Ok(Some(self.page[range].to_vec()));
            }
            if !self.next_page()? {
                return Ok(None);
            }
        }
    }

    /// Takes one complete page from `pending`, if there is one; whether it did.
    fn next_page(&mut self) -> Result<bool, RepageError> {
        if self.pending.len() < HEADER_LEN {
            return Ok(false);
        }
        if self.pending[..4] != CAPTURE {
            return Err(RepageError::Capture {
                offset: self.offset,
            });
        }
        if self.pending[4] != 0 {
            return Err(RepageError::Version {
                offset: self.offset,
                version: self.pending[4],
            });
        }
        let segments = usize::from(self.pending[HEADER_LEN - 1]);
        let Some(lacing) = self.pending.get(HEADER_LEN..HEADER_LEN + segments) else {
            return Ok(false);
        };
        let body_len: usize = lacing.iter().map(|&lace| usize::from(lace)).sum();
        let page_len = HEADER_LEN + segments + body_len;
        debug_assert!(page_len <= MAX_PAGE_LEN);
        if self.pending.len() < page_len {
            return Ok(false);
        }
        let page = &self.pending[..page_len];
        let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
        let computed = page_crc(page);
        if stored != computed {
            return Err(RepageError::Crc {
                offset: self.offset,
                stored,
                computed,
            });
        }
        if page[5] & FLAG_CONTINUED == 0 {
            self.partial.clear();
        }
        self.page.clear();
        self.packets.clear();
        let mut at = HEADER_LEN + segments;
        let mut packet_start = at;
        for &lace in &page[HEADER_LEN..HEADER_LEN + segments] {
            at += usize::from(lace);
            if lace < 255 {
                let start = self.page.len();
                self.page.extend_from_slice(&self.partial);
                self.page.extend_from_slice(&page[packet_start..at]);
                self.partial.clear();
                self.packets.push_back(start..self.page.len());
                packet_start = at;
            }
        }
        if packet_start < at {
            if self.partial.len() + (at - packet_start) > MAX_PACKET_LEN {
                return Err(RepageError::PacketTooLong);
            }
            self.partial.extend_from_slice(&page[packet_start..at]);
        }
        self.pending.drain(..page_len);
        self.offset += page_len as u64;
        Ok(true)
    }
}

/// Writes the packets of an Ogg/Opus stream again as a new logical stream whose pages
/// hold `page_ms` of audio: its own OpusHead (with the upstream pre-skip) and OpusTags,
/// then every audio packet.
#[derive(Debug)]
pub struct Repager {
    serial: u32,
    page_ms: u32,
    vendor: String,
    muxer: Option<OggOpusMuxer>,
}

impl Repager {
    pub fn new(serial: u32, page_ms: u32, vendor: &str) -> Self {
        Self {
            serial,
            page_ms,
            vendor: vendor.to_owned(),
            muxer: None,
        }
    }

    /// Takes one upstream packet; appends to `out` whatever pages it completes.
    pub fn push(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), RepageError> {
        if packet.starts_with(b"OpusHead") {
            let Some(pre_skip) = packet.get(10..12) else {
                return Err(RepageError::ShortOpusHead { len: packet.len() });
            };
            if packet.len() < 19 {
                return Err(RepageError::ShortOpusHead { len: packet.len() });
            }
            if self.muxer.is_none() {
                let mut muxer = OggOpusMuxer::new(
                    self.serial,
                    u16::from_le_bytes([pre_skip[0], pre_skip[1]]),
                    self.page_ms,
                );
                muxer.write_headers(&self.vendor, out);
                self.muxer = Some(muxer);
            }
            return Ok(());
        }
        if packet.starts_with(b"OpusTags") {
            return Ok(());
        }
        let muxer = self.muxer.as_mut().ok_or(RepageError::AudioBeforeHead)?;
        muxer.push_packet(packet, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonicforge_engine::codec::ogg::parse_pages;

    fn upstream(page_ms: u32, packets: &[Vec<u8>]) -> Vec<u8> {
        let mut muxer = OggOpusMuxer::new(7, 312, page_ms);
        let mut bytes = Vec::new();
        muxer.write_headers("upstream", &mut bytes);
        for packet in packets {
            muxer.push_packet(packet, &mut bytes);
        }
        bytes
    }

    fn packets(count: usize) -> Vec<Vec<u8>> {
        (0..count).map(|i| vec![i as u8; 200 + i * 7]).collect()
    }

    #[test]
    fn packets_come_out_whole_from_pieces_of_any_size() {
        let sent = packets(30);
        let bytes = upstream(100, &sent);
        for piece in [1, 7, 300, bytes.len()] {
            let mut reader = OggPacketReader::default();
            let mut got = Vec::new();
            for chunk in bytes.chunks(piece) {
                reader.push(chunk);
                while let Some(packet) = reader.next_packet().unwrap() {
                    got.push(packet);
                }
            }
            assert_eq!(got.len(), 32, "piece {piece}");
            assert!(got[0].starts_with(b"OpusHead"));
            assert!(got[1].starts_with(b"OpusTags"));
            assert_eq!(&got[2..], &sent[..], "piece {piece}");
        }
    }

    #[test]
    fn packet_spanning_pages_is_joined() {
        let long = vec![vec![9u8; 70_000 / 2], vec![3u8; 600]];
        let bytes = upstream(20, &long);
        let mut reader = OggPacketReader::default();
        reader.push(&bytes);
        let mut got = Vec::new();
        while let Some(packet) = reader.next_packet().unwrap() {
            got.push(packet);
        }
        assert_eq!(&got[2..], &long[..]);
    }

    #[test]
    fn corrupt_page_is_refused() {
        let mut bytes = upstream(20, &packets(3));
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let mut reader = OggPacketReader::default();
        reader.push(&bytes);
        let error = loop {
            match reader.next_packet() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the corrupt page was taken"),
                Err(error) => break error,
            }
        };
        assert!(matches!(error, RepageError::Crc { .. }), "{error}");
        let mut reader = OggPacketReader::default();
        reader.push(b"NotOgg and more bytes than a header holds");
        assert!(matches!(
            reader.next_packet(),
            Err(RepageError::Capture { offset: 0 })
        ));
    }

    #[test]
    fn repaged_stream_has_pages_of_the_chosen_duration() {
        let sent = packets(50);
        let bytes = upstream(20, &sent);
        let mut reader = OggPacketReader::default();
        reader.push(&bytes);
        let mut repager = Repager::new(99, 100, "relay");
        let mut out = Vec::new();
        while let Some(packet) = reader.next_packet().unwrap() {
            repager.push(&packet, &mut out).unwrap();
        }
        let pages = parse_pages(&out).unwrap();
        assert_eq!(pages.len(), 2 + 10);
        assert!(pages.iter().all(|page| page.serial == 99));
        assert!(pages[0].packets[0].starts_with(b"OpusHead"));
        assert_eq!(
            u16::from_le_bytes([pages[0].packets[0][10], pages[0].packets[0][11]]),
            312
        );
        for (index, page) in pages[2..].iter().enumerate() {
            assert_eq!(page.packets.len(), 5);
            assert_eq!(page.granule, (index as u64 + 1) * 5 * 960);
        }
        let audio: Vec<Vec<u8>> = pages[2..]
            .iter()
            .flat_map(|page| page.packets.clone())
            .collect();
        assert_eq!(audio, sent);
    }

    #[test]
    fn audio_before_the_head_is_refused() {
        let mut repager = Repager::new(1, 20, "relay");
        let mut out = Vec::new();
        assert_eq!(
            repager.push(&[1, 2, 3], &mut out),
            Err(RepageError::AudioBeforeHead)
        );
        assert_eq!(
            repager.push(b"OpusHead\x01", &mut out),
            Err(RepageError::ShortOpusHead { len: 9 })
        );
    }
}
