//! The in-memory side of a service's AsyncAPI document: no server and no
//! headers (messages never leave the process); event types are addresses.

use messaging_abstractions::asyncapi::BrokerBinding;

use crate::InMemoryConfig;

impl BrokerBinding for InMemoryConfig {
    fn provider(&self) -> &'static str {
        "inmemory"
    }
}
