//! One GET of the issuer's small JSON documents (JWKS, OpenID Connect
//! metadata) over `http://` or `https://`.
//!
//! hyper's HTTP/1 client (already in the build for the server) on a fresh
//! connection per fetch: fetches are rare and rate bounded, so a pool would
//! only hold idle sockets. TLS is rustls on the `ring` provider, passed in
//! explicitly (no process-wide provider is installed), trusting the system's
//! root certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured) plus the
//! CAs of `security.auth.jwt.jwks_ca_file`. Certificates are always
//! verified. Redirects are not followed and no proxy is used.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chassis_core::config::InvalidValue;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest document accepted: key sets are a few KiB; a bigger answer is not one.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// Where to GET from: a checked absolute `http://` or `https://` URL.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    url: String,
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
    /// Not a 2xx answer.
    #[error("answered {status}{}", if status.is_redirection() { " (redirects are not followed: configure the URL it points to)" } else { "" })]
    Status { status: StatusCode },
    /// Longer than `security.auth.jwt.jwks_timeout`.
    #[error("no answer within {0:?} (security.auth.jwt.jwks_timeout)")]
    Timeout(Duration),
}

/// The client: TLS settings and the time a GET may take.
pub(crate) struct Fetcher {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl Fetcher {
    /// Trusts the system's roots and those of `ca_file`. `https_key` names
    /// the key of an `https://` URL the configuration holds: then a trust
    /// store without any root is an error now rather than at every fetch.
    pub(crate) fn new(
        ca_file: Option<&Path>,
        https_key: Option<&str>,
        timeout: Duration,
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
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
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
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|source| GetError::Connect {
                authority: target.authority.clone(),
                source,
            })?;
        // A latency-bound exchange of two small messages.
        let _ = tcp.set_nodelay(true);
        if !target.https {
            return exchange(tcp, target).await;
        }
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| GetError::Tls(std::io::Error::other(e)))?;
        let tls = self.tls.connect(name, tcp).await.map_err(handshake_error)?;
        exchange(tls, target).await
    }
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
async fn exchange<S>(io: S, target: &Target) -> Result<Bytes, GetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        // Its failure shows as the request's.
        let _ = connection.await;
    }));
    let request = Request::get(target.path.as_str())
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

    #[test]
    fn a_ca_file_that_is_not_pem_names_the_key_and_the_file() {
        let dir = std::env::temp_dir().join(format!("chassis-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = Fetcher::new(Some(&path), None, Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with(
                "security.auth.jwt.jwks_ca_file: expected a readable PEM file of CA certificates"
            ) && err.contains("no CERTIFICATE block"),
            "{err}"
        );
        let missing = dir.join("missing.pem");
        let err = Fetcher::new(Some(&missing), None, Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
