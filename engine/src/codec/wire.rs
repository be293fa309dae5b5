//! The WebSocket packet frame: a 12-byte big-endian header, then one Opus packet.
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0 | version (1) |
//! | 1 | flags; bit 0: discontinuity (audio was lost before this packet) |
//! | 2-3 | zero |
//! | 4-11 | first sample of the packet, counted at 48 kHz since the station started |
//! | 12.. | the Opus packet |

pub const WIRE_VERSION: u8 = 1;
pub const WIRE_HEADER_LEN: usize = 12;
pub const FLAG_DISCONTINUITY: u8 = 0b1;

/// The header of one packet message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireHeader {
    pub flags: u8,
    pub pts: u64,
}

impl WireHeader {
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
        return Err(WireError::Version { version: message[0] });
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

    #[test]
    fn header_round_trips() {
        let header = WireHeader {
            flags: FLAG_DISCONTINUITY,
            pts: 0x0102_0304_0506_0708,
        };
        let mut bytes = [0u8; WIRE_HEADER_LEN];
        header.write_to(&mut bytes);
        assert_eq!(bytes, [1, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        let mut message = bytes.to_vec();
        message.extend_from_slice(b"opus");
        let (parsed, payload) = parse_packet(&message).unwrap();
        assert_eq!(parsed, header);
        assert!(parsed.is_discontinuity());
        assert_eq!(payload, b"opus");
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(parse_packet(&[1; 5]), Err(WireError::TooShort { len: 5 }));
        let mut message = vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        assert_eq!(parse_packet(&message), Err(WireError::Version { version: 2 }));
        message[0] = 1;
        message[3] = 1;
        assert_eq!(parse_packet(&message), Err(WireError::Reserved));
        let empty = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_packet(&empty), Err(WireError::EmptyPayload));
    }
}
