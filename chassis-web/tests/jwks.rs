//! Bearer tokens checked against the issuer's keys fetched over http and
//! https (`security.auth.jwt.jwks_url` / `discovery`), with a local issuer
//! (an axum server, behind rustls with a CA made here for https) that
//! rotates its key, and a local forward proxy in front of it.
#![cfg(feature = "jwks")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chassis_web::security::Principal;
use chassis_web::{RunningService, StartupError};
use common::{TempDir, client, isolated};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RSA_PRIVATE: &str = include_str!("keys/rsa_private.pem");
const RSA_OTHER_PRIVATE: &str = include_str!("keys/rsa_other_private.pem");

/// A token issuer: OpenID Connect metadata and a JWKS that can change.
#[derive(Clone, Default)]
struct Issuer {
    url: Arc<Mutex<String>>,
    keys: Arc<Mutex<JwkSet>>,
    discoveries: Arc<AtomicUsize>,
    fetches: Arc<AtomicUsize>,
}

/// A CA made for one test, and a certificate it signed for `localhost`.
struct TestCa {
    ca_pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl TestCa {
    fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        // The same `ring` provider as the service's client (no process default).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![server.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        Self {
            ca_pem: ca.pem(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        }
    }
}

impl Issuer {
    async fn start() -> Self {
        Self::serve(None).await
    }

    /// The issuer at `https://localhost:<port>`, its certificate from `ca`.
    async fn start_https(ca: &TestCa) -> Self {
        Self::serve(Some(ca.acceptor.clone())).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let issuer = Issuer::default();
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(issuer): State<Issuer>| async move {
                    issuer.discoveries.fetch_add(1, Ordering::SeqCst);
                    let url = issuer.url();
                    axum::Json(json!({ "issuer": url, "jwks_uri": format!("{url}/keys") }))
                }),
            )
            .route(
                "/keys",
                get(|State(issuer): State<Issuer>| async move {
                    issuer.fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = issuer.keys.lock().unwrap().clone();
                    axum::Json(keys)
                }),
            )
            .with_state(issuer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let Some(acceptor) = tls else {
            *issuer.url.lock().unwrap() = format!("http://127.0.0.1:{port}");
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            return issuer;
        };
        *issuer.url.lock().unwrap() = format!("https://localhost:{port}");
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends
                    // the handshake: nothing is served.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(tls),
                            hyper_util::service::TowerToHyperService::new(app),
                        )
                        .await;
                });
            }
        });
        issuer
    }

    fn url(&self) -> String {
        self.url.lock().unwrap().clone()
    }

    /// Publishes exactly these keys (`kid`, private key PEM).
    fn publish(&self, keys: &[(&str, &str)]) {
        let keys = keys
            .iter()
            .map(|(kid, pem)| {
                let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
                let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
                jwk.common.key_id = Some((*kid).into());
                jwk
            })
            .collect();
        *self.keys.lock().unwrap() = JwkSet { keys };
    }

    fn token(&self, kid: &str, pem: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let claims = json!({ "sub": "user-7", "iss": self.url(), "exp": now + 300 });
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.discoveries.load(Ordering::SeqCst),
            self.fetches.load(Ordering::SeqCst),
        )
    }
}

/// A forward proxy: `CONNECT host:port` opens a tunnel, an absolute-form
/// request is relayed to its host; it keeps the head of every request.
struct Proxy {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                tokio::spawn(Self::relay(client, kept.clone()));
            }
        });
        Self { url, heads }
    }

    async fn relay(mut client: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
        // The head byte by byte: what follows it is the tunnel's or the body's.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let Ok(byte) = client.read_u8().await else {
                return;
            };
            head.push(byte);
        }
        let text = String::from_utf8(head.clone()).unwrap();
        heads.lock().unwrap().push(text.clone());
        let target = text.split(' ').nth(1).unwrap();
        let connect = text.starts_with("CONNECT ");
        let authority = if connect {
            target.to_owned()
        } else {
            let uri: http::Uri = target.parse().unwrap();
            uri.authority().unwrap().to_string()
        };
        let Ok(mut upstream) = TcpStream::connect(authority.as_str()).await else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
            return;
        };
        let sent = if connect {
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
        } else {
            upstream.write_all(&head).await
        };
        if sent.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Every log line of this binary's tests (a global subscriber, set before
/// any service starts: a scoped one misses events whose callsites another
/// test's thread registered first).
fn logs() -> &'static common::Capture {
    static CAPTURE: OnceLock<common::Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = common::Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(capture.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        capture
    })
}

async fn try_start(dir: &TempDir, jwt: &[(&str, Value)]) -> Result<RunningService, StartupError> {
    try_start_in(dir, jwt, &[]).await
}

/// With these variables as the service's environment (proxy settings).
async fn try_start_in(
    dir: &TempDir,
    jwt: &[(&str, Value)],
    env: &[(&str, &str)],
) -> Result<RunningService, StartupError> {
    logs();
    let mut builder = isolated("jwks-test", dir)
        .env_vars(env.iter().copied())
        .config("security.auth.enabled", true)
        .config("security.auth.jwt.algorithm", "RS256")
        .routes(|_| {
            Router::new().route(
                "/whoami",
                get(|principal: Principal| async move { principal.id }),
            )
        });
    for (key, value) in jwt {
        let key = format!("security.auth.jwt.{key}");
        builder = match value {
            Value::Bool(b) => builder.config(&key, *b),
            Value::String(s) => builder.config(&key, s.as_str()),
            other => panic!("unsupported setting {other}"),
        };
    }
    builder.start().await
}

async fn call(service: &RunningService, token: &str) -> StatusCode {
    client()
        .get(format!("{}/whoami", service.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn discovered_keys_follow_a_rotation_without_a_refetch_storm() {
    let issuer = Issuer::start().await;
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let dir = TempDir::new();
    let service = try_start(
        &dir,
        &[
            ("discovery", json!(true)),
            ("issuer", json!(issuer.url())),
            ("jwks_refresh_min_interval", json!("3s")),
        ],
    )
    .await
    .unwrap();
    // Fetched at start-up: discovery, then the key set.
    assert_eq!(issuer.counts(), (1, 1));
    let k1 = issuer.token("k1", RSA_PRIVATE);
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    assert_eq!(issuer.counts(), (1, 1), "served from the keys held");

    // The issuer rotates: k2 replaces k1.
    issuer.publish(&[("k2", RSA_OTHER_PRIVATE)]);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // A burst of tokens naming keys nobody has: one fetch, not fifty.
    let bogus: Vec<_> = (0..50)
        .map(|i| issuer.token(&format!("made-up-{i}"), RSA_OTHER_PRIVATE))
        .collect();
    let answers = futures::future::join_all(bogus.iter().map(|t| call(&service, t))).await;
    assert!(answers.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    assert_eq!(issuer.counts(), (1, 2), "one refetch for the whole burst");
    // That fetch brought k2: tokens of the new key pass, the old key's fail.
    let k2 = issuer.token("k2", RSA_OTHER_PRIVATE);
    assert_eq!(call(&service, &k2).await, StatusCode::OK);
    assert_eq!(call(&service, &k1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.counts(), (1, 2), "within the interval: no fetch");
    // A token signed by a key the JWKS does not hold under that kid fails
    // its signature check, whatever it names.
    let forged = issuer.token("k2", RSA_PRIVATE);
    assert_eq!(call(&service, &forged).await, StatusCode::UNAUTHORIZED);
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_jwks_url_is_fetched_on_an_unknown_kid_and_when_the_issuer_was_down_at_start() {
    let issuer = Issuer::start().await;
    // Nothing usable at start-up: the service starts, tokens wait for keys.
    issuer.publish(&[]);
    let dir = TempDir::new();
    let service = try_start(
        &dir,
        &[
            ("jwks_url", json!(format!("{}/keys", issuer.url()))),
            ("jwks_refresh_min_interval", json!("2s")),
        ],
    )
    .await
    .unwrap();
    // The failed fetch happened before `start` returned.
    let started = Instant::now();
    assert_eq!(issuer.counts(), (0, 1));
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let k1 = issuer.token("k1", RSA_PRIVATE);
    // Too soon after the failed fetch: refused, not fetched (on a machine
    // slow enough to take the whole interval, a fetch is allowed again).
    let status = call(&service, &k1).await;
    if started.elapsed() < Duration::from_millis(1900) {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(issuer.counts(), (0, 1));
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    assert_eq!(
        issuer.counts(),
        (0, 2),
        "one more fetch, for the unknown kid"
    );

    // Rotation with both keys published for a while (the usual overlap).
    issuer.publish(&[("k1", RSA_PRIVATE), ("k2", RSA_OTHER_PRIVATE)]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let k2 = issuer.token("k2", RSA_OTHER_PRIVATE);
    assert_eq!(call(&service, &k2).await, StatusCode::OK);
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    assert_eq!(issuer.counts(), (0, 3), "one fetch for k2, none for k1");
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn old_keys_are_fetched_again_after_their_max_age() {
    let issuer = Issuer::start().await;
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let dir = TempDir::new();
    let service = try_start(
        &dir,
        &[
            ("jwks_url", json!(format!("{}/keys", issuer.url()))),
            ("jwks_refresh_min_interval", json!("100ms")),
            ("jwks_max_age", json!("2s")),
        ],
    )
    .await
    .unwrap();
    let k1 = issuer.token("k1", RSA_PRIVATE);
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    // The issuer withdraws k1 (compromised); once the keys held are older
    // than the max age, the next request fetches them and k1 is refused.
    issuer.publish(&[("k2", RSA_OTHER_PRIVATE)]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(call(&service, &k1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.counts(), (0, 2));
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn https_discovery_with_a_private_ca_follows_a_rotation() {
    let ca = TestCa::new("chassis test CA");
    let issuer = Issuer::start_https(&ca).await;
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let dir = TempDir::new();
    let ca_file = dir.write("issuer-ca.pem", &ca.ca_pem);
    let service = try_start(
        &dir,
        &[
            ("discovery", json!(true)),
            ("issuer", json!(issuer.url())),
            ("jwks_ca_file", json!(ca_file.display().to_string())),
            ("jwks_refresh_min_interval", json!("1s")),
        ],
    )
    .await
    .unwrap();
    // Discovery and the key set, both over https, before `start` returned.
    assert_eq!(issuer.counts(), (1, 1));
    let k1 = issuer.token("k1", RSA_PRIVATE);
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    // The issuer rotates to k2: the first k2 token fetches the keys again.
    issuer.publish(&[("k2", RSA_OTHER_PRIVATE)]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let k2 = issuer.token("k2", RSA_OTHER_PRIVATE);
    assert_eq!(call(&service, &k2).await, StatusCode::OK);
    assert_eq!(call(&service, &k1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.counts(), (1, 2));
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_at_the_first_fetch_and_says_why() {
    let issuer_ca = TestCa::new("issuer's CA");
    let issuer = Issuer::start_https(&issuer_ca).await;
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let dir = TempDir::new();
    // The service trusts another CA (and the system's): not the issuer's.
    let other_ca = dir.write("other-ca.pem", &TestCa::new("another CA").ca_pem);
    let service = try_start(
        &dir,
        &[
            ("jwks_url", json!(format!("{}/keys", issuer.url()))),
            ("jwks_ca_file", json!(other_ca.display().to_string())),
        ],
    )
    .await
    .expect("the service starts: the issuer may be fixed while it runs");
    // The handshake failed: the issuer served nothing, the fetch at
    // start-up logged why.
    assert_eq!(issuer.counts(), (0, 0));
    let text = logs().text();
    let line = text
        .lines()
        .find(|l| l.contains(&format!("GET {}/keys", issuer.url())))
        .unwrap_or_else(|| panic!("no line about the fetch in:\n{text}"));
    assert!(
        line.contains("WARN")
            && line.contains("the server's certificate is not trusted")
            && line.contains("UnknownIssuer")
            && line.contains("security.auth.jwt.jwks_ca_file"),
        "{line}"
    );
    // Tokens are refused while no key could be fetched.
    let k1 = issuer.token("k1", RSA_PRIVATE);
    assert_eq!(call(&service, &k1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.counts(), (0, 0));
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn remote_key_settings_are_checked_at_start_up() {
    let dir = TempDir::new();
    let not_pem = dir.write("not-a-ca.pem", "hello");
    for (settings, expected) in [
        (
            vec![("jwks_url", json!("ftp://issuer.example/keys"))],
            "security.auth.jwt.jwks_url: expected an absolute http:// or https:// URL, \
             found `ftp://issuer.example/keys` has the scheme `ftp` (from override in code)",
        ),
        (
            vec![("jwks_url", json!("not a url"))],
            "security.auth.jwt.jwks_url: expected an absolute http:// or https:// URL, \
             found `not a url` is not an absolute URL",
        ),
        (
            vec![("discovery", json!(true))],
            "security.auth.jwt.issuer: expected the issuer's URL: discovery = true reads \
             <issuer>/.well-known/openid-configuration, found nothing (from built-in default)",
        ),
        (
            vec![
                ("discovery", json!(true)),
                ("issuer", json!("http://i")),
                ("jwks_url", json!("http://i/keys")),
            ],
            "security.auth.jwt.jwks_url: expected no jwks_url when discovery = true \
             (set one of them) (from override in code)",
        ),
        (
            vec![
                ("jwks_url", json!("http://i/keys")),
                ("public_key_pem", json!("x")),
            ],
            "security.auth.jwt.jwks_url: expected one source of keys: jwks_url, discovery, \
             jwks_file or public_key_pem, found jwks_url and public_key_pem (from override in code)",
        ),
        (
            vec![
                ("jwks_url", json!("https://issuer.example/keys")),
                ("jwks_ca_file", json!(not_pem.display().to_string())),
            ],
            "security.auth.jwt.jwks_ca_file: expected a readable PEM file of CA certificates, \
             found `",
        ),
    ] {
        let err = try_start(&dir, &settings).await.unwrap_err().to_string();
        assert!(err.starts_with(expected), "{settings:?}: {err}");
    }
}

#[tokio::test]
async fn an_https_issuer_is_reached_through_the_https_proxy_tunnel() {
    let ca = TestCa::new("proxied issuer's CA");
    let issuer = Issuer::start_https(&ca).await;
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let proxy = Proxy::start().await;
    let dir = TempDir::new();
    let ca_file = dir.write("issuer-ca.pem", &ca.ca_pem);
    // Credentials in the proxy URL, as corporate egress proxies want them.
    let proxy_url = proxy.url.replace("http://", "http://jwks:s3cret@");
    let service = try_start_in(
        &dir,
        &[
            ("discovery", json!(true)),
            ("issuer", json!(issuer.url())),
            ("jwks_ca_file", json!(ca_file.display().to_string())),
        ],
        &[
            ("HTTPS_PROXY", &proxy_url),
            ("NO_PROXY", "example.internal"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(issuer.counts(), (1, 1));
    let k1 = issuer.token("k1", RSA_PRIVATE);
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    // One tunnel per fetch (discovery, key set), to the issuer's host, with
    // the credentials; the certificate was checked for `localhost` (the
    // issuer's name) through it, not for the proxy.
    let authority = issuer.url().replace("https://", "");
    let heads = proxy.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in &heads {
        assert!(
            head.starts_with(&format!("CONNECT {authority} HTTP/1.1\r\n"))
                && head.contains("Proxy-Authorization: Basic andrczpzM2NyZXQ=\r\n"),
            "{head}"
        );
    }
    assert!(!logs().text().contains("s3cret"));
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_http_issuer_is_asked_through_the_http_proxy_in_absolute_form() {
    let issuer = Issuer::start().await;
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let proxy = Proxy::start().await;
    let dir = TempDir::new();
    let keys = format!("{}/keys", issuer.url());
    // The lower-case form, as curl reads it.
    let service = try_start_in(
        &dir,
        &[("jwks_url", json!(keys))],
        &[("http_proxy", &proxy.url)],
    )
    .await
    .unwrap();
    assert_eq!(issuer.counts(), (0, 1));
    let k1 = issuer.token("k1", RSA_PRIVATE);
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with(&format!("GET {keys} HTTP/1.1\r\n")),
        "{}",
        heads[0]
    );
    assert!(!heads[0].contains("Proxy-Authorization"), "{}", heads[0]);
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_host_in_no_proxy_is_reached_directly() {
    let ca = TestCa::new("direct issuer's CA");
    let issuer = Issuer::start_https(&ca).await;
    issuer.publish(&[("k1", RSA_PRIVATE)]);
    let proxy = Proxy::start().await;
    let dir = TempDir::new();
    let ca_file = dir.write("issuer-ca.pem", &ca.ca_pem);
    let service = try_start_in(
        &dir,
        &[
            ("jwks_url", json!(format!("{}/keys", issuer.url()))),
            ("jwks_ca_file", json!(ca_file.display().to_string())),
        ],
        &[
            ("HTTPS_PROXY", &proxy.url),
            ("NO_PROXY", "example.internal, localhost"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(issuer.counts(), (0, 1));
    let k1 = issuer.token("k1", RSA_PRIVATE);
    assert_eq!(call(&service, &k1).await, StatusCode::OK);
    assert_eq!(proxy.heads(), Vec::<String>::new());
    service.shutdown().await.unwrap();
}
