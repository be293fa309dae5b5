//! The WebSocket packet frame: a 12-byte big-endian header, then one Opus packet.
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0 | version (1) |
//! | 1 | flags; bit 0: discontinuity (audio was skipped before this packet) |
//! | 2-3 | zero |
//! | 4-11 | first sample of the packet, counted at 48 kHz since the station started |
//! | 12.. | the Opus packet |

/// The frame version this engine writes and reads.
pub const WIRE_VERSION: u8 = 1;
/// Bytes before the Opus packet.
pub const WIRE_HEADER_LEN: usize = 12;
/// Flag bit: packets were skipped or the stream restarted before this packet; the
/// client resets its decoder.
pub const FLAG_DISCONTINUITY: u8 = 0b1;

/// The header of one packet message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireHeader {
    pub flags: u8,
    pub pts: u64,
}

impl WireHeader {
    /// Writes the 12 header bytes; the Opus packet follows them in the message.
    pub fn write_to(&self, out: &mut [u8; WIRE_HEADER_LEN]) {
        out[0] = WIRE_VERSION;
        out[1] = self.flags;
        out[2] = 0;
        out[3] = 0;
        out[4..12].copy_from_slice(&self.pts.to_be_bytes());
    }

    pub fn is_discontinuity(&self) -> bool {
        self.flags & FLAG_DISCONTINUITY != 0
    }
}

/// Why a message is not a packet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {len} bytes is shorter than the {WIRE_HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("unknown frame version {version}")]
    Version { version: u8 },
    #[error("reserved header bytes are not zero")]
    Reserved,
    #[error("frame carries no Opus packet")]
    EmptyPayload,
}

/// Splits a message into its header and Opus packet.
pub fn parse_packet(message: &[u8]) -> Result<(WireHeader, &[u8]), WireError> {
    if message.len() < WIRE_HEADER_LEN {
        return Err(WireError::TooShort { len: message.len() });
    }
    if message[0] != WIRE_VERSION {
        return Err(WireError::Version {
            version: message[0],
        });
    }
    if message[2] != 0 || message[3] != 0 {
        return Err(WireError::Reserved);
    }
    let payload = &message[WIRE_HEADER_LEN..];
    if payload.is_empty() {
        return Err(WireError::EmptyPayload);
    }
    let mut pts = [0u8; 8];
    pts.copy_from_slice(&message[4..12]);
    Ok((
        WireHeader {
            flags: message[1],
            pts: u64::from_be_bytes(pts),
        },
        payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(header: WireHeader, payload: &[u8]) -> Vec<u8> {
        let mut bytes = [0u8; WIRE_HEADER_LEN];
        header.write_to(&mut bytes);
        let mut message = bytes.to_vec();
        message.extend_from_slice(payload);
        message
    }

    #[test]
    fn header_is_big_endian_and_round_trips() {
        let header = WireHeader {
            flags: FLAG_DISCONTINUITY,
            pts: 0x0102_0304_0506_0708,
        };
        let mut bytes = [0xffu8; WIRE_HEADER_LEN];
        header.write_to(&mut bytes);
        assert_eq!(bytes, [1, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let message = message(header, b"opus");
        let (parsed, payload) = parse_packet(&message).unwrap();
        assert_eq!(parsed, header);
        assert!(parsed.is_discontinuity());
        assert_eq!(payload, b"opus");
    }

    #[test]
    fn every_timestamp_and_flag_survives_the_round_trip() {
        for (flags, pts) in [(0, 0), (0, 960), (0b10, u64::MAX), (0xff, 1 << 40)] {
            let header = WireHeader { flags, pts };
            let message = message(header, &[0xfc; 3]);
            let (parsed, payload) = parse_packet(&message).unwrap();
            assert_eq!(parsed, header);
            assert_eq!(parsed.is_discontinuity(), flags & 1 == 1);
            assert_eq!(payload, &[0xfc; 3]);
        }
    }

    #[test]
    fn message_shorter_than_the_header_is_refused() {
        assert_eq!(parse_packet(&[]), Err(WireError::TooShort { len: 0 }));
        assert_eq!(parse_packet(&[1; 11]), Err(WireError::TooShort { len: 11 }));
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = message(WireHeader { flags: 0, pts: 0 }, b"x");
        for version in [0, 2, 255] {
            bytes[0] = version;
            assert_eq!(parse_packet(&bytes), Err(WireError::Version { version }));
        }
    }

    #[test]
    fn nonzero_reserved_bytes_are_refused() {
        for at in [2, 3] {
            let mut bytes = message(WireHeader { flags: 0, pts: 0 }, b"x");
            bytes[at] = 1;
            assert_eq!(parse_packet(&bytes), Err(WireError::Reserved));
        }
    }

    #[test]
    fn header_without_a_packet_is_refused() {
        let bytes = message(WireHeader { flags: 0, pts: 960 }, &[]);
        assert_eq!(parse_packet(&bytes), Err(WireError::EmptyPayload));
    }
}
