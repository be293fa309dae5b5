//! Who may do what: bearer tokens (HS256 JWTs) carrying a role, the rule that maps a
//! request's method and path to the role it needs, and the per-address rate limit.
//!
//! Roles are ordered: `listener` < `operator` < `admin`; a token of a higher role may
//! do everything a lower one may. The rules ([`required_role`]):
//! - reads (GET, HEAD) of pages, `/metrics`, health, the station API and the listener
//!   streams are open, unless `[auth] require_listener_token` is set: then the streams
//!   and API reads need any valid token, which may also come as `?token=` (browsers
//!   cannot set headers on a WebSocket or an EventSource);
//! - every other method needs `operator`;
//! - `/api/admin/*`, `POST /api/stations` and `DELETE /api/stations/{id}` need `admin`.
//!
//! The signing secret comes from the environment variable `[auth] secret_env`, else
//! `[auth] secret`, else the file `[auth] secret_file` in the data directory, which the
//! first start writes with 32 random bytes (hex, mode 0600). `sonicforge token` reads
//! the same sources, so a token it prints is accepted by an engine on the same config
//! and data directory.

mod middleware;
mod rate_limit;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, Config};

pub use middleware::{enforce, reject_foreign_preflight};
pub use rate_limit::{RateDecision, RateLimiter};

/// Shortest signing secret accepted, in bytes (HS256 wants at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock difference tolerated when checking a token's expiry, in seconds.
const EXPIRY_LEEWAY_SECONDS: u64 = 30;

/// What a token allows, lowest first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Listen and read public station information.
    Listener,
    /// Change what stations play: playlists, swaps, skips, uploads.
    Operator,
    /// Everything, including chaos hooks and adding or removing stations.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Listener => "listener",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The claims of a SonicForge token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token was issued to (free text, for logs).
    pub sub: String,
    pub role: Role,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token was not accepted (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token is not a valid SonicForge token: {0}")]
    Malformed(String),
    #[error("cannot sign the token: {0}")]
    Signing(String),
}

/// Signs and checks tokens with one HS256 secret.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// Keys for `secret`, which must be at least [`MIN_SECRET_BYTES`] long.
    pub fn new(secret: &[u8]) -> Result<Self, AuthSetupError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthSetupError::SecretTooShort {
                source_name: "the given secret".into(),
                bytes: secret.len(),
            });
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = EXPIRY_LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = false;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// A token for `subject` with `role`, valid from now for `ttl`.
    pub fn issue(&self, role: Role, subject: &str, ttl: Duration) -> Result<String, TokenError> {
        let now = unix_now();
        self.sign(&Claims {
            sub: subject.to_string(),
            role,
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
        })
    }

    /// A token with exactly these claims (tests make expired ones with it).
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|error| TokenError::Signing(error.to_string()))
    }

    /// The claims of `token` when it is signed with this secret and not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(error) => Err(match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed(error.to_string()),
            }),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Why a token lifetime was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    #[error("`{0}` is not a lifetime: a whole number and a unit, like 90s, 30m, 1h or 7d")]
    Unparsable(String),
    #[error("`{0}` is zero; a token must live at least a second")]
    Zero(String),
    #[error("`{given}` is longer than the longest lifetime allowed, {max} (auth.max_token_ttl)")]
    TooLong { given: String, max: String },
}

/// Parses a lifetime like `90s`, `30m`, `1h` or `7d` (a whole number and one unit).
pub fn parse_ttl(text: &str) -> Result<Duration, TtlError> {
    let trimmed = text.trim();
    let unparsable = || TtlError::Unparsable(text.to_string());
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(unparsable)?;
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| unparsable())?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(unparsable()),
    };
    let seconds = number
        .checked_mul(seconds_per_unit)
        .ok_or_else(unparsable)?;
    if seconds == 0 {
        return Err(TtlError::Zero(text.to_string()));
    }
    Ok(Duration::from_secs(seconds))
}

/// A lifetime for `sonicforge token`: `requested` or the configured default, refused
/// over the configured maximum.
pub fn token_ttl(config: &AuthConfig, requested: Option<&str>) -> Result<Duration, TtlError> {
    let text = requested.unwrap_or(&config.default_token_ttl);
    let ttl = parse_ttl(text)?;
    let max = parse_ttl(&config.max_token_ttl)?;
    if ttl > max {
        return Err(TtlError::TooLong {
            given: text.to_string(),
            max: config.max_token_ttl.clone(),
        });
    }
    Ok(ttl)
}

/// Why the engine (or `sonicforge token`) has no signing secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(
        "the token signing secret from {source_name} is {bytes} bytes; at least {MIN_SECRET_BYTES} are needed"
    )]
    SecretTooShort { source_name: String, bytes: usize },
    #[error("cannot read the token signing secret from {path}: {source}")]
    ReadSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write a new token signing secret to {path}: {source}")]
    WriteSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a random token signing secret: {0}")]
    Random(String),
}

/// Where the secret came from, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Environment(String),
    Config,
    File { path: PathBuf, created: bool },
}

/// The signing secret of `config`: the environment variable, the config's `secret`, or
/// the secret file (made when missing). `lookup` reads the environment.
pub fn resolve_secret(
    config: &Config,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(Vec<u8>, SecretSource), AuthSetupError> {
    let auth = &config.auth;
    if let Some(secret) = lookup(&auth.secret_env) {
        let secret = secret.trim().as_bytes().to_vec();
        check_length(
            &secret,
            &format!("the environment variable {}", auth.secret_env),
        )?;
        return Ok((secret, SecretSource::Environment(auth.secret_env.clone())));
    }
    if let Some(secret) = &auth.secret {
        check_length(secret.as_bytes(), "[auth] secret")?;
        return Ok((secret.as_bytes().to_vec(), SecretSource::Config));
    }
    let path = config.server.data_dir.join(&auth.secret_file);
    let (secret, created) = read_or_create_secret_file(&path)?;
    Ok((secret, SecretSource::File { path, created }))
}

fn check_length(secret: &[u8], source_name: &str) -> Result<(), AuthSetupError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthSetupError::SecretTooShort {
            source_name: source_name.to_string(),
            bytes: secret.len(),
        });
    }
    Ok(())
}

/// Reads the secret file, or writes a new random secret there (mode 0600) when it does
/// not exist. Two processes racing to make it agree on whichever wrote first.
fn read_or_create_secret_file(path: &Path) -> Result<(Vec<u8>, bool), AuthSetupError> {
    use std::io::Write as _;
    let read = |path: &Path| -> Result<Vec<u8>, AuthSetupError> {
        let text = std::fs::read(path).map_err(|source| AuthSetupError::ReadSecret {
            path: path.to_path_buf(),
            source,
        })?;
        let secret = text.trim_ascii().to_vec();
        check_length(&secret, &path.display().to_string())?;
        Ok(secret)
    };
    if path.exists() {
        return Ok((read(path)?, false));
    }
    let write_error = |source| AuthSetupError::WriteSecret {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|error| AuthSetupError::Random(error.to_string()))?;
    let secret: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.sync_all())
                .map_err(write_error)?;
            Ok((secret.into_bytes(), true))
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok((read(path)?, false)),
        Err(error) => Err(write_error(error)),
    }
}

/// The role a request needs, by method and path; `None` when it is open to anyone.
pub fn required_role(
    method: &actix_web::http::Method,
    path: &str,
    require_listener_token: bool,
) -> Option<Role> {
    use actix_web::http::Method;
    let path = path.trim_end_matches('/');
    let is_read = method == Method::GET || method == Method::HEAD || method == Method::OPTIONS;
    if !is_read {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let admin = path == "/api/admin"
            || path.starts_with("/api/admin/")
            || (method == Method::POST && segments == ["api", "stations"])
            || (method == Method::DELETE
                && segments.len() == 3
                && segments[..2] == ["api", "stations"]);
        return Some(if admin { Role::Admin } else { Role::Operator });
    }
    if require_listener_token && (path.starts_with("/api/") || is_listener_stream(path)) {
        return Some(Role::Listener);
    }
    None
}

/// `/stations/{id}/ws` or `/stations/{id}/stream.opus`.
pub fn is_listener_stream(path: &str) -> bool {
    let mut segments = path.trim_end_matches('/').split('/').skip(1);
    matches!(
        (segments.next(), segments.next(), segments.next(), segments.next()),
        (Some("stations"), Some(id), Some("ws" | "stream.opus"), None) if !id.is_empty()
    )
}

/// Everything the access middleware needs, made once at start.
#[derive(Debug)]
pub struct Access {
    /// `None` when `[auth] enabled = false`: every route is open.
    pub keys: Option<TokenKeys>,
    pub require_listener_token: bool,
    /// `None` when `[limits] connections_per_second = 0`.
    pub rate_limiter: Option<RateLimiter>,
    pub rate_limit_exempt: Vec<std::net::IpAddr>,
    /// Origins allowed to call the API from a browser page.
    pub cors_origins: Vec<String>,
}

impl Access {
    /// The access rules of `config`, with the signing secret resolved from the
    /// environment (`lookup`), the config or the secret file.
    pub fn from_config(
        config: &Config,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, AuthSetupError> {
        let keys = if config.auth.enabled {
            let (secret, source) = resolve_secret(config, lookup)?;
            match &source {
                SecretSource::Environment(name) => {
                    tracing::info!(variable = %name, "token signing secret from the environment")
                }
                SecretSource::Config => tracing::info!("token signing secret from the config"),
                SecretSource::File { path, created } => tracing::info!(
                    path = %path.display(), created,
                    "token signing secret from the data directory"
                ),
            }
            Some(TokenKeys::new(&secret)?)
        } else {
            tracing::warn!("[auth] enabled = false: every route is open to anyone");
            None
        };
        let limits = &config.limits;
        Ok(Self {
            keys,
            require_listener_token: config.auth.require_listener_token,
            rate_limiter: (limits.connections_per_second > 0).then(|| {
                RateLimiter::new(
                    limits.connections_per_second,
                    limits.connection_burst,
                    limits.tracked_addresses as usize,
                )
            }),
            rate_limit_exempt: limits.rate_limit_exempt.clone(),
            cors_origins: limits.cors_origins.clone(),
        })
    }

    /// Whether `origin` may call the API from a browser page.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.cors_origins.iter().any(|allowed| allowed == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::Method;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn issued_token_verifies_with_its_role_and_subject() {
        let keys = TokenKeys::new(SECRET).unwrap();
        let token = keys
            .issue(Role::Operator, "console", Duration::from_secs(3600))
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.role, Role::Operator);
        assert_eq!(claims.sub, "console");
        assert_eq!(claims.exp - claims.iat, 3600);
    }

    #[test]
    fn expired_token_is_refused_as_expired() {
        let keys = TokenKeys::new(SECRET).unwrap();
        let now = unix_now();
        let token = keys
            .sign(&Claims {
                sub: "old".into(),
                role: Role::Admin,
                iat: now - 7200,
                exp: now - 3600,
            })
            .unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn token_of_another_secret_has_a_bad_signature() {
        let other = TokenKeys::new(b"another secret of at least 32 bytes!").unwrap();
        let token = other
            .issue(Role::Admin, "intruder", Duration::from_secs(60))
            .unwrap();
        let keys = TokenKeys::new(SECRET).unwrap();
        assert_eq!(keys.verify(&token), Err(TokenError::BadSignature));
    }

    #[test]
    fn garbage_and_unknown_roles_are_malformed() {
        let keys = TokenKeys::new(SECRET).unwrap();
        for token in ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
            assert!(
                matches!(keys.verify(token), Err(TokenError::Malformed(_))),
                "{token}"
            );
        }
        #[derive(Serialize)]
        struct Odd {
            sub: &'static str,
            role: &'static str,
            iat: u64,
            exp: u64,
        }
        let odd = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Odd {
                sub: "x",
                role: "superuser",
                iat: unix_now(),
                exp: unix_now() + 60,
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(matches!(keys.verify(&odd), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn token_signed_with_another_algorithm_is_refused() {
        let keys = TokenKeys::new(SECRET).unwrap();
        let now = unix_now();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "x".into(),
                role: Role::Admin,
                iat: now,
                exp: now + 60,
            },
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(keys.verify(&token).is_err());
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(matches!(
            TokenKeys::new(b"short"),
            Err(AuthSetupError::SecretTooShort { bytes: 5, .. })
        ));
    }

    #[test]
    fn ttl_units_parse() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl(" 7d "), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn bad_ttls_are_refused_with_the_text() {
        for text in [
            "",
            "h",
            "1",
            "1w",
            "1.5h",
            "-1h",
            "1 h",
            "99999999999999999999d",
        ] {
            assert!(
                matches!(parse_ttl(text), Err(TtlError::Unparsable(ref t)) if t == text),
                "{text}"
            );
        }
        assert_eq!(parse_ttl("0s"), Err(TtlError::Zero("0s".into())));
    }

    #[test]
    fn ttl_over_the_maximum_is_refused() {
        let config = AuthConfig {
            max_token_ttl: "2h".into(),
            ..AuthConfig::default()
        };
        assert_eq!(
            token_ttl(&config, None),
            Ok(Duration::from_secs(3600)),
            "the default"
        );
        assert_eq!(
            token_ttl(&config, Some("2h")),
            Ok(Duration::from_secs(7200))
        );
        assert!(matches!(
            token_ttl(&config, Some("121m")),
            Err(TtlError::TooLong { .. })
        ));
    }

    #[test]
    fn roles_by_method_and_path() {
        let open = |method: Method, path: &str| required_role(&method, path, false);
        assert_eq!(open(Method::GET, "/api/stations"), None);
        assert_eq!(open(Method::GET, "/stations/main/ws"), None);
        assert_eq!(open(Method::GET, "/metrics"), None);
        assert_eq!(open(Method::POST, "/api/playlists"), Some(Role::Operator));
        assert_eq!(
            open(Method::PUT, "/api/stations/main/playlist"),
            Some(Role::Operator)
        );
        assert_eq!(open(Method::POST, "/api/admin/chaos"), Some(Role::Admin));
        assert_eq!(open(Method::POST, "/api/stations"), Some(Role::Admin));
        assert_eq!(open(Method::POST, "/api/stations/"), Some(Role::Admin));
        assert_eq!(
            open(Method::DELETE, "/api/stations/main"),
            Some(Role::Admin)
        );
        assert_eq!(
            open(Method::DELETE, "/api/stations/main/queue"),
            Some(Role::Operator)
        );
        assert_eq!(
            open(Method::POST, "/api/stations/main/stop"),
            Some(Role::Operator)
        );
        assert_eq!(open(Method::POST, "/somewhere"), Some(Role::Operator));
        let closed = |method: Method, path: &str| required_role(&method, path, true);
        assert_eq!(closed(Method::GET, "/api/stations"), Some(Role::Listener));
        assert_eq!(
            closed(Method::GET, "/stations/main/stream.opus"),
            Some(Role::Listener)
        );
        assert_eq!(closed(Method::GET, "/stations/main"), None);
        assert_eq!(closed(Method::GET, "/healthz"), None);
        assert_eq!(closed(Method::POST, "/api/admin/chaos"), Some(Role::Admin));
    }

    #[test]
    fn secret_file_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None).unwrap();
        config.server.data_dir = dir.path().join("data");
        let (first, source) = resolve_secret(&config, |_| None).unwrap();
        assert!(matches!(source, SecretSource::File { created: true, .. }));
        assert_eq!(first.len(), 64);
        let (second, source) = resolve_secret(&config, |_| None).unwrap();
        assert!(matches!(source, SecretSource::File { created: false, .. }));
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("data/jwt-secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn environment_wins_and_must_be_long_enough() {
        let mut config = Config::load(None).unwrap();
        config.auth.secret = Some("c".repeat(40));
        let (secret, source) = resolve_secret(&config, |key| {
            (key == "SONICFORGE_JWT_SECRET").then(|| "e".repeat(32))
        })
        .unwrap();
        assert_eq!(secret, "e".repeat(32).into_bytes());
        assert_eq!(
            source,
            SecretSource::Environment("SONICFORGE_JWT_SECRET".into())
        );
        let error = resolve_secret(&config, |_| Some("short".into())).unwrap_err();
        assert!(
            error.to_string().contains("SONICFORGE_JWT_SECRET"),
            "{error}"
        );
        let (secret, source) = resolve_secret(&config, |_| None).unwrap();
        assert_eq!(secret, "c".repeat(40).into_bytes());
        assert_eq!(source, SecretSource::Config);
    }
}
