//! `cargo run -p shop-demo`: both example services in one process on the
//! embedded defaults, sample orders placed, packages shown, then where to
//! look (ports, `/docs`, curl lines); serves until Ctrl-C. `-- --once` exits
//! once every sample item is packed (0) or the wait is over (1, naming what
//! is missing). Each step says what it is doing as it starts.

use std::process::ExitCode;
use std::time::Duration;

use chassis_web::StartupError;
use shipping_service_client::dto::PackageStatus;
use shop_demo::{Demo, DemoError, DemoOptions, PackingReport, samples};

const USAGE: &str = "usage: shop-demo [--once] [--order-port N] [--shipping-port N] [--wait SECONDS] [--log-level LEVEL]";

struct Args {
    once: bool,
    wait: Duration,
    options: DemoOptions,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        once: false,
        wait: Duration::from_secs(10),
        options: DemoOptions {
            log_level: Some("warn".into()),
            ..DemoOptions::default()
        },
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--once" => parsed.once = true,
            "--order-port" => parsed.options.order_port = number(&value(&arg)?, &arg)?,
            "--shipping-port" => parsed.options.shipping_port = number(&value(&arg)?, &arg)?,
            "--wait" => parsed.wait = Duration::from_secs(number(&value(&arg)?, &arg)?),
            "--log-level" => parsed.options.log_level = Some(value(&arg)?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(parsed)
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name}: expected a non-negative integer, got `{text}`"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    println!(
        "starting the order service ({}) and the shipping service ({}) in this process:\n\
         in-memory bus, orders in memory, shipping's tables in SQLite, no server needed",
        port(args.options.order_port),
        port(args.options.shipping_port)
    );
    let demo = match Demo::start(&args.options).await {
        Ok(demo) => demo,
        Err(e) => {
            eprintln!("error: {e}");
            if let DemoError::Startup {
                source: StartupError::Bind { .. },
                ..
            } = e
            {
                eprintln!(
                    "hint: another program holds the port; pick free ones with \
                     `cargo run -p shop-demo -- --order-port 18081 --shipping-port 18082` \
                     (docs/troubleshooting.md)"
                );
            }
            return ExitCode::FAILURE;
        }
    };
    let code = match run(&demo, &args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    for problem in demo.shutdown().await {
        eprintln!("shutdown: {problem}");
    }
    code
}

fn port(port: u16) -> String {
    match port {
        0 => "a free port".into(),
        port => format!("port {port}"),
    }
}

async fn run(demo: &Demo, args: &Args) -> Result<ExitCode, shop_demo::DemoError> {
    println!("  order service    {}  up", demo.order_url());
    println!("  shipping service {}  up", demo.shipping_url());
    println!(
        "\nplacing {} sample orders through the order service's HTTP API",
        samples::orders().len()
    );
    let orders = demo.place_sample_orders().await?;
    for order in &orders {
        let units: i64 = order.items.iter().map(|i| i.quantity).sum();
        println!(
            "placed order {} for {} in {}: {} units",
            order.id, order.customer_id, order.destination.city, units
        );
    }
    println!(
        "\nwaiting for the shipping service to pack them (each completed order reaches it \
         as order.completed.v1 on the bus; at most {} s)",
        args.wait.as_secs()
    );
    let report = demo.await_packed(&orders, args.wait).await?;
    print_packages(&report);
    if !report.missing.is_empty() {
        eprintln!("\nnot packed within {:?}:", args.wait);
        for missing in &report.missing {
            eprintln!("  {missing}");
        }
        return Ok(ExitCode::FAILURE);
    }
    println!("\nevery sample item is packed");
    if args.once {
        println!(
            "--once: stopping both services (without it they keep serving, with curl lines to try)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_where_to_look(demo, &report, &orders[0].id.to_string());
    println!("\nserving until Ctrl-C");
    chassis_web::os_signal().await;
    Ok(ExitCode::SUCCESS)
}

fn print_packages(report: &PackingReport) {
    println!("\npackages:");
    for p in &report.packages {
        let status = match p.status {
            PackageStatus::Open => "open",
            PackageStatus::Sent => "sent",
        };
        println!(
            "  {} {status} to {}, {} via {}: {} of {} g",
            p.id,
            p.destination.name,
            p.destination.city,
            p.transport_provider,
            p.total_weight_grams,
            p.max_weight_grams
        );
        for item in &p.items {
            println!(
                "      {} x {} ({} g each) of order {}",
                item.quantity, item.sku, item.weight_grams, item.order_id
            );
        }
    }
    for (order_id, item) in &report.unshippable {
        println!(
            "  unshippable: {} x {} of order {order_id}: {}",
            item.quantity, item.sku, item.reason
        );
    }
}

fn print_where_to_look(demo: &Demo, report: &PackingReport, order_id: &str) {
    let (o, s) = (demo.order_url(), demo.shipping_url());
    println!("\nwhere to look:");
    println!("  order service     {o}   API docs {o}/docs   health {o}/health/ready");
    println!("  shipping service  {s}   API docs {s}/docs   health {s}/health/ready");
    let package = report
        .packages
        .first()
        .map(|p| p.id.to_string())
        .unwrap_or_default();
    println!("\ntry:");
    println!("  curl -s {o}/orders/{order_id}");
    println!("  curl -s '{s}/packages?order_id={order_id}'");
    println!("  curl -s {s}/shipments/{order_id}");
    println!(
        "  curl -s -X PUT {s}/packages/{package}/destination -H 'content-type: application/json' \\\n    \
         -d '{{\"name\":\"Ada Lovelace\",\"street\":\"1 Hyde Park\",\"city\":\"London\",\"postal_code\":\"W1J 7NT\",\"country\":\"GB\"}}'"
    );
    println!("  curl -s -X POST {s}/packages/{package}/send      # then the PUT above answers 409");
    println!("  curl -s {s}/packages/{package}/tracking");
    println!(
        "  curl -s -X POST {o}/orders -H 'content-type: application/json' \\\n    \
         -d '{{\"customer_id\":\"x\",\"destination\":{{\"name\":\"A\",\"street\":\"B\",\"city\":\"C\",\"postal_code\":\"D\",\"country\":\"E\"}},\"items\":[{{\"sku\":\"ANVIL\",\"name\":\"Anvil\",\"unit_price_cents\":9900,\"quantity\":1,\"weight_grams\":50000,\"length_mm\":400,\"width_mm\":200,\"height_mm\":300}}]}}'\n    \
         # too heavy for every provider: recorded as unshippable, see /shipments/<id>"
    );
}
