//! One GET of the issuer's small JSON documents (JWKS, OpenID Connect
//! metadata) over `http://` or `https://`.
//!
//! hyper's HTTP/1 client (already in the build for the server) on a fresh
//! connection per fetch: fetches are rare and rate bounded, so a pool would
//! only hold idle sockets. TLS is rustls on the `ring` provider, passed in
//! explicitly (no process-wide provider is installed), trusting the system's
//! root certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured) plus the
//! CAs of `security.auth.jwt.jwks_ca_file`. Certificates are always
//! verified. Redirects are not followed.
//!
//! The proxy is chosen as curl and reqwest choose it: `HTTPS_PROXY` for
//! `https://` URLs, `HTTP_PROXY` for `http://` ones, `ALL_PROXY` for both,
//! none for a host `NO_PROXY` lists (lower-case forms too), parsed once by
//! hyper-util's [`Matcher`]. An `https://` issuer is reached through an HTTP
//! `CONNECT` tunnel (hyper-util's [`Tunnel`]) and its certificate checked
//! against its own name; an `http://` one by an absolute-form request to the
//! proxy. Credentials in the proxy URL (`http://user:pass@proxy:3128`) go in
//! `Proxy-Authorization` and are never logged. Only `http://` proxies.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chassis_core::config::InvalidValue;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::EnvVars;

/// Largest document accepted: key sets are a few KiB; a bigger answer is not one.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// Where to GET from: a checked absolute `http://` or `https://` URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    url: String,
    /// The parsed URL (the proxy's choice, the absolute form through one).
    uri: Uri,
    https: bool,
    /// Host name or IP address, without the brackets of an IPv6 literal.
    host: String,
    port: u16,
    /// `host[:port]`, for the `Host` header.
    authority: String,
    /// Path and query (origin form).
    path: String,
}

impl Target {
    /// Parses `url`; the error says what was expected (the caller names the key).
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not an absolute URL ({e})"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => return Err(format!("`{url}` has the scheme `{other}`")),
            None => return Err(format!("`{url}` is not an absolute URL (no scheme)")),
        };
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| format!("`{url}` names no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{url}` holds credentials (user@host)"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if https && ServerName::try_from(host.clone()).is_err() {
            return Err(format!("`{url}`: `{host}` is not a valid TLS server name"));
        }
        Ok(Self {
            url: url.to_owned(),
            uri: uri.clone(),
            https,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            host,
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// Whether the URL is `https://`.
    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// The URL as configured or discovered.
    pub(crate) fn as_str(&self) -> &str {
        &self.url
    }
}

/// Why a GET failed (the caller adds the URL).
#[derive(Debug, thiserror::Error)]
pub(crate) enum GetError {
    /// No TCP connection.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    /// The server's certificate is not trusted for this host name.
    #[error(
        "the server's certificate is not trusted ({reason}); rustls checked it against the \
         system's root certificates (SSL_CERT_FILE / SSL_CERT_DIR) and \
         security.auth.jwt.jwks_ca_file: add the issuer's CA to one of them"
    )]
    Certificate { reason: rustls::Error },
    /// The TLS handshake failed for another reason.
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The answer's body could not be read, or was too large.
    #[error("reading the answer: {0}")]
    Body(String),
    /// The proxy could not be used (no `CONNECT` tunnel, an unsupported scheme).
    #[error(
        "through the proxy {proxy} (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY; NO_PROXY bypasses \
         it): {reason}"
    )]
    Proxy { proxy: String, reason: String },
    /// Not a 2xx answer.
    #[error("answered {status}{}", if status.is_redirection() { " (redirects are not followed: configure the URL it points to)" } else { "" })]
    Status { status: StatusCode },
    /// Longer than `security.auth.jwt.jwks_timeout`.
    #[error("no answer within {0:?} (security.auth.jwt.jwks_timeout)")]
    Timeout(Duration),
}

/// The client: TLS settings, the proxy rules and the time a GET may take.
pub(crate) struct Fetcher {
    tls: tokio_rustls::TlsConnector,
    proxy: Matcher,
    timeout: Duration,
}

/// The proxy rules of `env` (`None`: the process environment), read once.
pub(crate) fn proxy_matcher(env: EnvVars<'_>) -> Matcher {
    let Some(env) = env else {
        return Matcher::from_env();
    };
    // As `Matcher::from_env`: a CGI script's `HTTP_PROXY` may come from a
    // request header (httpoxy), so no proxy there.
    if env.contains_key("REQUEST_METHOD") {
        return Matcher::builder().build();
    }
    let var = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|name| env.get(*name))
            .cloned()
            .unwrap_or_default()
    };
    Matcher::builder()
        .all(var(["ALL_PROXY", "all_proxy"]))
        .http(var(["HTTP_PROXY", "http_proxy"]))
        .https(var(["HTTPS_PROXY", "https_proxy"]))
        .no(var(["NO_PROXY", "no_proxy"]))
        .build()
}

impl Fetcher {
    /// Trusts the system's roots and those of `ca_file`. `https_key` names
    /// the key of an `https://` URL the configuration holds: then a trust
    /// store without any root is an error now rather than at every fetch.
    /// `proxy`: the rules of [`proxy_matcher`].
    pub(crate) fn new(
        ca_file: Option<&Path>,
        https_key: Option<&str>,
        timeout: Duration,
        proxy: Matcher,
    ) -> Result<Self, InvalidValue> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (_, unusable) = roots.add_parsable_certificates(native.certs);
        if unusable > 0 {
            tracing::debug!(
                unusable,
                "some of the system's root certificates are not usable by rustls"
            );
        }
        if let Some(path) = ca_file {
            let ca_key = "security.auth.jwt.jwks_ca_file";
            let expected = "a readable PEM file of CA certificates";
            let found = |what: String| format!("`{}` ({what})", path.display());
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| InvalidValue::new(ca_key, expected).found(found(e.to_string())))?;
            if certs.is_empty() {
                return Err(
                    InvalidValue::new(ca_key, expected).found(found("no CERTIFICATE block".into()))
                );
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    InvalidValue::new(ca_key, expected).found(found(format!("a certificate: {e}")))
                })?;
            }
        }
        if let Some(key) = https_key
            && roots.is_empty()
        {
            let why = native
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            return Err(InvalidValue::new(
                key,
                format!(
                    "an https:// URL whose certificate can be checked: no trusted root \
                     certificate was found{why}; install the system's CA certificates \
                     (ca-certificates), set SSL_CERT_FILE, or set security.auth.jwt.jwks_ca_file"
                ),
            ));
        }
        // `ring`, the one crypto backend of the build (async-nats' TLS);
        // rustls deprecates it only for lacking post-quantum key exchange,
        // which aws-lc-rs would bring at the cost of a C/CMake build.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| {
                InvalidValue::new("security.auth.jwt", format!("a usable TLS setup ({e})"))
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // The matcher's Debug shows the proxies without their credentials.
        tracing::debug!(?proxy, "proxy rules for fetching the issuer's keys");
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            proxy,
            timeout,
        })
    }

    /// The body of a 2xx answer to `GET target`, within the timeout.
    pub(crate) async fn get(&self, target: &Target) -> Result<Bytes, GetError> {
        tokio::time::timeout(self.timeout, self.get_unbounded(target))
            .await
            .map_err(|_| GetError::Timeout(self.timeout))?
    }

    async fn get_unbounded(&self, target: &Target) -> Result<Bytes, GetError> {
        let proxy = self.proxy.intercept(&target.uri);
        let tcp = match &proxy {
            None => connect(&target.host, target.port, || target.authority.clone()).await?,
            Some(proxy) => {
                let (host, port) = proxy_address(proxy)?;
                if target.https {
                    tunnel(proxy, target).await?
                } else {
                    connect(&host, port, || format!("the proxy {}", shown(proxy))).await?
                }
            }
        };
        // A latency-bound exchange of two small messages.
        let _ = tcp.set_nodelay(true);
        if !target.https {
            // Through a proxy: the absolute form, and its credentials.
            let via = proxy.as_ref().map(|p| p.basic_auth().cloned());
            return exchange(tcp, target, via).await;
        }
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| GetError::Tls(std::io::Error::other(e)))?;
        let tls = self.tls.connect(name, tcp).await.map_err(handshake_error)?;
        exchange(tls, target, None).await
    }
}

/// A TCP connection to `host:port`; `authority` names it in the error.
async fn connect(
    host: &str,
    port: u16,
    authority: impl FnOnce() -> String,
) -> Result<TcpStream, GetError> {
    TcpStream::connect((host, port))
        .await
        .map_err(|source| GetError::Connect {
            authority: authority(),
            source,
        })
}

/// The proxy as `scheme://host:port` (its URI never holds the credentials).
fn shown(proxy: &Intercept) -> String {
    let uri = proxy.uri();
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str())
    )
}

/// The host and port of an `http://` proxy; other schemes are refused.
fn proxy_address(proxy: &Intercept) -> Result<(String, u16), GetError> {
    let uri = proxy.uri();
    let refuse = |reason: &str| GetError::Proxy {
        proxy: shown(proxy),
        reason: reason.to_owned(),
    };
    if uri.scheme_str() != Some("http") {
        return Err(refuse(
            "only http:// proxies are supported (not https:// or socks)",
        ));
    }
    let host = uri.host().ok_or_else(|| refuse("it names no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok((host, uri.port_u16().unwrap_or(80)))
}

/// A `CONNECT` tunnel through `proxy` to the target's host and port.
async fn tunnel(proxy: &Intercept, target: &Target) -> Result<TcpStream, GetError> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let mut tunnel = Tunnel::new(proxy.uri().clone(), connector);
    if let Some(auth) = proxy.basic_auth() {
        tunnel = tunnel.with_auth(auth.clone());
    }
    let io = tower::ServiceExt::oneshot(tunnel, target.uri.clone())
        .await
        .map_err(|e| GetError::Proxy {
            proxy: shown(proxy),
            reason: error_chain(&e),
        })?;
    Ok(io.into_inner())
}

/// An error and its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// A certificate refusal on its own; anything else as it came.
fn handshake_error(error: std::io::Error) -> GetError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(
            reason
            @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented),
        ) => GetError::Certificate {
            reason: reason.clone(),
        },
        _ => GetError::Tls(error),
    }
}

/// Aborts the connection task when the exchange ends or is dropped (timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// GET over an open connection; the body, capped at [`MAX_DOCUMENT`].
/// `via`: sent to an HTTP proxy, with its `Proxy-Authorization` if any.
async fn exchange<S>(
    io: S,
    target: &Target,
    via: Option<Option<HeaderValue>>,
) -> Result<Bytes, GetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        // Its failure shows as the request's.
        let _ = connection.await;
    }));
    let mut request = match &via {
        None => Request::get(target.path.as_str()),
        Some(_) => Request::get(target.uri.clone()),
    };
    if let Some(Some(auth)) = via {
        request = request.header(header::PROXY_AUTHORIZATION, auth);
    }
    let request = request
        .header(header::HOST, target.authority.as_str())
        .header(header::ACCEPT, "application/json")
        .header(header::CONNECTION, "close")
        .header(
            header::USER_AGENT,
            concat!("chassis-web/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| GetError::Body(format!("cannot build the request: {e}")))?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        return Err(GetError::Status {
            status: response.status(),
        });
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT)
        .collect()
        .await
        .map_err(|e| GetError::Body(e.to_string()))?;
    Ok(body.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_absolute_http_or_https_urls() {
        let t = Target::parse(" https://login.example:8443/tenant/keys?v=2 ").unwrap();
        assert!(t.is_https());
        assert_eq!((t.host.as_str(), t.port), ("login.example", 8443));
        assert_eq!(t.authority, "login.example:8443");
        assert_eq!(t.path, "/tenant/keys?v=2");
        let t = Target::parse("http://[::1]/keys").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.is_https()), ("::1", 80, false));
        assert_eq!(Target::parse("https://issuer.example").unwrap().path, "/");
        assert_eq!(Target::parse("https://issuer.example").unwrap().port, 443);
        for (bad, why) in [
            ("not a url", "not an absolute URL"),
            ("issuer.example/keys", "not an absolute URL"),
            ("ftp://issuer.example/keys", "scheme `ftp`"),
            ("https://user:pw@issuer.example/keys", "credentials"),
        ] {
            let err = Target::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn env(vars: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_proxy_is_chosen_from_the_given_variables_as_curl_does() {
        let https = Target::parse("https://login.example/keys").unwrap();
        let http = Target::parse("http://login.example/keys").unwrap();
        let rules = proxy_matcher(Some(&env(&[
            ("https_proxy", "http://user:pw@egress:3128"),
            ("HTTP_PROXY", "plain:8080"),
        ])));
        let proxy = rules.intercept(&https.uri).unwrap();
        assert_eq!(shown(&proxy), "http://egress:3128");
        assert!(proxy.basic_auth().is_some());
        assert_eq!(proxy_address(&proxy).unwrap(), ("egress".to_owned(), 3128));
        // The credentials are not in the rules' Debug (it is logged).
        assert!(!format!("{rules:?}").contains("pw"), "{rules:?}");
        let proxy = rules.intercept(&http.uri).unwrap();
        assert_eq!(shown(&proxy), "http://plain:8080");
        assert!(proxy.basic_auth().is_none());
        // NO_PROXY: a domain covers its subdomains.
        let rules = proxy_matcher(Some(&env(&[
            ("ALL_PROXY", "http://egress:3128"),
            ("no_proxy", "other.example, example"),
        ])));
        assert!(rules.intercept(&https.uri).is_none());
        // A CGI script's HTTP_PROXY may come from a request (httpoxy).
        let rules = proxy_matcher(Some(&env(&[
            ("HTTPS_PROXY", "http://egress:3128"),
            ("REQUEST_METHOD", "GET"),
        ])));
        assert!(rules.intercept(&https.uri).is_none());
        assert!(
            proxy_matcher(Some(&env(&[])))
                .intercept(&https.uri)
                .is_none()
        );
    }

    #[test]
    fn only_http_proxies_are_used() {
        let https = Target::parse("https://login.example/keys").unwrap();
        for proxy in ["socks5://egress:1080", "https://egress:3129"] {
            let rules = proxy_matcher(Some(&env(&[("HTTPS_PROXY", proxy)])));
            let err = proxy_address(&rules.intercept(&https.uri).unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("through the proxy {proxy}"))
                    && err.contains("only http:// proxies"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn a_proxy_that_cannot_be_reached_is_named_with_the_cause() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let proxy = format!("http://127.0.0.1:{port}");
        let rules = proxy_matcher(Some(&env(&[("HTTPS_PROXY", proxy.as_str())])));
        let fetcher = Fetcher::new(None, None, Duration::from_secs(5), rules).unwrap();
        let target = Target::parse("https://login.example/keys").unwrap();
        let err = fetcher.get(&target).await.unwrap_err();
        assert!(matches!(err, GetError::Proxy { .. }), "{err:?}");
        let err = err.to_string();
        assert!(
            err.starts_with(&format!("through the proxy {proxy}"))
                && err.contains("failed to create underlying connection"),
            "{err}"
        );
    }

    #[test]
    fn a_ca_file_that_is_not_pem_names_the_key_and_the_file() {
        let dir = std::env::temp_dir().join(format!("chassis-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let refusal = |path: &Path| {
            let no_proxy = Matcher::builder().build();
            Fetcher::new(Some(path), None, Duration::from_secs(1), no_proxy)
                .err()
                .unwrap()
                .to_string()
        };
        let err = refusal(&path);
        assert!(
            err.starts_with(
                "security.auth.jwt.jwks_ca_file: expected a readable PEM file of CA certificates"
            ) && err.contains("no CERTIFICATE block"),
            "{err}"
        );
        let missing = dir.join("missing.pem");
        let err = refusal(&missing);
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
