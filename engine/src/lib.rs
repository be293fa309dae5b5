//! The real-time audio core of SonicForge.
//!
//! Everything here is independent of actix, HTTP and database drivers. Audio is
//! 48 kHz stereo `f32`, moved in 20 ms frames (see [`frame`]). Whole tracks travel
//! as shared buffers; from the mixer on, audio only moves through preallocated
//! lock-free rings (see [`ring`]).

pub mod codec;
pub mod events;
pub mod frame;
pub mod generate;
pub mod master;
pub mod media;
pub mod mix;
pub mod ring;
