//! HTTP overhead of the chassis, measured from outside the server.
//!
//! Each variant is a server in a process of its own (this binary run as
//! `http --serve <variant>`), serving one trivial JSON route at `/hello`:
//!
//! - `bare axum`: `axum::serve` of the route, nothing else;
//! - `defaults`: a `ServiceHost` with the default configuration —
//!   authentication on (one API key, sent with each request), rate limit,
//!   concurrency limit, hardening headers, closed CORS, metrics, console
//!   logging at INFO, tracing `none`. Only the rate limit is raised so far
//!   that it never refuses (it still runs per request: 64 connections from
//!   one client would be throttled by the real default of 100/s);
//! - `defaults + access log`: the same with `http.access_log.enabled` and
//!   JSON logs (what the production configurations run): one line per
//!   request on the server's stdout, read by this process;
//! - `edge only`: the foundation `Edge` (`middleware::standard_stack`)
//!   around the route, without a host (no security, no metrics);
//! - `tower-http reference` (`+ access log`): the `defaults` features built
//!   by hand from the ecosystem's layers, as a team without the chassis
//!   would (see [`reference`]): what those features cost built the usual
//!   way, measured in the same run.
//!
//! `cargo bench -p chassis-web --bench http` loads each server with `wrk`
//! (2 threads, 64 connections; Debian package `wrk`), rounds alternating
//! the variants, and reports per variant the median and min–max of req/s
//! and of the **server process'** CPU time per request (utime + stime from
//! `/proc/<pid>/stat`; the load generator's CPU is not in it). Before each
//! round it waits (at most `BENCH_QUIET_WAIT` seconds) until the machine is
//! quiet — other processes using under `BENCH_MAX_BUSY` % of the CPUs over
//! one second, and the 1-minute load average under `BENCH_MAX_LOAD` — and
//! prints both with the round.
//!
//! ```sh
//! cargo bench -p chassis-web --bench http
//! BENCH_SECONDS=8 BENCH_ROUNDS=5 BENCH_CONNECTIONS=64 cargo bench -p chassis-web --bench http
//! # instructions per request of each server (valgrind callgrind; steady on a busy machine):
//! BENCH_CALLGRIND=1 cargo bench -p chassis-web --bench http
//! ```
//!
//! With `BENCH_CALLGRIND=1` each server runs under `valgrind --tool=callgrind`
//! twice, loaded by a client in this process with 2 000 and 10 000 requests
//! over 8 connections; the difference of the totals over 8 000 is the
//! server's instructions per request. The profile of the larger run stays
//! in `target/bench-http/` for `callgrind_annotate --inclusive=yes`.
//!
//! Run without `--bench` (`cargo test --benches`, what CI does) it is a
//! smoke test: every server starts and answers a few requests, the access
//! log writes its lines; nothing is timed.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The key the `defaults` hosts accept; every variant gets it, so every
/// server parses the same requests.
const BENCH_API_KEY: &str = "bench-api-key-0123456789";

/// Printed on stderr by a server once it listens.
const READY: &str = "BENCH_READY ";

const VARIANTS: [&str; 6] = [
    "bare axum",
    "defaults",
    "defaults + access log",
    "edge only",
    "tower-http reference",
    "tower-http reference + access log",
];

/// Whether a line a server wrote is an access log line (the chassis' own,
/// or tower-http's `TraceLayer` response event).
fn is_access_line(line: &str) -> bool {
    line.contains("chassis_web::access_log") || line.contains("tower_http::trace::on_response")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--serve") {
        let variant = args.get(at + 1).expect("--serve <variant>");
        serve(variant);
        return;
    }
    let benching = args.iter().any(|a| a == "--bench");
    if !benching {
        smoke();
    } else if env_or("BENCH_CALLGRIND", 0) == 1 {
        callgrind();
    } else {
        wall_clock();
    }
}

// ---------------------------------------------------------------- servers

/// Runs the server of `variant` until stdin closes.
fn serve(variant: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let route = || Router::new().route("/hello", get(hello));
        let addr = match variant {
            "bare axum" => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(async move { axum::serve(listener, route()).await });
                addr
            }
            "edge only" => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let edge = chassis_web::middleware::standard_stack(
                    route(),
                    &chassis_web::HttpConfig::default(),
                );
                let peers = chassis_web::middleware::ConnectPeers(edge);
                tokio::spawn(async move { axum::serve(listener, peers).await });
                addr
            }
            "defaults" | "defaults + access log" => {
                let mut builder = ServiceHost::builder("bench")
                    .env_vars(Vec::<(String, String)>::new())
                    .args(Vec::<String>::new())
                    .config("http.host", "127.0.0.1")
                    .config("http.port", 0)
                    .config("logging.ansi", false)
                    .config("security.auth.api_keys", BENCH_API_KEY)
                    .config("security.rate_limit.per_second", 1_000_000_000_i64)
                    .config("security.rate_limit.burst", 1_000_000_000_i64)
                    .routes(move |_| route());
                if variant == "defaults + access log" {
                    builder = builder
                        .config("logging.format", "json")
                        .config("http.access_log.enabled", true);
                }
                let service = builder.start().await.expect("chassis host starts");
                let addr = service.local_addr();
                // Serves until the process exits.
                std::mem::forget(service);
                addr
            }
            "tower-http reference" | "tower-http reference + access log" => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let app = reference(route(), variant.ends_with("access log"));
                tokio::spawn(async move { axum::serve(listener, app).await });
                addr
            }
            other => panic!("unknown variant `{other}`; expected one of {VARIANTS:?}"),
        };
        eprintln!("{READY}{addr}");
        // Until the bench closes stdin.
        tokio::task::spawn_blocking(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        })
        .await
        .unwrap();
    });
    // Exits without dropping the runtime: the profile of a callgrind run
    // is written at exit; the queued log lines do not matter here.
    std::process::exit(0);
}

/// The `defaults` features built by hand from tower-http, tower and
/// `metrics`, the way their documentation and axum's examples show: a
/// correlation id (a generated UUID, echoed in the response), a request
/// timeout, a concurrency limit, the API key check, the three hardening
/// headers, a request counter and latency histogram by method, route and
/// status (Prometheus recorder); with `access_log`, `TraceLayer` with a span
/// per request and one JSON line per response on stdout through
/// `tracing-subscriber`. It does less than the chassis (no rate limit, no
/// problem+json answers, no panic catching, no client address or
/// correlation id in the line): a reference point for what these features
/// cost built the usual way, not a copy of the chassis.
fn reference(route: Router, access_log: bool) -> Router {
    use axum::http::{HeaderName, HeaderValue, StatusCode, header};
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::set_header::SetResponseHeaderLayer;

    // Buckets for the latency histogram, as axum's Prometheus example sets
    // them (without, the exporter keeps a summary, which costs more).
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("http_request_duration_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .expect("buckets")
        .install_recorder()
        .expect("the reference server's metrics recorder");
    // The handle renders the scrape; kept for the life of the process.
    std::mem::forget(recorder);
    let correlation = HeaderName::from_static("x-correlation-id");
    let stack = tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(correlation.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(correlation))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(tower::limit::ConcurrencyLimitLayer::new(1024))
        .layer(tower_http::validate_request::ValidateRequestHeaderLayer::custom(reference_api_key));
    let app = route.layer(axum::middleware::from_fn(record_metrics));
    if access_log {
        use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
        tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .init();
        app.layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(tracing::Level::INFO))
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(stack)
    } else {
        app.layer(stack)
    }
}

/// The reference's API key check.
#[allow(clippy::result_large_err)] // the signature tower-http's `ValidateRequest` asks for
fn reference_api_key(req: &mut axum::extract::Request) -> Result<(), axum::response::Response> {
    use axum::response::IntoResponse as _;
    if req.headers().get("x-api-key").map(|v| v.as_bytes()) == Some(BENCH_API_KEY.as_bytes()) {
        Ok(())
    } else {
        Err(axum::http::StatusCode::UNAUTHORIZED.into_response())
    }
}

/// Request metrics as axum's Prometheus example records them.
async fn record_metrics(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A server process of the bench.
struct Server {
    variant: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    /// Lines the server wrote on stdout (its log).
    lines: Arc<AtomicU64>,
    /// Access log lines among them.
    access_lines: Arc<AtomicU64>,
}

impl Server {
    /// Starts `variant` as `program args… <this binary> --serve <variant>`.
    fn start(variant: &'static str, wrapper: &[String]) -> Self {
        let me = std::env::current_exe().expect("current exe");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&me);
                c
            }
            None => Command::new(&me),
        };
        let mut child = command
            .args(["--serve", variant])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server process starts");
        let stdin = child.stdin.take();
        // The log is read as fast as it comes, as a log collector would.
        let lines = Arc::new(AtomicU64::new(0));
        let access_lines = Arc::new(AtomicU64::new(0));
        let stdout = child.stdout.take().expect("stdout");
        let (l, a) = (lines.clone(), access_lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                l.fetch_add(1, Ordering::Relaxed);
                if is_access_line(&line) {
                    a.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = String::new();
        let addr = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("server `{variant}` exited before it listened:\n{seen}");
            }
            if let Some(addr) = line.trim().strip_prefix(READY) {
                break addr.parse().expect("address");
            }
            seen.push_str(&line);
        };
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        });
        Self {
            variant,
            child,
            stdin,
            addr,
            lines,
            access_lines,
        }
    }

    /// User + system CPU time of the server process so far.
    fn cpu(&self) -> Duration {
        process_cpu(self.child.id())
    }

    /// Closes stdin and waits for the process to exit.
    fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// utime + stime of process `pid` (all its threads), from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (in parentheses, may hold spaces).
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

// ---------------------------------------------------------------- in-process client

/// One keep-alive connection sending `n` requests back to back.
async fn connection(addr: SocketAddr, n: u64) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    for _ in 0..n {
        let request = http::Request::get(format!("http://{addr}/hello"))
            .header(http::header::HOST, "bench")
            .header("x-api-key", BENCH_API_KEY)
            .body(Empty::<Bytes>::new())
            .expect("request");
        sender.ready().await.expect("connection ready");
        let response = sender.send_request(request).await.expect("response");
        assert!(
            response.status().is_success(),
            "status {}",
            response.status()
        );
        let body = response.into_body().collect().await.expect("body");
        assert!(!body.to_bytes().is_empty());
    }
}

/// `total` requests over `connections` connections.
fn requests(addr: SocketAddr, connections: u64, total: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(addr, total / connections)))
            .collect();
        for task in tasks {
            task.await.expect("client connection");
        }
    });
}

// ---------------------------------------------------------------- smoke

/// Every server starts, answers, and the access log writes its lines.
fn smoke() {
    for variant in VARIANTS {
        let server = Server::start(variant, &[]);
        requests(server.addr, 4, 40);
        if variant.ends_with("access log") {
            let deadline = Instant::now() + Duration::from_secs(10);
            while server.access_lines.load(Ordering::Relaxed) < 40 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(
                server.access_lines.load(Ordering::Relaxed),
                40,
                "one access log line per request"
            );
        }
        println!("smoke: {variant} answered 40 requests");
        server.stop();
    }
}

// ---------------------------------------------------------------- wall clock

/// One wrk run against one server.
#[derive(Debug, Clone, Copy)]
struct Round {
    rps: f64,
    cpu_per_request: Duration,
}

/// Loads `server` with wrk for `seconds`; req/s and the server's CPU per
/// request.
fn wrk(server: &Server, seconds: u64, connections: u64) -> Round {
    let cpu_before = server.cpu();
    let output = Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["-H", &format!("x-api-key: {BENCH_API_KEY}")])
        .arg(format!("http://{}/hello", server.addr))
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let cpu = server.cpu().saturating_sub(cpu_before);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !text.contains("Non-2xx"),
        "wrk against `{}` failed:\n{text}{}",
        server.variant,
        String::from_utf8_lossy(&output.stderr)
    );
    // "  123456 requests in 8.00s, 12.34MB read"
    let requests: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("wrk's request count");
    let rps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("wrk's Requests/sec");
    Round {
        rps,
        cpu_per_request: cpu / u32::try_from(requests.max(1)).unwrap_or(u32::MAX),
    }
}

/// The 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Busy (non-idle) CPU time of the whole machine, and the total, from `/proc/stat`.
fn machine_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait are fields 4 and 5.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of the machine's CPUs busy over one second (with no bench load
/// running: other processes).
fn busy_share() -> f64 {
    let (busy0, total0) = machine_cpu();
    std::thread::sleep(Duration::from_secs(1));
    let (busy1, total1) = machine_cpu();
    (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64
}

/// Waits until the machine is quiet, at most `max_wait`; returns the busy
/// share and load average it measured last, and whether it was quiet.
fn wait_for_quiet(max_busy: f64, max_load: f64, max_wait: Duration) -> (f64, f64, bool) {
    let deadline = Instant::now() + max_wait;
    loop {
        let busy = busy_share();
        let load = load_average();
        let quiet = busy <= max_busy && load <= max_load;
        if quiet || Instant::now() >= deadline {
            return (busy, load, quiet);
        }
    }
}

fn median_min_max(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

fn wall_clock() {
    let seconds = env_or("BENCH_SECONDS", 8);
    let rounds = env_or("BENCH_ROUNDS", 5).max(1) as usize;
    let connections = env_or("BENCH_CONNECTIONS", 64);
    let max_busy = env_or("BENCH_MAX_BUSY", 15) as f64 / 100.0;
    let max_load = env_or("BENCH_MAX_LOAD_X10", 25) as f64 / 10.0;
    let max_wait = Duration::from_secs(env_or("BENCH_QUIET_WAIT", 120));
    let servers: Vec<Server> = VARIANTS.iter().map(|v| Server::start(v, &[])).collect();
    println!(
        "# wrk -t2 -c{connections} -d{seconds}s, {rounds} rounds, {} CPUs; quiet = others busy ≤ {:.0} % and load ≤ {max_load:.1} (waiting ≤ {}s)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        max_busy * 100.0,
        max_wait.as_secs()
    );
    // Warm-up: connections, allocator, caches, the hosts' lazy handles.
    for server in &servers {
        wrk(server, 1, connections);
    }
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); servers.len()];
    for round in 0..rounds {
        // Alternate the order too, so no variant always follows the same one.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..servers.len()).collect()
        } else {
            (0..servers.len()).rev().collect()
        };
        for i in order {
            let (busy, load, quiet) = wait_for_quiet(max_busy, max_load, max_wait);
            let r = wrk(&servers[i], seconds, connections);
            println!(
                "round {round} {:<34} {:>9.0} req/s {:>6.2} µs CPU/req   others busy {:>3.0} %, load {load:.2}{}",
                servers[i].variant,
                r.rps,
                r.cpu_per_request.as_secs_f64() * 1e6,
                busy * 100.0,
                if quiet { "" } else { " (not quiet)" }
            );
            results[i].push(r);
        }
    }
    println!(
        "\n| | req/s median (min–max) | server CPU µs/request median (min–max) | req/s ÷ bare | CPU ÷ bare |"
    );
    println!("|---|---|---|---|---|");
    let bare = median_min_max(results[0].iter().map(|r| r.rps).collect()).0;
    let bare_cpu = median_min_max(
        results[0]
            .iter()
            .map(|r| r.cpu_per_request.as_secs_f64() * 1e6)
            .collect(),
    )
    .0;
    for (server, rounds) in servers.iter().zip(&results) {
        let (rps, rps_min, rps_max) = median_min_max(rounds.iter().map(|r| r.rps).collect());
        let (cpu, cpu_min, cpu_max) = median_min_max(
            rounds
                .iter()
                .map(|r| r.cpu_per_request.as_secs_f64() * 1e6)
                .collect(),
        );
        println!(
            "| {} | {rps:.0} ({rps_min:.0}–{rps_max:.0}) | {cpu:.2} ({cpu_min:.2}–{cpu_max:.2}) | {:.3}× | {:.3}× |",
            server.variant,
            rps / bare,
            cpu / bare_cpu
        );
    }
    for server in servers {
        let (lines, access) = (
            server.lines.load(Ordering::Relaxed),
            server.access_lines.load(Ordering::Relaxed),
        );
        if lines > 0 {
            println!(
                "# {}: {lines} log lines, {access} access log lines",
                server.variant
            );
        }
        server.stop();
    }
}

// ---------------------------------------------------------------- callgrind

/// Total instructions of a callgrind profile (its `summary:`/`totals:` line).
fn callgrind_total(path: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(path).expect("callgrind profile");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("callgrind total")
}

fn callgrind() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-http");
    std::fs::create_dir_all(&dir).expect("profile directory");
    let (small, large) = (2_000, 10_000);
    println!(
        "# server instructions per request (valgrind callgrind, ({large} − {small} requests) ÷ {}, 8 connections)",
        large - small
    );
    let mut bare = None;
    for variant in VARIANTS {
        let mut totals = Vec::new();
        for n in [small, large] {
            let file = dir.join(format!(
                "{}.{n}.callgrind",
                variant.replace([' ', '+'], "_")
            ));
            let wrapper = [
                "valgrind".to_owned(),
                "--tool=callgrind".to_owned(),
                format!("--callgrind-out-file={}", file.display()),
            ];
            let server = Server::start(variant, &wrapper);
            // Warm-up, as in the other runs: first-use costs are not per request.
            requests(server.addr, 8, 200);
            requests(server.addr, 8, n);
            server.stop();
            totals.push(callgrind_total(&file));
        }
        let per_request = (totals[1] - totals[0]) as f64 / (large - small) as f64;
        let base = *bare.get_or_insert(per_request);
        println!(
            "{variant:<34} {per_request:>8.0} instructions/request   {:+8.0} vs bare ({:.3}×)",
            per_request - base,
            per_request / base
        );
        let _ = std::io::stdout().flush();
    }
    println!("# profiles: {}", dir.display());
}
