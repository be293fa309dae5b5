//! `sonicforge-loadtests icecast-source`: a source client for a peer server (Icecast).
//!
//! It listens to a SonicForge station's HTTP Ogg/Opus stream, writes the same Opus
//! packets again on pages of `--page-ms`, and sends them to an Icecast mount with the
//! Icecast source protocol (HTTP PUT, Basic auth, `Content-Type: audio/ogg`). The
//! packets arrive in real time, so the peer is fed in real time: a 128 kb/s stream of
//! 20 ms packets, one page every `--page-ms`. Both ends must be loopback.

pub mod repage;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http1::{self, BodyDecoder, MAX_HEAD_BYTES};
use crate::target::{TargetError, TargetUrl};
use repage::{OggPacketReader, RepageError, Repager};

/// Longest a source runs.
pub const MAX_SOURCE_SECS: u64 = 4 * 3600;
/// Time allowed to connect, and for either end to answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const VENDOR: &str = concat!("sonicforge-loadtests ", env!("CARGO_PKG_VERSION"));

/// `sonicforge-loadtests icecast-source`.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// Base URL of the SonicForge engine to take the stream from (loopback only).
    #[arg(long)]
    pub from: String,
    /// Station whose HTTP stream is relayed.
    #[arg(long, default_value = "main")]
    pub station: String,
    /// Rendition in kb/s.
    #[arg(long, default_value_t = 128)]
    pub bitrate: u32,
    /// Base URL of the Icecast server (loopback only).
    #[arg(long)]
    pub to: String,
    /// Mount point on the Icecast server, like `/stream.opus`.
    #[arg(long)]
    pub mount: String,
    /// Source password (user `source`).
    #[arg(long)]
    pub password: String,
    /// Duration of the Ogg pages sent (20..=1000, a multiple of 20).
    #[arg(long, default_value_t = 20)]
    pub page_ms: u32,
    /// Seconds to run before closing both ends (at most 14400).
    #[arg(long, default_value_t = 600)]
    pub duration_secs: u64,
}

/// Why the source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--page-ms {found} is not a multiple of 20 within 20..=1000")]
    PageMs { found: u32 },
    #[error("--duration-secs {found} is outside 1..={MAX_SOURCE_SECS}")]
    Duration { found: u64 },
    #[error("--mount {found:?} must start with '/' and hold only letters, digits and -_./")]
    Mount { found: String },
    #[error("--station {found:?} must be letters, digits, '-' or '_'")]
    Station { found: String },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("{side}: {source}")]
    Io {
        side: &'static str,
        source: std::io::Error,
    },
    #[error("{side}: no progress within {} s", IO_TIMEOUT.as_secs())]
    Timeout { side: &'static str },
    #[error("{side}: bad response head: {source}")]
    Head {
        side: &'static str,
        source: http1::HeadError,
    },
    #[error("{side}: connection closed before the response head")]
    Closed { side: &'static str },
    #[error("{side} answered HTTP {status}: {text}")]
    Refused {
        side: &'static str,
        status: u16,
        text: String,
    },
    #[error("the engine's stream: {0}")]
    Body(#[from] http1::BodyError),
    #[error("the engine's stream: {0}")]
    Ogg(#[from] RepageError),
}

/// What a source run sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSummary {
    pub packets: u64,
    pub bytes_sent: u64,
}

impl SourceArgs {
    fn validate(&self) -> Result<(TargetUrl, TargetUrl), SourceError> {
        if !(20..=1000).contains(&self.page_ms) || !self.page_ms.is_multiple_of(20) {
            return Err(SourceError::PageMs {
                found: self.page_ms,
            });
        }
        if !(1..=MAX_SOURCE_SECS).contains(&self.duration_secs) {
            return Err(SourceError::Duration {
                found: self.duration_secs,
            });
        }
        let mount_ok = self.mount.starts_with('/')
            && self.mount.len() <= 200
            && self
                .mount
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if !mount_ok {
            return Err(SourceError::Mount {
                found: self.mount.clone(),
            });
        }
        let station_ok = !self.station.is_empty()
            && self.station.len() <= 64
            && self
                .station
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !station_ok {
            return Err(SourceError::Station {
                found: self.station.clone(),
            });
        }
        Ok((TargetUrl::parse(&self.from)?, TargetUrl::parse(&self.to)?))
    }
}

/// The `Authorization` value for HTTP Basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut encoded = String::with_capacity(input.len().div_ceil(3) * 4 + 6);
    encoded.push_str("Basic ");
    for chunk in input.as_bytes().chunks(3) {
        let bytes = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let group = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for (index, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if index <= chunk.len() {
                encoded.push(char::from(ALPHABET[((group >> shift) & 63) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

/// The request that opens an Icecast mount for a source.
pub fn source_request(authority: &str, mount: &str, password: &str, page_ms: u32) -> String {
    format!(
        "PUT {mount} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: {}\r\nUser-Agent: {VENDOR}\r\nContent-Type: audio/ogg\r\nIce-Public: 0\r\nIce-Name: SonicForge relay\r\nIce-Description: Opus packets of a SonicForge station on {page_ms} ms pages\r\n\r\n",
        basic_auth("source", password)
    )
}

async fn connect(target: &TargetUrl, side: &'static str) -> Result<TcpStream, SourceError> {
    let addr = target.resolve().await?;
    let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| SourceError::Timeout { side })?
        .map_err(|source| SourceError::Io { side, source })?;
    tcp.set_nodelay(true)
        .map_err(|source| SourceError::Io { side, source })?;
    Ok(tcp)
}

/// Reads a response head; returns its status, framing and the bytes after it.
async fn read_head(
    tcp: &mut TcpStream,
    side: &'static str,
) -> Result<(http1::ResponseHead, Vec<u8>), SourceError> {
    let mut received = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(IO_TIMEOUT, tcp.read(&mut buf))
            .await
            .map_err(|_| SourceError::Timeout { side })?
            .map_err(|source| SourceError::Io { side, source })?;
        if n == 0 {
            return Err(SourceError::Closed { side });
        }
        received.extend_from_slice(&buf[..n]);
        match http1::parse_head(&received) {
            Ok(Some((head, len))) => return Ok((head, received.split_off(len))),
            Ok(None) if received.len() <= MAX_HEAD_BYTES => {}
            Ok(None) => {
                return Err(SourceError::Head {
                    side,
                    source: http1::HeadError::TooLarge {
                        limit: MAX_HEAD_BYTES,
                    },
                });
            }
            Err(source) => return Err(SourceError::Head { side, source }),
        }
    }
}

fn refused(side: &'static str, status: u16, rest: &[u8]) -> SourceError {
    SourceError::Refused {
        side,
        status,
        text: String::from_utf8_lossy(rest).chars().take(200).collect(),
    }
}

/// Relays until `--duration-secs` have passed or either end closes.
pub async fn run(args: &SourceArgs) -> Result<SourceSummary, SourceError> {
    let (from, to) = args.validate()?;
    let end_at = Instant::now() + Duration::from_secs(args.duration_secs);

    let mut upstream = connect(&from, "the engine").await?;
    let path = format!(
        "/stations/{}/stream.opus?bitrate={}",
        args.station, args.bitrate
    );
    upstream
        .write_all(http1::get_request(&from.authority(), &path).as_bytes())
        .await
        .map_err(|source| SourceError::Io {
            side: "the engine",
            source,
        })?;
    let (head, leftover) = read_head(&mut upstream, "the engine").await?;
    if head.status != 200 {
        return Err(refused("the engine", head.status, &leftover));
    }
    let mut body = BodyDecoder::new(head.framing);

    let mut icecast = connect(&to, "icecast").await?;
    icecast
        .write_all(
            source_request(&to.authority(), &args.mount, &args.password, args.page_ms).as_bytes(),
        )
        .await
        .map_err(|source| SourceError::Io {
            side: "icecast",
            source,
        })?;
    let (answer, rest) = read_head(&mut icecast, "icecast").await?;
    if answer.status != 200 {
        return Err(refused("icecast", answer.status, &rest));
    }

    let mut reader = OggPacketReader::default();
    let mut repager = Repager::new(0x5346_0001, args.page_ms, VENDOR);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut summary = SourceSummary {
        packets: 0,
        bytes_sent: 0,
    };
    let mut pending_input = leftover;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut input = pending_input.as_slice();
        while let Some(payload) = body.next_payload(&mut input)? {
            reader.push(payload);
        }
        pending_input.clear();
        while let Some(packet) = reader.next_packet()? {
            if !(packet.starts_with(b"OpusHead") || packet.starts_with(b"OpusTags")) {
                summary.packets += 1;
            }
            repager.push(&packet, &mut out)?;
        }
        if !out.is_empty() {
            tokio::time::timeout(IO_TIMEOUT, icecast.write_all(&out))
                .await
                .map_err(|_| SourceError::Timeout { side: "icecast" })?
                .map_err(|source| SourceError::Io {
                    side: "icecast",
                    source,
                })?;
            summary.bytes_sent += out.len() as u64;
            out.clear();
        }
        let read = tokio::select! {
            () = tokio::time::sleep_until(end_at) => break,
            read = tokio::time::timeout(IO_TIMEOUT, upstream.read(&mut buf)) => read,
        };
        let n = read
            .map_err(|_| SourceError::Timeout { side: "the engine" })?
            .map_err(|source| SourceError::Io {
                side: "the engine",
                source,
            })?;
        if n == 0 {
            return Err(SourceError::Closed { side: "the engine" });
        }
        pending_input.extend_from_slice(&buf[..n]);
    }
    let _ = icecast.shutdown().await;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        source: SourceArgs,
    }

    fn args(extra: &[&str]) -> SourceArgs {
        let mut argv = vec![
            "icecast-source",
            "--from",
            "http://127.0.0.1:8080",
            "--to",
            "http://127.0.0.1:8000",
            "--mount",
            "/low.opus",
            "--password",
            "pw",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().source
    }

    #[test]
    fn basic_auth_is_base64_of_user_and_password() {
        assert_eq!(basic_auth("source", "hackme"), "Basic c291cmNlOmhhY2ttZQ==");
        assert_eq!(basic_auth("a", "bc"), "Basic YTpiYw==");
        assert_eq!(basic_auth("ab", "c"), "Basic YWI6Yw==");
    }

    #[test]
    fn source_request_is_a_put_of_ogg_with_credentials() {
        let request = source_request("127.0.0.1:8000", "/low.opus", "hackme", 20);
        assert!(request.starts_with("PUT /low.opus HTTP/1.1\r\n"));
        assert!(request.contains("\r\nAuthorization: Basic c291cmNlOmhhY2ttZQ==\r\n"));
        assert!(request.contains("\r\nContent-Type: audio/ogg\r\n"));
        assert!(request.ends_with("\r\n\r\n"));
    }

    #[test]
    fn bounds_and_targets_are_checked() {
        assert!(args(&[]).validate().is_ok());
        assert!(matches!(
            args(&["--page-ms", "30"]).validate(),
            Err(SourceError::PageMs { found: 30 })
        ));
        assert!(matches!(
            args(&["--duration-secs", "0"]).validate(),
            Err(SourceError::Duration { .. })
        ));
        let mut bad_mount = args(&[]);
        bad_mount.mount = "low.opus".into();
        assert!(matches!(
            bad_mount.validate(),
            Err(SourceError::Mount { .. })
        ));
        assert!(matches!(
            args(&["--station", "../x"]).validate(),
            Err(SourceError::Station { .. })
        ));
        let mut outside = args(&[]);
        outside.to = "http://10.0.0.1:8000".into();
        assert!(matches!(
            outside.validate(),
            Err(SourceError::Target(TargetError::NotLoopback { .. }))
        ));
    }
}
