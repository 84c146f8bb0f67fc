//! Cost of one `tracing` span (create, enter, exit, close) per provider, and
//! of envelope injection, on the subscriber shape a host uses.
//!
//! `cargo bench -p traces-init --features otlp --bench span_overhead`
//!
//! The subscriber is the host's shape: a `Registry` with a `Vec` of boxed
//! layers, a stand-in for the logging layer first (it records nothing), then
//! the tracing layer if any. `none` adds no layer, so its figure is the
//! baseline any host pays for `tracing` spans at all.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chassis_core::config::{Defaults, JsonSource};
use otlp_test_receiver::OtlpReceiver;
use traces_abstractions::TracingConfig;
/// A layer as the host hands it to the logging provider.
type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
use traces_init::{TracingProvider, propagation};
use tracing_subscriber::layer::{Identity, SubscriberExt};

const SPANS: u32 = 200_000;
/// Spans per provider of a smoke run (without `--bench`: `cargo test --benches`, CI).
const SMOKE_SPANS: u32 = 500;

fn per_op(elapsed: Duration, n: u32) -> f64 {
    elapsed.as_nanos() as f64 / f64::from(n)
}

fn measure(label: &str, provider: &TracingProvider, spans: u32) {
    let logging_stand_in: BoxedLayer = Box::new(Identity::new());
    let mut layers = vec![logging_stand_in];
    layers.extend(provider.layer());
    let subscriber = tracing_subscriber::registry().with(layers);
    tracing::subscriber::with_default(subscriber, || {
        // Warm up thread-locals and callsite registration.
        for i in 0..1_000u32 {
            tracing::info_span!("request", i).in_scope(|| black_box(i));
        }
        let start = Instant::now();
        for i in 0..spans {
            tracing::info_span!("request", i).in_scope(|| black_box(i));
        }
        let span_ns = per_op(start.elapsed(), spans);

        let outer = tracing::info_span!("publish");
        let _entered = outer.enter();
        let start = Instant::now();
        for _ in 0..spans {
            let (mut tp, mut ts) = (None, None);
            black_box(propagation::inject_current(&mut tp, &mut ts));
            black_box((tp, ts));
        }
        let inject_ns = per_op(start.elapsed(), spans);
        println!("{label:<28} span: {span_ns:>8.0} ns   inject_current: {inject_ns:>6.0} ns");
    });
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let spans = if smoke { SMOKE_SPANS } else { SPANS };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let receiver = OtlpReceiver::start().await.expect("receiver");
        let otlp = |ratio: f64| {
            let config = TracingConfig {
                provider: "otlp".into(),
                sampling_ratio: ratio,
                service_name: Some("bench".into()),
                ..TracingConfig::default()
            };
            let source = JsonSource::new(serde_json::json!({
                "tracing": { "otlp": { "protocol": "grpc", "endpoint": receiver.grpc_endpoint() } }
            }));
            traces_init::build_with_env(&config, &source, &|_| None).expect("otlp provider")
        };

        println!("{spans} spans per provider");
        let none =
            traces_init::build_with_env(&TracingConfig::default(), &Defaults, &|_| None).unwrap();
        measure("none (no layer)", &none, spans);
        let sampled_out = otlp(0.0);
        measure("otlp, sampling_ratio 0.0", &sampled_out, spans);
        let sampled = otlp(1.0);
        measure("otlp, sampling_ratio 1.0", &sampled, spans);

        sampled_out.shutdown().await.expect("shutdown");
        sampled.shutdown().await.expect("shutdown");
        // The batch queue (2048 by default, `OTEL_BSP_MAX_QUEUE_SIZE`) drops
        // what a tight loop produces faster than one exporter sends.
        println!(
            "spans received by the collector: {}",
            receiver.spans().len()
        );
        receiver.shutdown().await;
    });
}
