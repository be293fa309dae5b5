//! Just enough HTTP/1.1 for the swarm: a request line, the response head, and a body
//! decoder (chunked, sized or until close) that works on pieces of any size without
//! buffering the body. Plus a one-shot GET for the station API.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head the swarm accepts.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest body [`get`] reads.
const MAX_GET_BODY: usize = 4 * 1024 * 1024;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
}

/// The status line and the headers the swarm uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub content_type: Option<String>,
    pub framing: Framing,
}

/// Why a response head cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("response head is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("malformed status line {line:?}")]
    StatusLine { line: String },
    #[error("malformed header line {line:?}")]
    HeaderLine { line: String },
    #[error("bad Content-Length {value:?}")]
    ContentLength { value: String },
}

/// Parses the response head at the start of `bytes`. `None` while the blank line that
/// ends it has not arrived; otherwise the head and its length in bytes.
pub fn parse_head(bytes: &[u8]) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") else {
        if bytes.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge {
                limit: MAX_HEAD_BYTES,
            });
        }
        return Ok(None);
    };
    if end > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge {
            limit: MAX_HEAD_BYTES,
        });
    }
    let text = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = parse_status_line(status_line).ok_or_else(|| HeadError::StatusLine {
        line: status_line.to_owned(),
    })?;
    let mut content_type = None;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| HeadError::HeaderLine {
            line: line.to_owned(),
        })?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked |= value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<u64>().map_err(|_| HeadError::ContentLength {
                value: value.to_owned(),
            })?);
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(length)) => Framing::Length(length),
        (false, None) => Framing::UntilClose,
    };
    Ok(Some((
        ResponseHead {
            status,
            content_type,
            framing,
        },
        end + 4,
    )))
}

fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Why a body's framing is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("unexpected byte {byte:#04x} in a chunk size line")]
    SizeByte { byte: u8 },
    #[error("chunk size has more than 15 hex digits")]
    SizeTooLong,
    #[error("chunk data is followed by {byte:#04x}, not CRLF")]
    MissingCrlf { byte: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { size: u64, digits: u8 },
    Extension { size: u64 },
    SizeLf { size: u64 },
    Data { left: u64 },
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerLine,
    TrailerLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Chunked(Chunk),
    Length { left: u64 },
    UntilClose,
    Done,
}

/// Turns framed body bytes into payload bytes, a piece at a time, without copying.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Chunked => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
            Framing::Length(0) => State::Done,
            Framing::Length(left) => State::Length { left },
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// Whether the body has ended (last chunk, or all of Content-Length read).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next run of payload bytes taken from the front of `input`; `None` once
    /// `input` is used up or the body has ended.
    pub fn next_payload<'a>(
        &mut self,
        input: &mut &'a [u8],
    ) -> Result<Option<&'a [u8]>, BodyError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::UntilClose => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(std::mem::take(input)));
                }
                State::Length { left } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let (payload, rest) = input.split_at(take);
                    *input = rest;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length { left }
                    };
                    return Ok(Some(payload));
                }
                State::Chunked(Chunk::Data { left }) => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let (payload, rest) = input.split_at(take);
                    *input = rest;
                    let left = left - take as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data { left }
                    });
                    return Ok(Some(payload));
                }
                State::Chunked(chunk) => {
                    let Some((&byte, rest)) = input.split_first() else {
                        return Ok(None);
                    };
                    *input = rest;
                    self.state = step_framing(chunk, byte)?;
                }
            }
        }
    }
}

/// One byte of chunk framing (everything but the data).
fn step_framing(chunk: Chunk, byte: u8) -> Result<State, BodyError> {
    let after_size_line = |size: u64| {
        if size == 0 {
            State::Chunked(Chunk::TrailerLineStart)
        } else {
            State::Chunked(Chunk::Data { left: size })
        }
    };
    Ok(match chunk {
        Chunk::Size { size, digits } => match byte {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                if digits >= 15 {
                    return Err(BodyError::SizeTooLong);
                }
                let digit = u64::from((byte as char).to_digit(16).unwrap_or(0));
                State::Chunked(Chunk::Size {
                    size: size << 4 | digit,
                    digits: digits + 1,
                })
            }
            b';' | b' ' | b'\t' if digits > 0 => State::Chunked(Chunk::Extension { size }),
            b'\r' if digits > 0 => State::Chunked(Chunk::SizeLf { size }),
            _ => return Err(BodyError::SizeByte { byte }),
        },
        Chunk::Extension { size } => match byte {
            b'\r' => State::Chunked(Chunk::SizeLf { size }),
            b'\n' => after_size_line(size),
            _ => State::Chunked(Chunk::Extension { size }),
        },
        Chunk::SizeLf { size } => match byte {
            b'\n' => after_size_line(size),
            _ => return Err(BodyError::SizeByte { byte }),
        },
        Chunk::DataCr => match byte {
            b'\r' => State::Chunked(Chunk::DataLf),
            _ => return Err(BodyError::MissingCrlf { byte }),
        },
        Chunk::DataLf => match byte {
            b'\n' => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
            _ => return Err(BodyError::MissingCrlf { byte }),
        },
        Chunk::TrailerLineStart => match byte {
            b'\r' => State::Chunked(Chunk::TrailerLf),
            b'\n' => State::Done,
            _ => State::Chunked(Chunk::TrailerLine),
        },
        Chunk::TrailerLine => match byte {
            b'\n' => State::Chunked(Chunk::TrailerLineStart),
            _ => State::Chunked(Chunk::TrailerLine),
        },
        Chunk::TrailerLf => match byte {
            b'\n' => State::Done,
            _ => State::Chunked(Chunk::TrailerLine),
        },
        // Data is taken in runs by `next_payload`, never byte by byte.
        Chunk::Data { left } => State::Chunked(Chunk::Data { left }),
    })
}

/// The request line and headers of a GET.
pub fn get_request(authority: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: sonicforge-loadtests\r\nAccept: */*\r\n\r\n"
    )
}

/// Why a one-shot GET failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("GET {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("GET {path}: no answer within {seconds} s")]
    Timeout { path: String, seconds: u64 },
    #[error("GET {path}: {source}")]
    Head { path: String, source: HeadError },
    #[error("GET {path}: {source}")]
    Body { path: String, source: BodyError },
    #[error("GET {path}: connection closed before the response was complete")]
    Truncated { path: String },
    #[error("GET {path}: body is larger than {limit} bytes")]
    TooLarge { path: String, limit: usize },
}

/// A complete response to a GET: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GETs `path` from `addr` on a fresh connection and reads the whole (bounded) body.
pub async fn get(
    addr: SocketAddr,
    authority: &str,
    path: &str,
    timeout: Duration,
) -> Result<Response, GetError> {
    let exchange = async {
        let io_error = |source| GetError::Io {
            path: path.to_owned(),
            source,
        };
        let mut stream = TcpStream::connect(addr).await.map_err(io_error)?;
        let request =
            get_request(authority, path).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(io_error)?;
        let mut received = Vec::with_capacity(4096);
        let mut buf = [0u8; 4096];
        let (head, head_len) = loop {
            let n = stream.read(&mut buf).await.map_err(io_error)?;
            if n == 0 {
                return Err(GetError::Truncated {
                    path: path.to_owned(),
                });
            }
            received.extend_from_slice(&buf[..n]);
            let parsed = parse_head(&received).map_err(|source| GetError::Head {
                path: path.to_owned(),
                source,
            })?;
            if let Some(done) = parsed {
                break done;
            }
        };
        let mut decoder = BodyDecoder::new(head.framing);
        let mut body = Vec::new();
        let mut pending = received.split_off(head_len);
        loop {
            let mut input = pending.as_slice();
            while let Some(payload) =
                decoder
                    .next_payload(&mut input)
                    .map_err(|source| GetError::Body {
                        path: path.to_owned(),
                        source,
                    })?
            {
                if body.len() + payload.len() > MAX_GET_BODY {
                    return Err(GetError::TooLarge {
                        path: path.to_owned(),
                        limit: MAX_GET_BODY,
                    });
                }
                body.extend_from_slice(payload);
            }
            if decoder.is_done() {
                break;
            }
            let n = stream.read(&mut buf).await.map_err(io_error)?;
            if n == 0 {
                if head.framing == Framing::UntilClose {
                    break;
                }
                return Err(GetError::Truncated {
                    path: path.to_owned(),
                });
            }
            pending.clear();
            pending.extend_from_slice(&buf[..n]);
        }
        Ok(Response {
            status: head.status,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| GetError::Timeout {
            path: path.to_owned(),
            seconds: timeout.as_secs(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(
        framing: Framing,
        bytes: &[u8],
        piece: usize,
    ) -> Result<(Vec<u8>, bool), BodyError> {
        let mut decoder = BodyDecoder::new(framing);
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            let mut input = chunk;
            while let Some(payload) = decoder.next_payload(&mut input)? {
                out.extend_from_slice(payload);
            }
        }
        Ok((out, decoder.is_done()))
    }

    #[test]
    fn head_gives_status_type_and_framing() {
        let bytes =
            b"HTTP/1.1 200 OK\r\ncontent-type: audio/ogg\r\nTransfer-Encoding: chunked\r\n\r\nOggS";
        let (head, len) = parse_head(bytes).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.content_type.as_deref(), Some("audio/ogg"));
        assert_eq!(head.framing, Framing::Chunked);
        assert_eq!(&bytes[len..], b"OggS");

        let (head, _) = parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.status, head.framing), (404, Framing::Length(12)));
        let (head, _) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.framing, Framing::UntilClose);
    }

    #[test]
    fn incomplete_head_waits_and_oversized_or_garbled_heads_fail() {
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: audio/ogg\r\n"),
            Ok(None)
        );
        assert_eq!(
            parse_head(&vec![b'a'; MAX_HEAD_BYTES + 1]),
            Err(HeadError::TooLarge {
                limit: MAX_HEAD_BYTES
            })
        );
        assert!(matches!(
            parse_head(b"SSH-2.0-x\r\n\r\n"),
            Err(HeadError::StatusLine { .. })
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"),
            Err(HeadError::HeaderLine { .. })
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err(HeadError::ContentLength { .. })
        ));
    }

    #[test]
    fn chunked_body_decodes_across_any_split() {
        let framed = b"5\r\nhello\r\n1;ext=1\r\n \r\nB\r\nworld, page\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for piece in 1..framed.len() {
            let (payload, done) = decode_in_pieces(Framing::Chunked, framed, piece).unwrap();
            assert_eq!(payload, b"hello world, page", "pieces of {piece}");
            assert!(done);
        }
    }

    #[test]
    fn sized_body_stops_at_its_length() {
        let (payload, done) = decode_in_pieces(Framing::Length(5), b"helloEXTRA", 3).unwrap();
        assert_eq!(payload, b"hello");
        assert!(done);
        let (payload, done) = decode_in_pieces(Framing::UntilClose, b"all of it", 2).unwrap();
        assert_eq!((payload.as_slice(), done), (&b"all of it"[..], false));
    }

    #[test]
    fn broken_chunk_framing_is_an_error() {
        assert_eq!(
            decode_in_pieces(Framing::Chunked, b"zz\r\n", 4),
            Err(BodyError::SizeByte { byte: b'z' })
        );
        assert_eq!(
            decode_in_pieces(Framing::Chunked, b"2\r\nabXY", 8),
            Err(BodyError::MissingCrlf { byte: b'X' })
        );
        assert_eq!(
            decode_in_pieces(Framing::Chunked, b"1000000000000000\r\n", 32),
            Err(BodyError::SizeTooLong)
        );
    }

    #[tokio::test]
    async fn get_reads_a_chunked_response_from_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let n = socket.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n")
                .await
                .unwrap();
            socket.write_all(b"4\r\n\":1}\r\n0\r\n\r\n").await.unwrap();
            request
        });
        let response = get(addr, "127.0.0.1:1", "/api/stations", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"{\"a\":1}");
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /api/stations HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"));
    }
}
