//! Codecs: Opus encoding, Ogg/Opus muxing for the HTTP stream, and the WebSocket
//! packet frame.

pub mod ogg;
pub mod opus;
pub mod wire;

pub use self::opus::CodecError;
