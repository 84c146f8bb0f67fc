//! `build` with the default features (`inmemory` only).

use chassis_core::provider::{InvalidValue, ProviderError};
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
    let bus = build(&MessagingConfig::default(), "orders").await.unwrap();
    assert_eq!(bus.provider(), "inmemory");
    assert!(bus.dead_letters().is_some());
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_provider_lists_the_known_ones() {
    let err = build(&config("kafka"), "orders").await.err().unwrap();
    assert!(
        matches!(err, MessagingInitError::Provider(ProviderError::Unknown { ref provider, .. }) if provider == "kafka")
    );
    assert_eq!(
        err.to_string(),
        "messaging.provider: unknown provider `kafka`; expected one of: inmemory, rabbitmq"
    );
}

#[cfg(not(feature = "rabbitmq"))]
#[tokio::test]
async fn provider_not_compiled_in_names_the_feature() {
    assert_eq!(messaging_init::compiled_providers(), ["inmemory"]);
    let err = build(&config("rabbitmq"), "orders").await.err().unwrap();
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
    let err = build(&c, "orders").await.err().unwrap();
    match &err {
        MessagingInitError::InvalidConfig(InvalidValue { key, expected }) => {
            assert_eq!(key, "messaging.retry.max_attempts");
            assert!(expected.contains(">= 1"), "{expected}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "messaging.retry.max_attempts: expected an integer >= 1"
    );

    let c = MessagingConfig {
        concurrency: 0,
        ..MessagingConfig::default()
    };
    let err = build(&c, "orders").await.err().unwrap();
    assert!(
        err.to_string().starts_with("messaging.concurrency: "),
        "{err}"
    );
}

/// Needs the local RabbitMQ (127.0.0.1:5672, guest/guest): fails without it.
#[cfg(feature = "rabbitmq")]
#[tokio::test]
async fn builds_the_rabbitmq_bus_when_compiled_in() {
    assert_eq!(
        messaging_init::compiled_providers(),
        ["inmemory", "rabbitmq"]
    );
    let bus = build(&config("rabbitmq"), "messaging-init-test")
        .await
        .expect("local RabbitMQ at 127.0.0.1:5672 must be running");
    assert_eq!(bus.provider(), "rabbitmq");
    bus.shutdown().await.unwrap();
}

#[cfg(feature = "rabbitmq")]
#[tokio::test]
async fn unreachable_rabbitmq_fails_start_up() {
    let mut c = config("rabbitmq");
    // Port 1 on loopback: nothing listens there.
    c.rabbitmq.url = chassis_core::Secret::new("amqp://guest:guest@127.0.0.1:1/%2f");
    let err = build(&c, "messaging-init-test").await.err().unwrap();
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
