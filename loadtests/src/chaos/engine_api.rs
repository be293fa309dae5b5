//! The engine's HTTP endpoints the load tools use: the chaos hook and the playlist API
//! (JSON requests), `/metrics`, `/readyz` and the station API. GETs go through
//! [`crate::http1::get`]; JSON requests reuse its response parsing.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::metrics::{Metrics, MetricsError};
use super::schedule::{ActorKind, KillMode};
use crate::http1::{self, BodyDecoder, BodyError, Framing, GetError, HeadError, Response};

/// Timeout of every request to the engine.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response a JSON request reads.
const MAX_RESPONSE: usize = 64 * 1024;

/// Why a request to the engine failed; `path` is the method and path of a JSON request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no answer within {seconds} s")]
    Timeout { path: String, seconds: u64 },
    #[error("{path}: {source}")]
    Head { path: String, source: HeadError },
    #[error("{path}: {source}")]
    Body { path: String, source: BodyError },
    #[error("{path}: the connection closed before the response was complete")]
    Truncated { path: String },
    #[error("{path}: response is larger than {MAX_RESPONSE} bytes")]
    TooLarge { path: String },
    #[error(transparent)]
    Get(#[from] GetError),
    #[error("GET {path} answered HTTP {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("GET {path}: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("station {station:?} has no renditions")]
    NoRendition { station: String },
}

/// Where the engine is.
#[derive(Debug, Clone)]
pub struct Engine {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub authority: String,
    /// Bearer token sent with JSON requests (the chaos hook needs role admin, the
    /// playlist API operator).
    pub token: Option<String>,
}

/// What the chaos hook answered.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChaosAnswer {
    pub station: String,
    pub killed: String,
    pub mode: String,
    /// The WebSocket session a listener kill ended.
    #[serde(default)]
    pub session: Option<u64>,
}

/// A chaos request's outcome: the status, the parsed answer of a 202, or the body.
#[derive(Debug, Clone)]
pub struct KillOutcome {
    pub status: u16,
    pub answer: Option<ChaosAnswer>,
    /// The body of a refusal or of an answer that did not parse, shortened.
    pub detail: Option<String>,
}

fn shorten(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// The chaos request body.
pub fn chaos_request(station: &str, actor: ActorKind, mode: KillMode) -> String {
    let station = serde_json::Value::String(station.to_owned());
    format!(
        r#"{{"station":{station},"actor":"{}","mode":"{}"}}"#,
        actor.name(),
        mode.name()
    )
}

impl Engine {
    async fn get_ok(&self, path: &str) -> Result<Vec<u8>, ApiError> {
        let response = http1::get(self.addr, &self.authority, path, API_TIMEOUT).await?;
        if response.status != 200 {
            return Err(ApiError::Status {
                path: path.to_owned(),
                status: response.status,
                body: shorten(&response.body),
            });
        }
        Ok(response.body)
    }

    /// Asks the engine to kill `actor` of `station` by `mode`.
    pub async fn kill(
        &self,
        station: &str,
        actor: ActorKind,
        mode: KillMode,
    ) -> Result<KillOutcome, ApiError> {
        let body = chaos_request(station, actor, mode);
        let response = self.send_json("POST", "/api/admin/chaos", &body).await?;
        let answer = (response.status == 202)
            .then(|| serde_json::from_slice::<ChaosAnswer>(&response.body).ok())
            .flatten();
        let detail = answer.is_none().then(|| shorten(&response.body));
        Ok(KillOutcome {
            status: response.status,
            answer,
            detail,
        })
    }

    /// `/metrics`, parsed.
    pub async fn metrics(&self) -> Result<Metrics, ApiError> {
        let body = self.get_ok("/metrics").await?;
        Ok(Metrics::parse(&String::from_utf8_lossy(&body))?)
    }

    /// Whether `/readyz` answers 200.
    pub async fn is_ready(&self) -> bool {
        http1::get(self.addr, &self.authority, "/readyz", API_TIMEOUT)
            .await
            .is_ok_and(|response| response.status == 200)
    }

    /// The station's highest rendition in kb/s, from `/api/stations/{id}`.
    pub async fn highest_rendition(&self, station: &str) -> Result<u32, ApiError> {
        #[derive(Deserialize)]
        struct StationInfo {
            renditions: Vec<u32>,
        }
        let path = format!("/api/stations/{station}");
        let body = self.get_ok(&path).await?;
        let info: StationInfo =
            serde_json::from_slice(&body).map_err(|source| ApiError::Json { path, source })?;
        info.renditions
            .into_iter()
            .max()
            .ok_or_else(|| ApiError::NoRendition {
                station: station.to_owned(),
            })
    }

    /// Sends a JSON body with `method` on a fresh connection and reads the whole
    /// (bounded) response.
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<Response, ApiError> {
        let request_line = format!("{method} {path}");
        let path = request_line.as_str();
        let exchange = async {
            let io_error = |source| ApiError::Io {
                path: path.to_owned(),
                source,
            };
            let mut stream = TcpStream::connect(self.addr).await.map_err(io_error)?;
            let authorization = self
                .token
                .as_ref()
                .map(|token| format!("Authorization: Bearer {token}\r\n"))
                .unwrap_or_default();
            let request = format!(
                "{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sonicforge-loadtests\r\n{authorization}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.authority,
                body.len()
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(io_error)?;
            let mut received = Vec::with_capacity(1024);
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.map_err(io_error)?;
                if n == 0 {
                    break;
                }
                if received.len() + n > MAX_RESPONSE {
                    return Err(ApiError::TooLarge {
                        path: path.to_owned(),
                    });
                }
                received.extend_from_slice(&buf[..n]);
            }
            parse_response(path, &received)
        };
        tokio::time::timeout(API_TIMEOUT, exchange)
            .await
            .map_err(|_| ApiError::Timeout {
                path: path.to_owned(),
                seconds: API_TIMEOUT.as_secs(),
            })?
    }
}

/// Parses a complete response read until the server closed the connection.
fn parse_response(path: &str, bytes: &[u8]) -> Result<Response, ApiError> {
    let truncated = || ApiError::Truncated {
        path: path.to_owned(),
    };
    let (head, head_len) = http1::parse_head(bytes)
        .map_err(|source| ApiError::Head {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(truncated)?;
    let mut decoder = BodyDecoder::new(head.framing);
    let mut input = &bytes[head_len..];
    let mut body = Vec::new();
    while let Some(payload) = decoder
        .next_payload(&mut input)
        .map_err(|source| ApiError::Body {
            path: path.to_owned(),
            source,
        })?
    {
        body.extend_from_slice(payload);
    }
    if !decoder.is_done() && head.framing != Framing::UntilClose {
        return Err(truncated());
    }
    Ok(Response {
        status: head.status,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaos_request_names_station_actor_and_mode() {
        assert_eq!(
            chaos_request("main", ActorKind::EventWriter, KillMode::Panic),
            r#"{"station":"main","actor":"event_writer","mode":"panic"}"#
        );
    }

    #[test]
    fn chaos_answer_reads_the_killed_session() {
        let answer: ChaosAnswer = serde_json::from_str(
            r#"{"station":"main","killed":"listener","mode":"stop","session":77}"#,
        )
        .unwrap();
        assert_eq!(answer.session, Some(77));
        let answer: ChaosAnswer = serde_json::from_str(
            r#"{"station":"main","killed":"mixer","mode":"panic","session":null}"#,
        )
        .unwrap();
        assert_eq!((answer.killed.as_str(), answer.session), ("mixer", None));
    }

    #[test]
    fn whole_responses_parse_and_cut_ones_do_not() {
        let sized = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}";
        let response = parse_response("/x", sized).unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (202, &b"{}"[..])
        );
        let chunked =
            b"HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n";
        assert_eq!(parse_response("/x", chunked).unwrap().body, b"no");
        assert!(matches!(
            parse_response(
                "/x",
                b"HTTP/1.1 202 Accepted\r\ncontent-length: 9\r\n\r\n{}"
            ),
            Err(ApiError::Truncated { .. })
        ));
        assert!(matches!(
            parse_response("/x", b"HTTP/1.1 202 Acc"),
            Err(ApiError::Truncated { .. })
        ));
    }

    #[tokio::test]
    async fn kill_posts_json_and_reads_the_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&request).contains("\"mode\"") {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"station":"main","killed":"listener","mode":"stop","session":5}"#;
            let response = format!(
                "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let engine = Engine {
            addr,
            authority: addr.to_string(),
            token: Some("t0ken".into()),
        };
        let outcome = engine
            .kill("main", ActorKind::Listener, KillMode::Stop)
            .await
            .unwrap();
        assert_eq!(outcome.status, 202);
        assert_eq!(outcome.answer.unwrap().session, Some(5));
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /api/admin/chaos HTTP/1.1\r\n"));
        assert!(request.contains("Content-Type: application/json\r\n"));
        assert!(request.contains("Authorization: Bearer t0ken\r\n"));
        assert!(request.ends_with(r#"{"station":"main","actor":"listener","mode":"stop"}"#));
    }
}
