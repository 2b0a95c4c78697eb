//! The server to drive, and the rule that it is on this machine.
//!
//! Load is only ever sent to a loopback address (127.0.0.0/8 or `[::1]`): the machines
//! this runs on forbid traffic anywhere else. `--url` is checked here before any request
//! is made, a `localhost` name is resolved once and replaced by its loopback address,
//! and the HTTP client is built without proxies or redirects (see `phase::client`), so
//! nothing can send a request elsewhere behind the user's back.

use std::net::{IpAddr, SocketAddr};

use reqwest::Url;

/// A checked `--url`: where to send requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A loopback IP address and port.
    Addr(SocketAddr),
    /// `localhost` and a port, still to be resolved (to loopback addresses only).
    Localhost(u16),
}

/// Parses `--url`: `http://` plus a loopback host and optional port, nothing else.
pub fn parse(raw: &str) -> Result<Target, String> {
    let url = Url::parse(raw).map_err(|e| format!("--url {raw:?} is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "--url {raw:?}: only http:// is supported (the server speaks plain HTTP)"
        ));
    }
    if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
        return Err(format!(
            "--url {raw:?}: give the server's origin only, like http://127.0.0.1:8080 \
             (the bench adds the paths)"
        ));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let refuse = || {
        Err(format!(
            "--url {raw:?} is not a loopback address; this bench only sends traffic to \
             this machine (127.0.0.0/8, [::1] or localhost)"
        ))
    };
    let host = url.host_str().unwrap_or_default();
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>();
    match ip {
        Ok(ip) if ip.is_loopback() => Ok(Target::Addr(SocketAddr::new(ip, port))),
        Err(_) if host.eq_ignore_ascii_case("localhost") => Ok(Target::Localhost(port)),
        _ => refuse(),
    }
}

/// The loopback socket address of `target`: `localhost` must resolve to loopback
/// addresses only.
pub async fn resolve(target: &Target) -> Result<SocketAddr, String> {
    match target {
        Target::Addr(addr) => Ok(*addr),
        Target::Localhost(port) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(("localhost", *port))
                .await
                .map_err(|e| format!("cannot resolve localhost: {e}"))?
                .collect();
            if let Some(other) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                return Err(format!(
                    "localhost resolves to {other}, which is not a loopback address; \
                     pass --url http://127.0.0.1:PORT instead"
                ));
            }
            addrs
                .first()
                .copied()
                .ok_or_else(|| "localhost resolves to no address".to_string())
        }
    }
}

/// The base URL of the server at `addr`, without a trailing slash: `http://127.0.0.1:8080`.
pub fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The address announced by `adledger serve` in its line
/// `adledger listening on http://ADDR`, if that address is loopback.
pub fn announced_addr(line: &str) -> Result<SocketAddr, String> {
    let addr = line
        .trim()
        .strip_prefix("adledger listening on http://")
        .ok_or_else(|| {
            format!("the server's first line is not `adledger listening on http://ADDR`: {line:?}")
        })?;
    let addr: SocketAddr = addr
        .trim_end_matches('/')
        .parse()
        .map_err(|e| format!("the server announced {addr:?}, not an IP address and port: {e}"))?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(format!(
            "the server announced {addr}, which is not a loopback address"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_accepted() {
        assert_eq!(
            parse("http://127.0.0.1:8080"),
            Ok(Target::Addr("127.0.0.1:8080".parse().expect("addr")))
        );
        assert_eq!(
            parse("http://127.1.2.3:9/"),
            Ok(Target::Addr("127.1.2.3:9".parse().expect("addr")))
        );
        assert_eq!(
            parse("http://[::1]:8080"),
            Ok(Target::Addr("[::1]:8080".parse().expect("addr")))
        );
        assert_eq!(parse("http://LOCALHOST:81"), Ok(Target::Localhost(81)));
        assert_eq!(
            parse("http://127.0.0.1"),
            Ok(Target::Addr("127.0.0.1:80".parse().expect("addr")))
        );
    }

    #[test]
    fn other_hosts_are_refused() {
        for url in [
            "http://10.0.0.1:8080",
            "http://192.168.1.1",
            "http://0.0.0.0:8080",
            "http://example.com",
            "http://localhost.example.com",
            "http://[::2]:80",
        ] {
            let error = parse(url).expect_err(url);
            assert!(error.contains("not a loopback address"), "{error}");
        }
        assert!(parse("https://127.0.0.1:8443").is_err());
        assert!(parse("http://127.0.0.1:8080/search").is_err());
        assert!(parse("127.0.0.1:8080").is_err());
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback() {
        let addr = resolve(&Target::Localhost(8080)).await.expect("localhost");
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 8080);
    }

    #[test]
    fn the_announcement_is_parsed() {
        assert_eq!(
            announced_addr("adledger listening on http://127.0.0.1:4321\n"),
            Ok("127.0.0.1:4321".parse().expect("addr"))
        );
        assert!(announced_addr("listening on 127.0.0.1:1").is_err());
        assert!(announced_addr("adledger listening on http://10.1.1.1:80").is_err());
        assert_eq!(
            base_url("[::1]:80".parse().expect("addr")),
            "http://[::1]:80"
        );
    }
}
