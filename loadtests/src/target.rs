//! The engine under test: a loopback `http://` base URL, checked before anything connects.
//!
//! The swarm only ever talks to this machine: the host must be `localhost`, an address
//! in 127.0.0.0/8 or `::1`, and every address a name resolves to must be loopback too.

use std::net::{IpAddr, SocketAddr};

/// Why a `--url` cannot be used as a target.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("URL {url:?} must start with http:// (the swarm derives ws:// from it)")]
    Scheme { url: String },
    #[error("URL {url:?} has no host")]
    MissingHost { url: String },
    #[error(
        "host {host:?} is not a loopback address: the swarm only targets localhost, 127.0.0.0/8 or [::1]"
    )]
    NotLoopback { host: String },
    #[error("port {port:?} in URL {url:?} is not a number from 1 to 65535")]
    Port { url: String, port: String },
    #[error(
        "URL {url:?} must not carry a path, query or credentials (found {rest:?}); give the base only"
    )]
    Path { url: String, rest: String },
    #[error("host {host:?} did not resolve: {reason}")]
    Resolve { host: String, reason: String },
    #[error("host {host:?} resolved to {addr}, which is not loopback")]
    ResolvedNotLoopback { host: String, addr: IpAddr },
}

/// A parsed, loopback-only base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    /// The host as written (`localhost`, `127.0.0.1`, `::1`), without brackets.
    pub host: String,
    pub port: u16,
}

impl TargetUrl {
    /// Parses `http://HOST[:PORT][/]`, refusing any host that is not loopback.
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| TargetError::Scheme {
                url: url.to_owned(),
            })?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if !(path.is_empty() || path == "/") || authority.contains('@') {
            return Err(TargetError::Path {
                url: url.to_owned(),
                rest: path.to_owned(),
            });
        }
        let (host, port) = split_host_port(authority, url)?;
        if host.is_empty() {
            return Err(TargetError::MissingHost {
                url: url.to_owned(),
            });
        }
        if !is_loopback_host(host) {
            return Err(TargetError::NotLoopback {
                host: host.to_owned(),
            });
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The value of the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Resolves the host once, checking that every address it names is loopback.
    pub async fn resolve(&self) -> Result<SocketAddr, TargetError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|error| TargetError::Resolve {
                host: self.host.clone(),
                reason: error.to_string(),
            })?
            .collect();
        if let Some(outside) = addrs.iter().find(|addr| !addr.ip().is_loopback()) {
            return Err(TargetError::ResolvedNotLoopback {
                host: self.host.clone(),
                addr: outside.ip(),
            });
        }
        // Prefer IPv4: the engine binds 127.0.0.1 by default.
        addrs
            .iter()
            .find(|addr| addr.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| TargetError::Resolve {
                host: self.host.clone(),
                reason: "no addresses".to_owned(),
            })
    }
}

fn split_host_port<'a>(authority: &'a str, url: &str) -> Result<(&'a str, u16), TargetError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(TargetError::MissingHost {
                url: url.to_owned(),
            });
        };
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => {
                return Err(TargetError::Port {
                    url: url.to_owned(),
                    port: text.to_owned(),
                });
            }
        },
    };
    Ok((host, port))
}

/// Whether `host` (without brackets) names this machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_accepted() {
        for (url, host, port) in [
            ("http://127.0.0.1:8080", "127.0.0.1", 8080),
            ("http://127.3.2.1:9/", "127.3.2.1", 9),
            ("http://localhost:8080/", "localhost", 8080),
            ("http://LOCALHOST", "LOCALHOST", 80),
            ("http://[::1]:8080", "::1", 8080),
        ] {
            let target = TargetUrl::parse(url).unwrap();
            assert_eq!(target.host, host, "{url}");
            assert_eq!(target.port, port, "{url}");
        }
    }

    #[test]
    fn other_hosts_are_refused() {
        for url in [
            "http://10.0.0.1:8080",
            "http://192.168.1.20",
            "http://8.8.8.8:80",
            "http://example.org:8080",
            "http://[::2]:8080",
            "http://128.0.0.1:8080",
            "http://0.0.0.0:8080",
        ] {
            assert!(
                matches!(TargetUrl::parse(url), Err(TargetError::NotLoopback { .. })),
                "{url} was not refused"
            );
        }
    }

    #[test]
    fn credentials_cannot_smuggle_another_host() {
        assert!(TargetUrl::parse("http://127.0.0.1@example.org:80").is_err());
        assert!(TargetUrl::parse("http://example.org#@127.0.0.1").is_err());
    }

    #[test]
    fn malformed_urls_are_refused_with_the_reason() {
        assert_eq!(
            TargetUrl::parse("https://127.0.0.1:8080"),
            Err(TargetError::Scheme {
                url: "https://127.0.0.1:8080".into()
            })
        );
        assert!(matches!(
            TargetUrl::parse("http://127.0.0.1:99999"),
            Err(TargetError::Port { .. })
        ));
        assert!(matches!(
            TargetUrl::parse("http://127.0.0.1:0"),
            Err(TargetError::Port { .. })
        ));
        assert!(matches!(
            TargetUrl::parse("http://127.0.0.1:8080/api"),
            Err(TargetError::Path { .. })
        ));
        assert!(matches!(
            TargetUrl::parse("http://:8080"),
            Err(TargetError::MissingHost { .. })
        ));
    }

    #[test]
    fn authority_brackets_ipv6_hosts() {
        assert_eq!(
            TargetUrl::parse("http://[::1]:81").unwrap().authority(),
            "[::1]:81"
        );
        assert_eq!(
            TargetUrl::parse("http://localhost:81").unwrap().authority(),
            "localhost:81"
        );
    }

    #[tokio::test]
    async fn localhost_resolves_to_a_loopback_address() {
        let addr = TargetUrl::parse("http://localhost:8080")
            .unwrap()
            .resolve()
            .await
            .unwrap();
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 8080);
    }
}
