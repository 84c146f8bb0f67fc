//! The order → package pipeline, loaded from outside: the two example
//! services run as processes of their own on PostgreSQL and a real broker
//! (RabbitMQ by default, `BENCH_BROKER=nats`), and this process places
//! orders over HTTP at a fixed open-loop rate. An order's latency runs from
//! its *scheduled* send time (so a slow response cannot hide the requests
//! that should have followed it: no coordinated omission) to the moment the
//! shipping service's `order packed` log line for it reaches this process.
//!
//! ```text
//! cargo bench -p shop-demo --bench pipeline                # 100, 200, 400 orders/s; 10 s each; 3 rounds
//! BENCH_RATES=100,200,300,400,500 BENCH_SECONDS=20 BENCH_ROUNDS=5 cargo bench -p shop-demo --bench pipeline
//! BENCH_BROKER=nats cargo bench -p shop-demo --bench pipeline
//! BENCH_QUEUE_TYPE=classic cargo bench -p shop-demo --bench pipeline   # RabbitMQ's queue type (default: quorum)
//! BENCH_SERVICES=/tmp/before,/tmp/after cargo bench -p shop-demo --bench pipeline  # prebuilt builds, alternating in every round
//! BENCH_WORKER_THREADS=1 cargo bench -p shop-demo --bench pipeline   # the services' Tokio workers (default: one per core)
//! cargo test -p shop-demo --benches                        # smoke: 20 orders/s for 1 s, every order packed
//! ```
//!
//! Per step it prints the orders placed, the packing latency's p50, p90,
//! p99 and max, the HTTP response's p99, errors, orders never packed, and
//! the CPU each process spent per order (the services from `/proc/<pid>`,
//! the broker and PostgreSQL from their processes' `/proc` entries),
//! PostgreSQL's write-ahead-log flushes per order (`pg_stat_wal`), and a
//! speed probe: a fixed loop timed on one core before the step, which
//! shows steps run while the machine itself was slow. Rounds
//! alternate the order of the rates; the summary gives the median over
//! rounds with min–max and the highest rate whose median p99 is below
//! 20 ms. Everything (this client, both services, the broker, PostgreSQL)
//! shares the machine: read the figures with the load printed beside them.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chassis_testing::nats::{LOCAL_URL as NATS_URL, StreamPrefix};
use common::processes::{Broker, Service, binaries, binaries_in, launches};
use common::{Schemas, Vhost, box_order};
use order_service_client::{ClientConfig, OrderServiceClient};
use uuid::Uuid;

/// The latency goal the knee is judged by.
const P99_GOAL: Duration = Duration::from_millis(20);
/// How long the last orders of a step may take to be packed.
const DRAIN_WAIT: Duration = Duration::from_secs(30);
/// Destinations the orders rotate through (packages are per destination).
const CITIES: [&str; 8] = [
    "Berlin", "Hamburg", "Munich", "Cologne", "Leipzig", "Dresden", "Bremen", "Kiel",
];

/// When shipping's `order packed` line for each order arrived here.
type Packed = Arc<Mutex<HashMap<Uuid, Instant>>>;

/// Reads the shipping process's JSON log lines and records `order packed`.
fn watch_packed(service: &mut Service) -> Packed {
    let packed: Packed = Arc::default();
    let stdout = service.child.stdout.take().expect("stdout is piped");
    let sink = packed.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if value["message"] != "order packed" {
                continue;
            }
            if let Some(id) = value["order_id"].as_str().and_then(|s| s.parse().ok()) {
                sink.lock().unwrap().insert(id, at);
            }
        }
    });
    packed
}

/// CPU time (user + system) of the processes picked by `pick`, from `/proc`.
fn cpu_of(pick: impl Fn(u32, &str) -> bool) -> Duration {
    // Clock ticks per second: 100 on every Linux this runs on (USER_HZ).
    const TICK: Duration = Duration::from_millis(10);
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ...`: comm may hold spaces, so split after `)`.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !pick(pid, &stat[open + 1..close]) {
            continue;
        }
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
        let field = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += field(11) + field(12);
    }
    TICK * u32::try_from(ticks).unwrap_or(u32::MAX)
}

/// CPU of each process group the pipeline runs in.
#[derive(Clone, Copy, Default)]
struct Cpu {
    order: Duration,
    shipping: Duration,
    broker: Duration,
    postgres: Duration,
}

impl Cpu {
    fn now(order: u32, shipping: u32) -> Self {
        Self {
            order: cpu_of(|pid, _| pid == order),
            shipping: cpu_of(|pid, _| pid == shipping),
            broker: cpu_of(|_, comm| comm == "beam.smp" || comm == "nats-server"),
            postgres: cpu_of(|_, comm| comm == "postgres"),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            order: self.order.saturating_sub(before.order),
            shipping: self.shipping.saturating_sub(before.shipping),
            broker: self.broker.saturating_sub(before.broker),
            postgres: self.postgres.saturating_sub(before.postgres),
        }
    }
}

/// How often PostgreSQL has flushed its write-ahead log to disk so far
/// (`pg_stat_wal.wal_sync`: every backend's and the WAL writer's flushes,
/// server-wide); `None` when it cannot be read.
fn wal_flushes() -> Option<u64> {
    let out = std::process::Command::new("psql")
        .args([
            common::POSTGRES_URL,
            "-Atc",
            "SELECT wal_sync FROM pg_stat_wal",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// What one rate step measured.
struct Step {
    rate: u32,
    placed: usize,
    errors: usize,
    missing: usize,
    /// Scheduled send → packed, per order packed, sorted.
    packed: Vec<Duration>,
    /// Scheduled send → HTTP response, per order placed, sorted.
    http: Vec<Duration>,
    cpu: Cpu,
    /// PostgreSQL's WAL flushes during the step (see [`wal_flushes`]).
    wal_flushes: Option<u64>,
    /// [`speed_probe`] just before the step, in ms.
    probe: f64,
}

/// Iterations of [`speed_probe`]'s loop: ≈ 20–40 ms on the 2-core machines
/// of this repository.
const PROBE_ITERATIONS: u64 = 30_000_000;

/// How long a fixed piece of single-threaded CPU work takes now, in ms.
/// Printed before each step (nothing else of the bench runs then), it tells
/// a step run while the machine itself was slow from a spread that is the
/// pipeline's own.
fn speed_probe() -> f64 {
    let started = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..PROBE_ITERATIONS {
        // xorshift: cheap, and `black_box` keeps the loop from being folded.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    ms(started.elapsed())
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Step {
    fn p(&self, q: f64) -> Duration {
        percentile(&self.packed, q)
    }

    /// `value` per order placed (`None` when none was).
    fn per_placed(&self, value: f64) -> Option<f64> {
        (self.placed > 0).then(|| value / self.placed as f64)
    }

    /// `d` per order placed, in µs (0 when none was).
    fn per_order(&self, d: Duration) -> f64 {
        self.per_placed(d.as_secs_f64() * 1e6).unwrap_or(0.0)
    }

    /// The CPU of every measured process together, per order placed, in µs.
    fn cpu_per_order(&self) -> f64 {
        let Cpu {
            order,
            shipping,
            broker,
            postgres,
        } = self.cpu;
        self.per_order(order + shipping + broker + postgres)
    }

    fn wal_flushes_per_order(&self) -> Option<f64> {
        self.wal_flushes.and_then(|n| self.per_placed(n as f64))
    }

    fn print(&self) {
        println!(
            "{:>5}/s {:>6} placed  packed p50 {:>7.2} p90 {:>7.2} p99 {:>7.2} max {:>8.2} ms  \
             http p99 {:>7.2} ms  errors {:>3} missing {:>3}  CPU/order µs: order {:>5.0} shipping {:>5.0} \
             broker {:>5.0} postgres {:>5.0}  WAL flushes/order {}  probe {:>5.1} ms",
            self.rate,
            self.placed,
            ms(self.p(0.50)),
            ms(self.p(0.90)),
            ms(self.p(0.99)),
            ms(self.p(1.0)),
            ms(percentile(&self.http, 0.99)),
            self.errors,
            self.missing,
            self.per_order(self.cpu.order),
            self.per_order(self.cpu.shipping),
            self.per_order(self.cpu.broker),
            self.per_order(self.cpu.postgres),
            self.wal_flushes_per_order()
                .map_or_else(|| "-".to_owned(), |n| format!("{n:.2}")),
            self.probe,
        );
    }
}

/// What the bench sets in both services' environment.
struct Settings {
    /// RabbitMQ's `messaging.rabbitmq.queue_type` (`BENCH_QUEUE_TYPE`;
    /// `None`: the configuration's, quorum).
    queue_type: Option<String>,
    /// Tokio's worker threads (`BENCH_WORKER_THREADS`, passed on as
    /// `TOKIO_WORKER_THREADS`; `None`: one per core).
    worker_threads: Option<usize>,
}

impl Settings {
    fn apply(&self, mut command: std::process::Command) -> std::process::Command {
        if let Some(queue_type) = &self.queue_type {
            command.env("CHASSIS__MESSAGING__RABBITMQ__QUEUE_TYPE", queue_type);
        }
        if let Some(threads) = self.worker_threads {
            command.env("TOKIO_WORKER_THREADS", threads.to_string());
        }
        command
    }
}

/// The running pipeline: both services and what reads shipping's log.
struct Pipeline {
    client: Arc<OrderServiceClient>,
    packed: Packed,
    order_pid: u32,
    shipping_pid: u32,
    // Dropped last: the processes, then the schemas and the broker's vhost.
    _services: (Service, Service),
    _schemas: Schemas,
    _broker: Broker,
}

impl Pipeline {
    async fn start(binaries: &(PathBuf, PathBuf), broker: Broker, settings: &Settings) -> Self {
        let schemas = Schemas::new("pipeline_bench");
        let [order_launch, shipping_launch] = launches(binaries, &schemas, &broker);
        let order = order_launch
            .start(settings.apply(order_launch.command()))
            .await;
        let mut command = settings.apply(shipping_launch.command());
        command
            .env("CHASSIS__LOGGING__FORMAT", "json")
            .env("CHASSIS__LOGGING__LEVEL", "warn,shipping_service=info")
            .stdout(Stdio::piped());
        let mut shipping = shipping_launch.start(command).await;
        let packed = watch_packed(&mut shipping);
        let client = OrderServiceClient::new(&ClientConfig::new(&order.url)).unwrap();
        Self {
            client: Arc::new(client),
            packed,
            order_pid: order.child.id(),
            shipping_pid: shipping.child.id(),
            _services: (order, shipping),
            _schemas: schemas,
            _broker: broker,
        }
    }

    /// Places `rate × seconds` orders, each at its scheduled time, then
    /// waits for them to be packed.
    async fn step(&self, rate: u32, seconds: f64) -> Step {
        let probe = speed_probe();
        let count = (f64::from(rate) * seconds).round() as usize;
        // Read outside the CPU window: psql's session costs PostgreSQL CPU.
        let wal_before = wal_flushes();
        let cpu_before = Cpu::now(self.order_pid, self.shipping_pid);
        let start = Instant::now() + Duration::from_millis(50);
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..count {
            let at = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
            let client = self.client.clone();
            let request = box_order(CITIES[i % CITIES.len()], 1 + (i % 3) as i64);
            sends.spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                let placed = client.place_order(&request).await;
                (at, Instant::now(), placed.map(|order| order.id))
            });
        }
        let mut scheduled = Vec::with_capacity(count);
        let (mut errors, mut http) = (0, Vec::with_capacity(count));
        while let Some(sent) = sends.join_next().await {
            let (at, responded, placed) = sent.expect("a send task does not panic");
            match placed {
                Ok(id) => {
                    http.push(responded - at);
                    scheduled.push((id, at));
                }
                Err(e) => {
                    errors += 1;
                    if errors <= 3 {
                        eprintln!("placing an order failed: {e}");
                    }
                }
            }
        }
        let deadline = Instant::now() + DRAIN_WAIT;
        loop {
            let done = {
                let packed = self.packed.lock().unwrap();
                scheduled.iter().all(|(id, _)| packed.contains_key(id))
            };
            if done || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cpu = Cpu::now(self.order_pid, self.shipping_pid).since(cpu_before);
        let wal_flushes = wal_before
            .zip(wal_flushes())
            .map(|(before, after)| after.saturating_sub(before));
        let packed_at = self.packed.lock().unwrap();
        let mut packed: Vec<Duration> = scheduled
            .iter()
            .filter_map(|(id, at)| {
                packed_at
                    .get(id)
                    .map(|done| done.saturating_duration_since(*at))
            })
            .collect();
        packed.sort();
        http.sort();
        Step {
            rate,
            placed: scheduled.len(),
            errors,
            missing: scheduled.len() - packed.len(),
            packed,
            http,
            cpu,
            wal_flushes,
            probe,
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Median and min–max of `values`, formatted.
fn spread(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "{:>7.2} ({:.2}–{:.2})",
        values[values.len() / 2],
        values[0],
        values[values.len() - 1]
    )
}

/// The summary of one build: per rate the median over rounds (min–max) of
/// the latencies and of the CPU per order of all measured processes
/// together (the steadier figure near saturation), and the highest rate
/// whose median p99 is below the goal with nothing lost.
fn summarize<'a>(rates: &[u32], steps: impl Fn(u32) -> &'a Vec<Step>, rounds: usize) {
    if rounds > 1 {
        println!("median over rounds (min–max), packing latency in ms:");
    }
    let mut knee = None;
    for &rate in rates {
        let runs = steps(rate);
        let p99s: Vec<f64> = runs.iter().map(|s| ms(s.p(0.99))).collect();
        let mut sorted = p99s.clone();
        sorted.sort_by(f64::total_cmp);
        let lost: usize = runs.iter().map(|s| s.missing + s.errors).sum();
        if sorted[sorted.len() / 2] < ms(P99_GOAL) && lost == 0 {
            knee = Some(knee.map_or(rate, |k: u32| k.max(rate)));
        }
        println!(
            "{rate:>5}/s  p50 {}  p90 {}  p99 {}  max {}  errors+missing {lost}",
            spread(runs.iter().map(|s| ms(s.p(0.50))).collect()),
            spread(runs.iter().map(|s| ms(s.p(0.90))).collect()),
            spread(p99s),
            spread(runs.iter().map(|s| ms(s.p(1.0))).collect()),
        );
        let flushes: Vec<f64> = runs
            .iter()
            .filter_map(Step::wal_flushes_per_order)
            .collect();
        println!(
            "         CPU µs/order, all four processes {}  WAL flushes/order {}",
            spread(runs.iter().map(Step::cpu_per_order).collect()),
            if flushes.is_empty() {
                "-".to_owned()
            } else {
                spread(flushes)
            },
        );
    }
    match knee {
        Some(rate) => println!(
            "highest rate with median p99 < {} ms and nothing lost: {rate}/s",
            P99_GOAL.as_millis()
        ),
        None => println!("no rate met p99 < {} ms", P99_GOAL.as_millis()),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and
    // only wants to know the bench builds and the pipeline packs every order.
    let benching = std::env::args().any(|a| a == "--bench");
    let smoke = !benching || std::env::var("BENCH_SMOKE").is_ok();
    let rates: Vec<u32> = if smoke {
        vec![20]
    } else {
        std::env::var("BENCH_RATES")
            .unwrap_or_else(|_| "100,200,400".into())
            .split(',')
            .map(|r| {
                r.trim()
                    .parse()
                    .expect("BENCH_RATES: comma-separated orders per second")
            })
            .collect()
    };
    let seconds: f64 = if smoke {
        1.0
    } else {
        env_or("BENCH_SECONDS", 10.0)
    };
    let rounds: usize = if smoke { 1 } else { env_or("BENCH_ROUNDS", 3) };
    let broker_name = std::env::var("BENCH_BROKER").unwrap_or_else(|_| "rabbitmq".into());
    let queue_type = std::env::var("BENCH_QUEUE_TYPE").ok();
    if let Some(queue_type) = &queue_type {
        assert!(
            broker_name == "rabbitmq" && ["quorum", "classic"].contains(&queue_type.as_str()),
            "BENCH_QUEUE_TYPE: `quorum` or `classic`, with RabbitMQ only; not `{queue_type}`"
        );
    }
    let worker_threads = std::env::var("BENCH_WORKER_THREADS").ok().map(|threads| {
        threads
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("BENCH_WORKER_THREADS: a positive integer, not `{threads}`"))
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let settings = Settings {
        queue_type: queue_type.clone(),
        worker_threads,
    };
    // The builds to measure: this tree's, or the prebuilt ones of
    // `BENCH_SERVICES` (several alternate within every round, each with
    // services, schemas and a vhost of its own).
    let builds: Vec<(String, (PathBuf, PathBuf))> = match std::env::var("BENCH_SERVICES") {
        Ok(dirs) => dirs
            .split(',')
            .map(|dir| {
                let dir = PathBuf::from(dir.trim());
                (dir.display().to_string(), binaries_in(&dir))
            })
            .collect(),
        Err(_) => vec![("this tree".to_owned(), binaries())],
    };
    runtime.block_on(async {
        let broker = || match broker_name.as_str() {
            "rabbitmq" => Broker::RabbitMq(Vhost::new("pipeline-bench")),
            "nats" => Broker::Nats(StreamPrefix::on("pipeline_bench", NATS_URL)),
            other => panic!("BENCH_BROKER: `rabbitmq` or `nats`, not `{other}`"),
        };
        let queues = match (broker_name.as_str(), queue_type.as_deref()) {
            ("rabbitmq", Some(queue_type)) => format!(" ({queue_type} queues)"),
            ("rabbitmq", None) => " (the configuration's queue type)".to_owned(),
            _ => String::new(),
        };
        let threads =
            worker_threads.map_or_else(|| "one per core".to_owned(), |threads| threads.to_string());
        println!(
            "pipeline on {broker_name}{queues} + PostgreSQL: rates {rates:?}/s, {seconds} s each, \
             {rounds} round(s), builds {:?}, services' worker threads: {threads}; load before: {}",
            builds.iter().map(|(label, _)| label).collect::<Vec<_>>(),
            loadavg()
        );
        // The running build: started when its turn comes, so an idle
        // build's services never share the machine with the measured one.
        let mut running: Option<(usize, Pipeline)> = None;
        let mut steps: HashMap<(usize, u32), Vec<Step>> = HashMap::new();
        for round in 0..rounds {
            println!("round {round}:");
            let mut build_order: Vec<usize> = (0..builds.len()).collect();
            let mut order = rates.clone();
            if round % 2 == 1 {
                build_order.reverse();
                order.reverse();
            }
            for build in build_order {
                if running.as_ref().is_none_or(|(b, _)| *b != build) {
                    drop(running.take());
                    let pipeline = Pipeline::start(&builds[build].1, broker(), &settings).await;
                    if !smoke {
                        // Warm-up, not recorded: connections, prepared
                        // statements, fresh tables' first statistics,
                        // cache-cold paths (2 s left the next step's p99
                        // several times its later value).
                        pipeline.step(rates[0], 5.0).await;
                    }
                    running = Some((build, pipeline));
                }
                if builds.len() > 1 {
                    println!(" build {}:", builds[build].0);
                }
                let (_, pipeline) = running.as_ref().expect("started above");
                for &rate in &order {
                    let step = pipeline.step(rate, seconds).await;
                    step.print();
                    if smoke {
                        assert_eq!(step.errors, 0, "orders failed to be placed");
                        assert_eq!(step.missing, 0, "orders placed but never packed");
                        assert!(step.placed > 0, "no order placed");
                    }
                    steps.entry((build, rate)).or_default().push(step);
                }
            }
        }
        drop(running);
        println!("load after: {}", loadavg());
        println!(
            "speed probe before each step, ms (lower = faster machine): {}",
            spread(steps.values().flatten().map(|s| s.probe).collect())
        );
        for (build, (label, _)) in builds.iter().enumerate() {
            if builds.len() > 1 {
                println!("build {label}:");
            }
            summarize(&rates, |rate| &steps[&(build, rate)], rounds);
        }
    });
}
