//! What a WebSocket listener receives: the 12-byte packet header, the hello message and
//! its clock mapping, from which end-to-end latency follows.
//!
//! Packet message: byte 0 version (1), byte 1 flags (bit 0: discontinuity), bytes 2-3
//! zero, bytes 4-11 the packet's first sample (u64 big-endian, 48 kHz since the station
//! started), then one Opus packet.

use serde::Deserialize;

pub const WIRE_VERSION: u8 = 1;
pub const WIRE_HEADER_LEN: usize = 12;
pub const FLAG_DISCONTINUITY: u8 = 0b1;
/// Samples per millisecond at the engine's 48 kHz.
pub const SAMPLES_PER_MS: u64 = 48;
/// Samples in one 20 ms Opus packet.
pub const PACKET_SAMPLES: u64 = 960;

/// The header of one audio message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub flags: u8,
    pub pts: u64,
}

impl PacketHeader {
    pub fn is_discontinuity(self) -> bool {
        self.flags & FLAG_DISCONTINUITY != 0
    }
}

/// Why a binary message is not an audio packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("message of {len} bytes is shorter than the {WIRE_HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("unknown frame version {version}")]
    Version { version: u8 },
    #[error("reserved header bytes are {bytes:?}, not zero")]
    Reserved { bytes: [u8; 2] },
    #[error("message carries no Opus packet")]
    EmptyPayload,
}

/// Reads the header of a binary message; the Opus packet is what follows it.
pub fn parse_packet_header(message: &[u8]) -> Result<PacketHeader, HeaderError> {
    let Some((header, payload)) = message.split_first_chunk::<WIRE_HEADER_LEN>() else {
        return Err(HeaderError::TooShort { len: message.len() });
    };
    let [version, flags, reserved0, reserved1, pts @ ..] = *header;
    if version != WIRE_VERSION {
        return Err(HeaderError::Version { version });
    }
    if reserved0 != 0 || reserved1 != 0 {
        return Err(HeaderError::Reserved {
            bytes: [reserved0, reserved1],
        });
    }
    if payload.is_empty() {
        return Err(HeaderError::EmptyPayload);
    }
    Ok(PacketHeader {
        flags,
        pts: u64::from_be_bytes(pts),
    })
}

/// Maps sample timestamps to the server's wall clock: sample `pts` went on air at
/// `unix_ms` (milliseconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ClockMapping {
    pub pts: u64,
    pub unix_ms: u64,
}

impl ClockMapping {
    /// When sample `pts` went (or goes) on air, in milliseconds since the Unix epoch.
    pub fn on_air_unix_ms(self, pts: u64) -> f64 {
        let offset_samples = pts as f64 - self.pts as f64;
        self.unix_ms as f64 + offset_samples / SAMPLES_PER_MS as f64
    }

    /// End-to-end latency of the packet starting at `pts`, received at `received_unix_ms`:
    /// `received - (unix_ms + (pts - clock.pts) / 48)`. Negative when the packet arrived
    /// before its first sample's air time.
    pub fn latency_ms(self, pts: u64, received_unix_ms: f64) -> f64 {
        received_unix_ms - self.on_air_unix_ms(pts)
    }

    /// The sample on air at `unix_ms`.
    pub fn pts_on_air_at(self, unix_ms: f64) -> u64 {
        let samples = self.pts as f64 + (unix_ms - self.unix_ms as f64) * SAMPLES_PER_MS as f64;
        samples.max(0.0) as u64
    }
}

/// The first text message of every WebSocket session.
#[derive(Debug, Clone, Deserialize)]
pub struct Hello {
    #[serde(rename = "type")]
    pub kind: String,
    /// The engine's id for this session; a chaos kill of a listener names it. Absent
    /// from engines that do not send it.
    #[serde(default)]
    pub session: Option<u64>,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub bitrate: u32,
    pub station: String,
    pub frame_samples: u32,
    pub clock: Option<ClockMapping>,
}

/// Why the first text message is not an acceptable hello.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("hello is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("first message has type {found:?}, not \"hello\"")]
    NotHello { found: String },
    #[error("hello announces {field} = {found}, expected {expected}")]
    Mismatch {
        field: &'static str,
        found: String,
        expected: String,
    },
}

impl Hello {
    /// Parses the hello and checks it describes the stream this listener asked for.
    pub fn parse(text: &str, station: &str, bitrate: u32) -> Result<Self, HelloError> {
        let hello: Hello = serde_json::from_str(text)?;
        if hello.kind != "hello" {
            return Err(HelloError::NotHello { found: hello.kind });
        }
        let checks: [(&'static str, String, String); 6] = [
            ("codec", hello.codec.clone(), "opus".into()),
            ("sample_rate", hello.sample_rate.to_string(), "48000".into()),
            ("channels", hello.channels.to_string(), "2".into()),
            ("station", hello.station.clone(), station.into()),
            ("bitrate", hello.bitrate.to_string(), bitrate.to_string()),
            (
                "frame_samples",
                hello.frame_samples.to_string(),
                PACKET_SAMPLES.to_string(),
            ),
        ];
        for (field, found, expected) in checks {
            if found != expected {
                return Err(HelloError::Mismatch {
                    field,
                    found,
                    expected,
                });
            }
        }
        Ok(hello)
    }
}

/// The `type` of a later text message (`now_playing`, or one this client does not know).
#[derive(Debug, Deserialize)]
pub struct TextKind<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: std::borrow::Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(version: u8, flags: u8, reserved: [u8; 2], pts: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![version, flags, reserved[0], reserved[1]];
        bytes.extend_from_slice(&pts.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn header_gives_the_big_endian_timestamp_and_flags() {
        let pts = 0x0102_0304_0506_0708;
        let header = parse_packet_header(&message(1, 0, [0, 0], pts, &[0xfc, 1, 2])).unwrap();
        assert_eq!(header, PacketHeader { flags: 0, pts });
        assert!(!header.is_discontinuity());
        let flagged = parse_packet_header(&message(1, 1, [0, 0], 960, &[0xfc])).unwrap();
        assert!(flagged.is_discontinuity());
        assert_eq!(flagged.pts, 960);
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        assert_eq!(
            parse_packet_header(&[]),
            Err(HeaderError::TooShort { len: 0 })
        );
        assert_eq!(
            parse_packet_header(&[1; 11]),
            Err(HeaderError::TooShort { len: 11 })
        );
        assert_eq!(
            parse_packet_header(&message(2, 0, [0, 0], 0, &[1])),
            Err(HeaderError::Version { version: 2 })
        );
        assert_eq!(
            parse_packet_header(&message(1, 0, [0, 7], 0, &[1])),
            Err(HeaderError::Reserved { bytes: [0, 7] })
        );
        assert_eq!(
            parse_packet_header(&message(1, 0, [0, 0], 0, &[])),
            Err(HeaderError::EmptyPayload)
        );
    }

    #[test]
    fn latency_follows_the_clock_mapping() {
        let clock = ClockMapping {
            pts: 48_000,
            unix_ms: 1_700_000_000_000,
        };
        // The anchor sample itself, received 150 ms after it went on air.
        assert_eq!(clock.latency_ms(48_000, 1_700_000_000_150.0), 150.0);
        // One second of samples later it goes on air 1000 ms later.
        assert_eq!(clock.latency_ms(96_000, 1_700_000_001_040.0), 40.0);
        // A pre-roll packet from 300 ms before the anchor, received at the anchor time.
        assert_eq!(
            clock.latency_ms(48_000 - 300 * 48, 1_700_000_000_000.0),
            300.0
        );
        // Received before its air time: negative.
        assert_eq!(clock.latency_ms(96_000, 1_700_000_000_990.0), -10.0);
        // Half a millisecond of samples is kept, not rounded away.
        assert_eq!(clock.latency_ms(48_024, 1_700_000_000_000.5), 0.0);
    }

    #[test]
    fn on_air_sample_inverts_the_mapping() {
        let clock = ClockMapping {
            pts: 960,
            unix_ms: 10_000,
        };
        assert_eq!(clock.pts_on_air_at(10_000.0), 960);
        assert_eq!(clock.pts_on_air_at(10_020.0), 1_920);
        assert_eq!(clock.pts_on_air_at(0.0), 0);
    }

    const HELLO: &str = r#"{"type":"hello","codec":"opus","sample_rate":48000,"channels":2,"bitrate":128,
        "station":"main","frame_samples":960,"pre_roll_ms":300,
        "clock":{"pts":96000,"unix_ms":1700000000000},"now_playing":null}"#;

    #[test]
    fn hello_is_parsed_with_its_clock() {
        let hello = Hello::parse(HELLO, "main", 128).unwrap();
        assert_eq!((hello.channels, hello.bitrate), (2, 128));
        assert_eq!(
            hello.clock,
            Some(ClockMapping {
                pts: 96_000,
                unix_ms: 1_700_000_000_000
            })
        );
    }

    #[test]
    fn hello_gives_the_session_id_when_the_engine_sends_one() {
        assert_eq!(Hello::parse(HELLO, "main", 128).unwrap().session, None);
        let with_session = HELLO.replace(r#""type":"hello","#, r#""type":"hello","session":42,"#);
        assert_eq!(
            Hello::parse(&with_session, "main", 128).unwrap().session,
            Some(42)
        );
    }

    #[test]
    fn hello_for_another_stream_is_refused() {
        match Hello::parse(HELLO, "main", 64) {
            Err(HelloError::Mismatch {
                field,
                found,
                expected,
            }) => {
                assert_eq!(
                    (field, found.as_str(), expected.as_str()),
                    ("bitrate", "128", "64")
                );
            }
            other => panic!("expected a bitrate mismatch, got {other:?}"),
        }
        assert!(matches!(
            Hello::parse(r#"{"type":"now_playing"}"#, "main", 128),
            Err(HelloError::Json(_))
        ));
        assert!(matches!(
            Hello::parse("not json", "main", 128),
            Err(HelloError::Json(_))
        ));
    }

    #[test]
    fn text_kind_reads_the_type_only() {
        let kind: TextKind<'_> =
            serde_json::from_str(r#"{"type":"now_playing","now_playing":{"x":1}}"#).unwrap();
        assert_eq!(kind.kind, "now_playing");
    }
}
