//! An incremental Ogg page reader (RFC 3533) for the HTTP listeners.
//!
//! Bytes arrive in arbitrary pieces. The reader keeps only the page header and segment
//! table (at most 282 bytes) and counts its way through the body without storing it,
//! checking the CRC as it goes, so a listener's state stays fixed-size whatever it is sent.

/// Every page starts with this capture pattern.
pub const CAPTURE: [u8; 4] = *b"OggS";
const HEADER_LEN: usize = 27;
const MAX_SEGMENTS: usize = 255;
const CRC_RANGE: std::ops::Range<usize> = 22..26;
const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;
/// Body bytes kept to recognise header packets (`OpusHead`, `OpusTags`).
const MAGIC_LEN: usize = 8;

/// CRC-32 as Ogg defines it: polynomial 0x04c11db7, no reflection, initial value 0, no final xor.
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

/// The CRC of a whole page (header, segment table and body) as its header should
/// store it: computed with the CRC field taken as zero.
pub fn page_crc(page: &[u8]) -> u32 {
    let crc = crc_update(0, &page[..CRC_RANGE.start.min(page.len())]);
    let crc = crc_update(
        crc,
        &[0; 4][..CRC_RANGE
            .len()
            .min(page.len().saturating_sub(CRC_RANGE.start))],
    );
    crc_update(crc, page.get(CRC_RANGE.end..).unwrap_or_default())
}

fn crc_update(crc: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(crc, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)]
    })
}

/// What a completed page said about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    pub header_type: u8,
    /// Raw granule position; `u64::MAX` (-1) when no packet ends on this page.
    pub granule: u64,
    pub serial: u32,
    pub sequence: u32,
    /// Header, segment table and body.
    pub len: usize,
    /// Packets that end on this page (lacing values below 255).
    pub packets_completed: u16,
    magic: [u8; MAGIC_LEN],
    magic_len: u8,
}

impl PageInfo {
    pub fn is_first_of_stream(&self) -> bool {
        self.header_type & FLAG_BOS != 0
    }

    pub fn is_last_of_stream(&self) -> bool {
        self.header_type & FLAG_EOS != 0
    }

    /// The granule position, if a packet ends on this page.
    pub fn granule(&self) -> Option<u64> {
        (self.granule != u64::MAX).then_some(self.granule)
    }

    /// The first bytes of the body (up to 8).
    pub fn body_start(&self) -> &[u8] {
        &self.magic[..usize::from(self.magic_len)]
    }

    /// Whether the page carries an Opus header packet rather than audio.
    pub fn is_opus_header(&self) -> bool {
        matches!(self.body_start(), b"OpusHead" | b"OpusTags")
    }
}

/// Why the byte stream is not a sequence of valid Ogg pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OggError {
    #[error("no Ogg capture pattern at stream offset {offset}: found {found:02x?}")]
    Capture { offset: u64, found: [u8; 4] },
    #[error("page at stream offset {offset} has stream structure version {version}, not 0")]
    Version { offset: u64, version: u8 },
    #[error(
        "page {sequence} of stream {serial:#x} has CRC {stored:#010x}, its bytes give {computed:#010x}"
    )]
    Crc {
        serial: u32,
        sequence: u32,
        stored: u32,
        computed: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Segments { count: usize },
    Body { left: usize },
}

/// Reads Ogg pages from a byte stream delivered in pieces of any size.
#[derive(Debug)]
pub struct OggPageReader {
    head: [u8; HEADER_LEN + MAX_SEGMENTS],
    filled: usize,
    phase: Phase,
    crc: u32,
    page_start: u64,
    offset: u64,
    magic: [u8; MAGIC_LEN],
    magic_len: usize,
}

impl Default for OggPageReader {
    fn default() -> Self {
        Self {
            head: [0; HEADER_LEN + MAX_SEGMENTS],
            filled: 0,
            phase: Phase::Header,
            crc: 0,
            page_start: 0,
            offset: 0,
            magic: [0; MAGIC_LEN],
            magic_len: 0,
        }
    }
}

impl OggPageReader {
    /// Whether the reader is between pages (nothing of a page is pending).
    pub fn at_page_boundary(&self) -> bool {
        self.phase == Phase::Header && self.filled == 0
    }

    /// Consumes bytes from the front of `input` until a page completes (returned) or
    /// `input` is used up (`None`). Call again with the rest of `input` for more pages.
    pub fn next_page(&mut self, input: &mut &[u8]) -> Result<Option<PageInfo>, OggError> {
        loop {
            match self.phase {
                Phase::Header => {
                    if !self.fill_head(HEADER_LEN, input) {
                        return Ok(None);
                    }
                    self.check_fixed_header()?;
                    let count = usize::from(self.head[HEADER_LEN - 1]);
                    self.phase = Phase::Segments { count };
                }
                Phase::Segments { count } => {
                    if !self.fill_head(HEADER_LEN + count, input) {
                        return Ok(None);
                    }
                    let head = &self.head[..HEADER_LEN + count];
                    let mut zeroed = [0u8; HEADER_LEN];
                    zeroed.copy_from_slice(&head[..HEADER_LEN]);
                    zeroed[CRC_RANGE].fill(0);
                    self.crc = crc_update(crc_update(0, &zeroed), &head[HEADER_LEN..]);
                    let body: usize = head[HEADER_LEN..]
                        .iter()
                        .map(|&lace| usize::from(lace))
                        .sum();
                    self.phase = Phase::Body { left: body };
                }
                Phase::Body { left } => {
                    let take = left.min(input.len());
                    let (bytes, rest) = input.split_at(take);
                    *input = rest;
                    self.offset += take as u64;
                    self.crc = crc_update(self.crc, bytes);
                    let keep = (MAGIC_LEN - self.magic_len).min(bytes.len());
                    self.magic[self.magic_len..self.magic_len + keep]
                        .copy_from_slice(&bytes[..keep]);
                    self.magic_len += keep;
                    let left = left - take;
                    if left > 0 {
                        self.phase = Phase::Body { left };
                        return Ok(None);
                    }
                    return self.finish_page().map(Some);
                }
            }
        }
    }

    /// Copies bytes into the header buffer until it holds `len`; whether it does.
    fn fill_head(&mut self, len: usize, input: &mut &[u8]) -> bool {
        let take = (len - self.filled).min(input.len());
        let (bytes, rest) = input.split_at(take);
        self.head[self.filled..self.filled + take].copy_from_slice(bytes);
        self.filled += take;
        self.offset += take as u64;
        *input = rest;
        self.filled == len
    }

    fn check_fixed_header(&mut self) -> Result<(), OggError> {
        self.page_start = self.offset - HEADER_LEN as u64;
        let mut found = [0u8; 4];
        found.copy_from_slice(&self.head[..4]);
        if found != CAPTURE {
            self.reset();
            return Err(OggError::Capture {
                offset: self.page_start,
                found,
            });
        }
        let version = self.head[4];
        if version != 0 {
            self.reset();
            return Err(OggError::Version {
                offset: self.page_start,
                version,
            });
        }
        Ok(())
    }

    fn finish_page(&mut self) -> Result<PageInfo, OggError> {
        let head = &self.head;
        let le_u32 =
            |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let mut granule = [0u8; 8];
        granule.copy_from_slice(&head[6..14]);
        let count = usize::from(head[HEADER_LEN - 1]);
        let lacing = &head[HEADER_LEN..HEADER_LEN + count];
        let page = PageInfo {
            header_type: head[5],
            granule: u64::from_le_bytes(granule),
            serial: le_u32(14),
            sequence: le_u32(18),
            len: (self.offset - self.page_start) as usize,
            packets_completed: lacing.iter().filter(|&&lace| lace < 255).count() as u16,
            magic: self.magic,
            magic_len: self.magic_len as u8,
        };
        let stored = le_u32(22);
        let computed = self.crc;
        self.reset();
        if stored != computed {
            return Err(OggError::Crc {
                serial: page.serial,
                sequence: page.sequence,
                stored,
                computed,
            });
        }
        Ok(page)
    }

    fn reset(&mut self) {
        self.filled = 0;
        self.phase = Phase::Header;
        self.magic_len = 0;
        self.crc = 0;
    }
}

/// Builds pages for tests of the reader and of the HTTP listener.
#[cfg(test)]
pub(crate) mod test_pages {
    use super::crc_update;

    /// Builds one page the way RFC 3533 lays it out, packets given whole.
    pub(crate) fn page(
        header_type: u8,
        granule: u64,
        serial: u32,
        sequence: u32,
        packets: &[&[u8]],
    ) -> Vec<u8> {
        let mut lacing = Vec::new();
        let mut body = Vec::new();
        for packet in packets {
            let mut left = packet.len();
            while left >= 255 {
                lacing.push(255);
                left -= 255;
            }
            lacing.push(left as u8);
            body.extend_from_slice(packet);
        }
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"OggS");
        bytes.push(0);
        bytes.push(header_type);
        bytes.extend_from_slice(&granule.to_le_bytes());
        bytes.extend_from_slice(&serial.to_le_bytes());
        bytes.extend_from_slice(&sequence.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.push(lacing.len() as u8);
        bytes.extend_from_slice(&lacing);
        bytes.extend_from_slice(&body);
        let crc = crc_update(0, &bytes);
        bytes[22..26].copy_from_slice(&crc.to_le_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::test_pages::page;
    use super::*;

    fn stream() -> Vec<u8> {
        let audio = [0x5au8; 300];
        let mut bytes = page(FLAG_BOS, 0, 7, 0, &[b"OpusHead\x01\x02\x38\x01"]);
        bytes.extend(page(0, 0, 7, 1, &[b"OpusTags vendor"]));
        bytes.extend(page(0, 312 + 960 * 5, 7, 2, &[&audio[..]; 5]));
        bytes.extend(page(FLAG_EOS, 312 + 960 * 10, 7, 3, &[&audio[..40]; 5]));
        bytes
    }

    fn read_all(reader: &mut OggPageReader, pieces: &[&[u8]]) -> Result<Vec<PageInfo>, OggError> {
        let mut pages = Vec::new();
        for piece in pieces {
            let mut input = *piece;
            while let Some(page) = reader.next_page(&mut input)? {
                pages.push(page);
            }
            assert!(input.is_empty());
        }
        Ok(pages)
    }

    #[test]
    fn crc_matches_the_ogg_check_value() {
        // CRC-32 with polynomial 0x04c11db7, init 0, no reflection, no final xor.
        assert_eq!(crc_update(0, b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn whole_stream_in_one_piece_gives_every_page() {
        let bytes = stream();
        let mut reader = OggPageReader::default();
        let pages = read_all(&mut reader, &[&bytes]).unwrap();
        assert_eq!(pages.len(), 4);
        assert!(pages[0].is_first_of_stream() && pages[0].is_opus_header());
        assert_eq!(pages[0].body_start(), b"OpusHead");
        assert!(pages[1].is_opus_header());
        assert!(!pages[2].is_opus_header());
        assert_eq!(pages[2].granule(), Some(312 + 960 * 5));
        assert_eq!(pages[2].packets_completed, 5);
        // 300-byte packets lace as 255 + 45: two segments each, one completion each.
        assert_eq!(pages[2].len, 27 + 10 + 1500);
        assert!(pages[3].is_last_of_stream());
        assert_eq!(
            pages.iter().map(|p| p.sequence).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(
            pages.iter().map(|p| p.len as u64).sum::<u64>(),
            bytes.len() as u64
        );
        assert_eq!(reader.offset, bytes.len() as u64);
        assert!(reader.at_page_boundary());
    }

    #[test]
    fn pages_split_at_every_byte_boundary_read_the_same() {
        let bytes = stream();
        let whole = read_all(&mut OggPageReader::default(), &[&bytes]).unwrap();
        for split in 0..bytes.len() {
            let (a, b) = bytes.split_at(split);
            let pages = read_all(&mut OggPageReader::default(), &[a, b]).unwrap();
            assert_eq!(pages, whole, "split at {split}");
        }
        let single_bytes: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            read_all(&mut OggPageReader::default(), &single_bytes).unwrap(),
            whole
        );
    }

    #[test]
    fn page_without_a_completed_packet_has_no_granule() {
        let long = [1u8; 255 * 3];
        let mut bytes = page(0, u64::MAX, 1, 0, &[]);
        // A packet of exactly 765 bytes laces as 255 255 255 0: it ends on this page.
        bytes.extend(page(0, 960, 1, 1, &[&long]));
        let pages = read_all(&mut OggPageReader::default(), &[&bytes]).unwrap();
        assert_eq!(pages[0].granule(), None);
        assert_eq!(pages[0].packets_completed, 0);
        assert_eq!(pages[1].packets_completed, 1);
    }

    #[test]
    fn corrupted_body_fails_the_crc() {
        let mut bytes = stream();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let mut reader = OggPageReader::default();
        match read_all(&mut reader, &[&bytes]) {
            Err(OggError::Crc {
                serial: 7,
                sequence: 3,
                stored,
                computed,
            }) => assert_ne!(stored, computed),
            other => panic!("expected a CRC error, got {other:?}"),
        }
    }

    #[test]
    fn bytes_that_are_not_a_page_are_refused_with_their_offset() {
        let mut bytes = stream();
        let mut reader = OggPageReader::default();
        assert!(matches!(
            read_all(&mut reader, &[b"HTTP/1.1 200 OK\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx"]),
            Err(OggError::Capture { offset: 0, found }) if &found == b"HTTP"
        ));
        bytes[4] = 1;
        assert!(matches!(
            read_all(&mut OggPageReader::default(), &[&bytes]),
            Err(OggError::Version {
                offset: 0,
                version: 1
            })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x1234_5678u32;
        let mut noise = vec![0u8; 64 * 1024];
        for byte in &mut noise {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *byte = state as u8;
        }
        // Start each try with a valid capture so the reader gets past the first check.
        for start in (0..noise.len() - 300).step_by(997) {
            let mut input = noise[start..].to_vec();
            input[..5].copy_from_slice(b"OggS\0");
            let mut reader = OggPageReader::default();
            let mut slice = input.as_slice();
            while let Ok(Some(_)) = reader.next_page(&mut slice) {}
        }
    }
}
