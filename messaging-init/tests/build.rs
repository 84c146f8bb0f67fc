//! `build` with the default features (`inmemory` only).

use chassis_core::config::{Defaults, InvalidValue, JsonSource};
use chassis_core::provider::ProviderError;
use messaging_abstractions::MessagingConfig;
use messaging_init::{MessagingInitError, build};

fn config(provider: &str) -> MessagingConfig {
    MessagingConfig {
        provider: provider.into(),
        ..MessagingConfig::default()
    }
}

#[tokio::test]
async fn builds_the_inmemory_bus_by_default() {
    let bus = build(&MessagingConfig::default(), &Defaults, "orders")
        .await
        .unwrap();
    assert_eq!(bus.provider(), "inmemory");
    assert!(bus.dead_letters().is_some());
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_provider_lists_the_known_ones() {
    let err = build(&config("kafka"), &Defaults, "orders")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, MessagingInitError::Provider(ProviderError::Unknown { ref provider, .. }) if provider == "kafka")
    );
    assert_eq!(
        err.to_string(),
        "messaging.provider: unknown provider `kafka`; expected one of: inmemory, rabbitmq, nats"
    );
}

#[cfg(not(feature = "rabbitmq"))]
#[tokio::test]
async fn provider_not_compiled_in_names_the_feature() {
    assert_eq!(messaging_init::compiled_providers(), ["inmemory"]);
    let err = build(&config("rabbitmq"), &Defaults, "orders")
        .await
        .err()
        .unwrap();
    assert!(matches!(
        err,
        MessagingInitError::Provider(ProviderError::NotCompiledIn {
            feature: "rabbitmq",
            ..
        })
    ));
    assert_eq!(
        err.to_string(),
        "messaging.provider = `rabbitmq` is not compiled into this service: enable feature \
         `rabbitmq` of messaging-init (or chassis-web)"
    );
}

#[tokio::test]
async fn invalid_config_names_the_key_path() {
    let mut c = MessagingConfig::default();
    c.retry.max_attempts = 0;
    let err = build(&c, &Defaults, "orders").await.err().unwrap();
    match &err {
        MessagingInitError::InvalidConfig(InvalidValue { key, expected, .. }) => {
            assert_eq!(key, "messaging.retry.max_attempts");
            assert!(expected.contains(">= 1"), "{expected}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "messaging.retry.max_attempts: expected an integer >= 1 (from built-in default)"
    );

    let c = MessagingConfig {
        concurrency: 0,
        ..MessagingConfig::default()
    };
    let err = build(&c, &Defaults, "orders").await.err().unwrap();
    assert!(
        err.to_string().starts_with("messaging.concurrency: "),
        "{err}"
    );
}

/// Needs the local RabbitMQ (127.0.0.1:5672, guest/guest): fails without it.
/// A vhost of its own with the workspace's broker lock (shared), so it never
/// talks to the broker while a test stops it.
#[cfg(feature = "rabbitmq")]
#[tokio::test]
async fn builds_the_rabbitmq_bus_when_compiled_in() {
    assert!(messaging_init::compiled_providers().contains(&"rabbitmq"));
    let vhost = chassis_testing::rabbitmq::Vhost::new("messaging-init");
    let source = JsonSource::new(serde_json::json!({
        "messaging": {"rabbitmq": {"url": vhost.amqp_url()}}
    }));
    let bus = build(&config("rabbitmq"), &source, "messaging-init-test")
        .await
        .expect("local RabbitMQ at 127.0.0.1:5672 must be running");
    assert_eq!(bus.provider(), "rabbitmq");
    bus.shutdown().await.unwrap();
}

#[cfg(feature = "rabbitmq")]
#[tokio::test]
async fn unreachable_rabbitmq_fails_start_up() {
    // Port 1 on loopback: nothing listens there.
    let source = JsonSource::new(serde_json::json!({
        "messaging": {"rabbitmq": {"url": "amqp://guest:guest@127.0.0.1:1/%2f"}}
    }));
    let err = build(&config("rabbitmq"), &source, "messaging-init-test")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            MessagingInitError::ProviderFailed {
                provider: "rabbitmq",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("guest:guest"),
        "password leaked: {err}"
    );
}

#[tokio::test]
async fn a_provider_section_is_read_validated_and_located() {
    let source = JsonSource::new(serde_json::json!({
        "messaging": {"inmemory": {"queue_capacity": 0}}
    }));
    let err = build(&MessagingConfig::default(), &source, "orders")
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "messaging.inmemory.queue_capacity: expected an integer >= 1 (from override in code)"
    );
    let source = JsonSource::new(serde_json::json!({
        "messaging": {"inmemory": {"queue_capacity": "many"}}
    }));
    let err = messaging_init::check(&MessagingConfig::default(), &source)
        .err()
        .unwrap();
    assert!(
        err.to_string().starts_with("messaging.inmemory: expected "),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_key_of_the_section_is_refused() {
    let config: MessagingConfig =
        serde_json::from_value(serde_json::json!({"prefech": 5})).unwrap();
    let err = build(&config, &Defaults, "orders").await.err().unwrap();
    assert_eq!(
        err.to_string(),
        "messaging.prefech: expected a key of [messaging] (provider, retry, dead_letter, \
         prefetch, concurrency) or a provider's section (inmemory, rabbitmq, nats), found an unknown \
         key (from built-in default)"
    );
}

/// Needs the local NATS with JetStream (127.0.0.1:4222): fails without it.
#[cfg(feature = "nats")]
#[tokio::test]
async fn builds_the_nats_bus_when_compiled_in() {
    assert!(messaging_init::compiled_providers().contains(&"nats"));
    let bus = build(&config("nats"), &Defaults, "messaging-init-test")
        .await
        .expect("local NATS with JetStream at 127.0.0.1:4222 must be running");
    assert_eq!(bus.provider(), "nats");
    bus.shutdown().await.unwrap();
}

#[cfg(feature = "nats")]
#[tokio::test]
async fn the_nats_section_is_read_and_validated() {
    let source = JsonSource::new(serde_json::json!({
        "messaging": {"nats": {"subject_prefix": "a.b"}}
    }));
    let err = build(&config("nats"), &source, "orders")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, MessagingInitError::InvalidConfig(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("messaging.nats.subject_prefix: expected "),
        "{err}"
    );
    assert!(
        err.to_string().ends_with("(from override in code)"),
        "{err}"
    );
}
