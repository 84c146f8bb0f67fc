//! HTTP overhead of the chassis: one trivial JSON handler served twice in the
//! same process — bare axum, and the full chassis host (standard middleware
//! stack, logging installed at the default INFO level) — loaded by the same
//! in-process client: N keep-alive HTTP/1.1 connections, each sending
//! requests back to back for a fixed time.
//!
//! ```sh
//! cargo bench -p chassis-web --bench http
//! BENCH_SECONDS=10 BENCH_CONNECTIONS=64 BENCH_ROUNDS=3 cargo bench -p chassis-web --bench http
//! ```
//!
//! Rounds alternate bare / chassis so drift (thermal, other load) hits both;
//! the figures are the median round of each.

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
async fn connection(addr: SocketAddr, end: Instant) -> Vec<u32> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut latencies = Vec::with_capacity(100_000);
    while Instant::now() < end {
        let request = http::Request::get(format!("http://{addr}/hello"))
            .header(http::header::HOST, "bench")
            // Checked by the authenticated host only; the others ignore it.
            .header("x-api-key", BENCH_API_KEY)
            .body(Empty::<Bytes>::new())
            .expect("request");
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

async fn load(addr: SocketAddr, connections: u64, duration: Duration) -> Figures {
    // Warm-up: connections, allocator, caches.
    let warm = Instant::now() + Duration::from_millis(300);
    connection(addr, warm).await;

    let started = Instant::now();
    let cpu_before = process_cpu();
    let end = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection(addr, end)))
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

        // The chassis host with its defaults (in-memory bus and store, console
        // logging at INFO: no line per request), only the port changed.
        let service = ServiceHost::builder("bench")
            .config("http.host", "127.0.0.1")
            .config("http.port", 0)
            .config("logging.ansi", false)
            // The default stack without credential checks; see docs/bench-http.md.
            .config("security.auth.enabled", false)
            .routes(|_| Router::new().route("/hello", get(hello)))
            .start()
            .await
            .expect("chassis host starts");
        let chassis_addr = service.local_addr();
        // The same with authentication on (an API key per request) and a
        // rate limit too high to refuse anything: what the checks cost.
        let secured = ServiceHost::builder("bench-auth")
            .config("http.host", "127.0.0.1")
            .config("http.port", 0)
            .config("logging.ansi", false)
            .install_logging(false)
            .config("security.auth.api_keys", BENCH_API_KEY)
            .config("security.rate_limit.per_second", 1_000_000_000_i64)
            .config("security.rate_limit.burst", 1_000_000_000_i64)
            .routes(|_| Router::new().route("/hello", get(hello)))
            .start()
            .await
            .expect("authenticated chassis host starts");
        let secured_addr = secured.local_addr();

        println!(
            "# {connections} connections, {seconds}s per run, {rounds} rounds, {} worker threads",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let duration = Duration::from_secs(seconds);
        let (mut bare_rounds, mut chassis_rounds, mut secured_rounds) =
            (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            bare_rounds.push(load(bare_addr, connections, duration).await);
            chassis_rounds.push(load(chassis_addr, connections, duration).await);
            secured_rounds.push(load(secured_addr, connections, duration).await);
        }
        let (bare, chassis) = (median(bare_rounds), median(chassis_rounds));
        let secured_figures = median(secured_rounds);
        print("bare axum", bare);
        print("chassis stack", chassis);
        print("chassis + auth", secured_figures);
        println!(
            "ratio            {:.3}x bare axum throughput",
            chassis.rps / bare.rps
        );
        println!(
            "cpu ratio        {:.3}x (bare CPU per request / chassis CPU per request)",
            bare.cpu_per_request.as_secs_f64() / chassis.cpu_per_request.as_secs_f64()
        );
        println!(
            "auth ratio       {:.3}x bare axum throughput (API key + rate limit on)",
            secured_figures.rps / bare.rps
        );
        secured.shutdown().await.expect("clean shutdown");
        service.shutdown().await.expect("clean shutdown");
    });
}
