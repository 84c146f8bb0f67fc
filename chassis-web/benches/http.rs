//! HTTP overhead of the chassis: one trivial JSON handler served in the
//! same process — bare axum, and chassis hosts — loaded by the same
//! in-process client: N keep-alive HTTP/1.1 connections, each sending
//! requests back to back for a fixed time.
//!
//! Variants (all chassis hosts: in-memory bus and store, console logging at
//! the default INFO level, metrics on, tracing provider `none`, unless said):
//! - `chassis + key`: the default configuration — authentication on (one API
//!   key configured, as the default requires, and sent with each request),
//!   rate limit, concurrency limit, hardening headers, closed CORS, metrics.
//!   Only the rate limit is raised so far that it never refuses: it still
//!   runs per request.
//! - `chassis anon`: the same with `/hello` on the allow-list: anonymous
//!   requests, rate limited by peer address.
//! - `edge only`: the foundation `Edge` (`middleware::standard_stack`)
//!   around the router, served without a host: no tracing provider built
//!   at all, no security, no metrics.
//! - `tracing none`: a host with `tracing.provider = "none"` and security
//!   and metrics off: the same stack as `edge only` plus whatever the tracing
//!   concern costs when it is `none` — their ratio shows it (nil: ≈ 1.0).
//!
//! ```sh
//! cargo bench -p chassis-web --bench http
//! BENCH_SECONDS=10 BENCH_CONNECTIONS=64 BENCH_ROUNDS=3 cargo bench -p chassis-web --bench http
//! ```
//!
//! Rounds alternate the variants so drift (thermal, other load) hits all;
//! the figures are the median round of each.
//!
//! On a busy machine wall-clock ratios are noisy; instruction counts are
//! not. `BENCH_ONLY=<variant>` runs one variant and `BENCH_REQUESTS=<n>` a
//! fixed number of requests instead of a time: run it under
//! `valgrind --tool=callgrind` with two values of n, and the difference of
//! the totals over the difference of n is the instructions per request
//! (client included; see docs/bench-http.md).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use chassis_web::{Json, ServiceHost};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;

#[derive(Serialize)]
struct Greeting {
    message: &'static str,
    id: u64,
}

async fn hello() -> Json<Greeting> {
    Json(Greeting {
        message: "hello",
        id: 42,
    })
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time of the whole process (client included) per request: robust
    /// when other processes compete for the cores.
    cpu_per_request: Duration,
}

/// User + system CPU time of this process, from `/proc/self/stat`.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after `)`.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The key the authenticated host accepts.
const BENCH_API_KEY: &str = "bench-api-key-0123456789";

/// One connection: requests back to back until `end`, latencies in µs.
/// How long a connection sends requests.
#[derive(Clone, Copy)]
enum Until {
    Time(Instant),
    /// A fixed number of requests (instruction counts, see the module docs).
    Count(u64),
}

async fn connection(addr: SocketAddr, key: Option<&'static str>, until: Until) -> Vec<u32> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut latencies = Vec::with_capacity(100_000);
    let more = |sent: usize| match until {
        Until::Time(end) => Instant::now() < end,
        Until::Count(n) => (sent as u64) < n,
    };
    while more(latencies.len()) {
        let mut request =
            http::Request::get(format!("http://{addr}/hello")).header(http::header::HOST, "bench");
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let request = request.body(Empty::<Bytes>::new()).expect("request");
        let started = Instant::now();
        sender.ready().await.expect("connection ready");
        let response = sender.send_request(request).await.expect("response");
        assert!(
            response.status().is_success(),
            "status {}",
            response.status()
        );
        let body = response.into_body().collect().await.expect("body");
        debug_assert!(!body.to_bytes().is_empty());
        latencies.push(started.elapsed().as_micros() as u32);
    }
    latencies
}

async fn load(target: Target, connections: u64, run: Run) -> Figures {
    let Target { addr, key } = target;
    // Warm-up: connections, allocator, caches.
    let warm = match run {
        Run::Time(_) => Until::Time(Instant::now() + Duration::from_millis(300)),
        Run::Requests(_) => Until::Count(200),
    };
    connection(addr, key, warm).await;

    let started = Instant::now();
    let cpu_before = process_cpu();
    let until = match run {
        Run::Time(duration) => Until::Time(started + duration),
        Run::Requests(n) => Until::Count(n / connections),
    };
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection(addr, key, until)))
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = process_cpu().saturating_sub(cpu_before);
    all.sort_unstable();
    let pick =
        |q: f64| Duration::from_micros(u64::from(all[((all.len() - 1) as f64 * q) as usize]));
    Figures {
        rps: all.len() as f64 / elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
        cpu_per_request: cpu / u32::try_from(all.len()).unwrap_or(u32::MAX).max(1),
    }
}

fn median(mut rounds: Vec<Figures>) -> Figures {
    rounds.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    rounds[rounds.len() / 2]
}

fn print(label: &str, f: Figures) {
    println!(
        "{label:<16} {:>10.0} req/s   p50 {:>6.3} ms   p99 {:>6.3} ms   cpu {:>5.1} µs/req",
        f.rps,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.cpu_per_request.as_secs_f64() * 1e6
    );
}

/// What one run of a variant does.
#[derive(Clone, Copy)]
enum Run {
    /// Requests back to back for this long.
    Time(Duration),
    /// This many requests in all.
    Requests(u64),
}

/// Where a variant listens and the API key its requests carry.
#[derive(Clone, Copy)]
struct Target {
    addr: SocketAddr,
    key: Option<&'static str>,
}

/// A chassis host of the bench: loopback, ephemeral port, `/hello`, with
/// the given settings on top of the defaults.
async fn host(
    name: &str,
    install_logging: bool,
    settings: &[(&str, chassis_web::ConfigValue)],
) -> chassis_web::RunningService {
    let mut builder = ServiceHost::builder(name)
        .config("http.host", "127.0.0.1")
        .config("http.port", 0)
        .config("logging.ansi", false)
        .args(Vec::<String>::new())
        .install_logging(install_logging)
        .routes(|_| Router::new().route("/hello", get(hello)));
    for (key, value) in settings {
        builder = builder.config(key, value.clone());
    }
    builder.start().await.expect("chassis host starts")
}

fn main() {
    let seconds = env_or("BENCH_SECONDS", 5);
    let connections = env_or("BENCH_CONNECTIONS", 64);
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        // Bare axum.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_addr = listener.local_addr().unwrap();
        let bare = Router::new().route("/hello", get(hello));
        tokio::spawn(async move { axum::serve(listener, bare).await });

        // The default configuration (see the module docs): one API key, sent
        // with each request; a rate limit that runs but never refuses.
        let unlimited = [
            ("security.rate_limit.per_second", 1_000_000_000_i64.into()),
            ("security.rate_limit.burst", 1_000_000_000_i64.into()),
        ];
        let mut keyed = vec![("security.auth.api_keys", BENCH_API_KEY.into())];
        keyed.extend(unlimited.clone());
        // Installs the global subscriber (console logging at INFO) the other
        // hosts share.
        let with_key = host("bench-key", true, &keyed).await;
        let mut anonymous = keyed.clone();
        anonymous.push((
            "security.auth.allow",
            chassis_web::ConfigValue::from(vec!["/hello"]),
        ));
        let anon = host("bench-anon", false, &anonymous).await;
        let tracing_none = host(
            "bench-tracing-none",
            false,
            &[
                ("tracing.provider", "none".into()),
                ("metrics.enabled", false.into()),
                ("security.auth.enabled", false.into()),
                ("security.rate_limit.enabled", false.into()),
                ("security.concurrency.enabled", false.into()),
                ("security.headers.enabled", false.into()),
            ],
        )
        .await;
        // The foundation edge alone, without a host (no tracing provider).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge_addr = listener.local_addr().unwrap();
        let edge = chassis_web::middleware::standard_stack(
            Router::new().route("/hello", get(hello)),
            &chassis_web::HttpConfig::default(),
        );
        tokio::spawn(async move {
            axum::serve(listener, chassis_web::middleware::ConnectPeers(edge)).await
        });

        // The same requests for every variant, key header included (only
        // `chassis + key` checks it; for the others it is one more header
        // to parse): the ratios compare servers, not requests.
        let variants = [
            (
                "bare axum",
                Target {
                    addr: bare_addr,
                    key: Some(BENCH_API_KEY),
                },
            ),
            (
                "chassis + key",
                Target {
                    addr: with_key.local_addr(),
                    key: Some(BENCH_API_KEY),
                },
            ),
            (
                "chassis anon",
                Target {
                    addr: anon.local_addr(),
                    key: Some(BENCH_API_KEY),
                },
            ),
            (
                "edge only",
                Target {
                    addr: edge_addr,
                    key: Some(BENCH_API_KEY),
                },
            ),
            (
                "tracing none",
                Target {
                    addr: tracing_none.local_addr(),
                    key: Some(BENCH_API_KEY),
                },
            ),
        ];
        println!(
            "# {connections} connections, {seconds}s per run, {rounds} rounds, {} worker threads",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let run = match env_or("BENCH_REQUESTS", 0) {
            0 => Run::Time(Duration::from_secs(seconds)),
            n => Run::Requests(n),
        };
        // `BENCH_ONLY=<label>`: that variant only (instruction counts).
        let only = std::env::var("BENCH_ONLY").ok();
        if let Some(only) = &only {
            let (_, target) = variants
                .iter()
                .find(|(label, _)| label == only)
                .expect("BENCH_ONLY names a variant");
            let f = load(*target, connections, run).await;
            print(only, f);
        } else {
            let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); variants.len()];
            for _ in 0..rounds {
                for (runs, (_, target)) in runs.iter_mut().zip(&variants) {
                    runs.push(load(*target, connections, run).await);
                }
            }
            let figures: Vec<Figures> = runs.into_iter().map(median).collect();
            for ((label, _), f) in variants.iter().zip(&figures) {
                print(label, *f);
            }
            let ratio = |a: usize, b: usize| {
                (
                    figures[a].rps / figures[b].rps,
                    figures[b].cpu_per_request.as_secs_f64()
                        / figures[a].cpu_per_request.as_secs_f64(),
                )
            };
            for (label, (a, b)) in [
                ("default + key / bare", (1, 0)),
                ("default anon / bare", (2, 0)),
                ("edge only / bare", (3, 0)),
                ("tracing none / edge only", (4, 3)),
            ] {
                let (rps, cpu) = ratio(a, b);
                println!("ratio {label:<26} {rps:.3}x throughput   {cpu:.3}x CPU per request");
            }
        }
        for service in [with_key, anon, tracing_none] {
            service.shutdown().await.expect("clean shutdown");
        }
    });
}
