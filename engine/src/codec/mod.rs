//! Codecs: Opus encoding, Ogg/Opus muxing for the HTTP stream, and the WebSocket
//! packet frame.
//!
//! | module | takes | gives | errors |
//! | --- | --- | --- | --- |
//! | [`opus`] | 20 ms stereo frames | Opus packets of at most [`MAX_PACKET_LEN`] bytes | [`CodecError`] |
//! | [`ogg`] | Opus packets | Ogg pages (RFC 3533, RFC 7845) | none when writing; [`ogg::OggError`] when reading |
//! | [`wire`] | an Opus packet and its timestamp | one WebSocket binary message | [`wire::WireError`] when reading |

pub mod ogg;
pub mod opus;
pub mod wire;

pub use self::opus::{CodecError, MAX_PACKET_LEN};
