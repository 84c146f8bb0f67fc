//! Publish → handle throughput of the in-memory bus for a ~200-byte event,
//! with the full serialization round trip: the event is encoded to JSON, the
//! envelope to a byte frame, and both are decoded again before the typed
//! handler runs.
//!
//! Run: `cargo bench -p messaging-inmemory` (release build). Optional
//! argument: the number of events per scenario (default 1 000 000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use messaging_abstractions::{
    Envelope, EventBus, EventBusExt, Handlers, IntegrationEvent, MessagingConfig, Subscription,
};
use messaging_inmemory::InMemoryBus;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderLine {
    sku: String,
    quantity: u32,
    weight_grams: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderCompleted {
    order_id: String,
    customer_id: String,
    lines: Vec<OrderLine>,
    total_cents: u64,
}

impl IntegrationEvent for OrderCompleted {
    const EVENT_TYPE: &'static str = "order.completed.v1";
}

fn event(n: u64) -> OrderCompleted {
    OrderCompleted {
        order_id: format!("0193a5c2-7f1e-7c3a-9b1d-{n:012}"),
        customer_id: "customer-000042".into(),
        lines: vec![
            OrderLine {
                sku: "SKU-CHAIR-OAK".into(),
                quantity: 4,
                weight_grams: 7_500,
            },
            OrderLine {
                sku: "SKU-TABLE-OAK".into(),
                quantity: 1,
                weight_grams: 32_000,
            },
        ],
        total_cents: 129_900,
    }
}

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    concurrency: usize,
    prefetch: u16,
    batch: usize,
}

/// CPU time (user + system, all threads) this process used so far, from
/// `/proc/self/stat` (Linux; `None` elsewhere). The machine is shared, so
/// events per CPU-second tell the bus's cost apart from the neighbours' load.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux ABI.
    Some(Duration::from_millis(ticks * 10))
}

struct Figures {
    wall: f64,
    per_cpu_second: Option<f64>,
}

async fn measure(scenario: &Scenario, events: u64) -> Figures {
    let config = MessagingConfig {
        concurrency: scenario.concurrency,
        prefetch: scenario.prefetch,
        ..MessagingConfig::default()
    };
    let bus = InMemoryBus::new(&config);
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let handlers = Handlers::new().on_fn({
        let handled = handled.clone();
        let done = done.clone();
        move |e: OrderCompleted, _delivery| {
            let handled = handled.clone();
            let done = done.clone();
            async move {
                // Touch the decoded event so the decode cannot be skipped.
                std::hint::black_box(&e.lines);
                if handled.fetch_add(1, Ordering::AcqRel) + 1 == events {
                    done.notify_one();
                }
                Ok(())
            }
        }
    });
    bus.subscribe(Subscription::new("shipping", handlers))
        .await
        .expect("subscribe");

    let cpu_before = cpu_time();
    let started = Instant::now();
    if scenario.batch <= 1 {
        for n in 0..events {
            bus.publish_event(&event(n)).await.expect("publish");
        }
    } else {
        let mut n = 0;
        while n < events {
            let end = (n + scenario.batch as u64).min(events);
            let batch = (n..end)
                .map(|i| Envelope::for_event(&event(i)).expect("encode"))
                .collect();
            bus.publish_all(batch).await.expect("publish_all");
            n = end;
        }
    }
    tokio::time::timeout(Duration::from_secs(120), done.notified())
        .await
        .expect("every event handled within 120 s");
    let elapsed = started.elapsed();
    let cpu = cpu_before.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    bus.shutdown().await.expect("shutdown");
    Figures {
        wall: events as f64 / elapsed.as_secs_f64(),
        per_cpu_second: cpu
            .filter(|c| !c.is_zero())
            .map(|c| events as f64 / c.as_secs_f64()),
    }
}

/// Runs one measurement as a task of the runtime, so that the publisher and
/// the consumers share its two worker threads (as in a service).
fn run(runtime: &tokio::runtime::Runtime, scenario: &Scenario, events: u64) -> Figures {
    let scenario = *scenario;
    runtime.block_on(async move {
        tokio::spawn(async move { measure(&scenario, events).await })
            .await
            .expect("the measurement task does not panic")
    })
}

fn main() {
    // Without `--bench` (`cargo test --benches`, CI): a smoke run of seconds.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let events: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if smoke { 2_000 } else { 1_000_000 });
    let size = serde_json::to_vec(&event(0)).expect("encode").len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "in-memory bus, publish -> typed handler, {events} events of {size} bytes (JSON), \
         2 runtime threads; best of 3 runs"
    );
    let scenarios = [
        Scenario {
            name: "publish one by one, default flow control (concurrency 8, prefetch 64)",
            concurrency: 8,
            prefetch: 64,
            batch: 1,
        },
        Scenario {
            name: "publish_all in batches of 100, default flow control",
            concurrency: 8,
            prefetch: 64,
            batch: 100,
        },
        Scenario {
            name: "publish one by one, single consumer (concurrency 1)",
            concurrency: 1,
            prefetch: 64,
            batch: 1,
        },
    ];
    for scenario in &scenarios {
        // One warm-up round, then the best of three: the machine is shared.
        run(&runtime, scenario, events / 10);
        let runs: Vec<Figures> = (0..3).map(|_| run(&runtime, scenario, events)).collect();
        let wall = runs.iter().map(|f| f.wall).fold(0.0, f64::max);
        let cpu = runs
            .iter()
            .filter_map(|f| f.per_cpu_second)
            .fold(0.0, f64::max);
        println!(
            "{wall:>10.0} events/s wall | {cpu:>10.0} events per CPU-second | {}",
            scenario.name
        );
    }
}
