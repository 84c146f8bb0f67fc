//! Quotes over the bus: the order service asks how the items of an order
//! would ship (`shipping.quote.v1`, contract in
//! `shipping_service_client::quote`); shipping answers with its own packing
//! rules and carrier choice ([`crate::domain::pack`]).
//!
//! A quote packs the items as an order of their own into new packages: it
//! does not count the room left in open packages to the same place, which
//! changes until the order completes (the real packing then may share a
//! package and need fewer). Nothing is stored; answering twice is harmless.
//! An invalid destination is answered with a permanent failure naming the
//! fields (the requester sees `RequestError::Failed`).

use std::sync::Arc;

use chassis_domain::DomainError;
use chassis_domain::messaging::{HandlerError, Responders};
use chassis_web::{BoxError, ServiceContext};
use shipping_service_client::dto;
use shipping_service_client::quote::{Quote, QuoteRequest, QuotedPackage};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{
    Dimensions, ItemToPack, OrderToPack, Packing, ShippingConfig, TransportProviders, pack,
};
use crate::integration;

/// The consumer group answering quotes: a group of its own so a quote never
/// waits behind a backlog of events.
pub fn group(service: &str) -> String {
    format!("{service}-quotes")
}

/// Start hook: answers `shipping.quote.v1` on the service's bus.
pub async fn serve(ctx: ServiceContext) -> Result<(), BoxError> {
    let config: ShippingConfig = ctx.section("shipping")?;
    let providers = Arc::new(TransportProviders::from_config(&config)?);
    Responders::new()
        .on_fn(move |request: QuoteRequest, _delivery| {
            let providers = providers.clone();
            async move { quote(&providers, &request).map_err(refusal) }
        })
        .subscribe(ctx.bus(), group(ctx.name()))
        .await?;
    Ok(())
}

fn refusal(error: DomainError) -> HandlerError {
    let fields: Vec<String> = error
        .field_errors()
        .iter()
        .map(|f| format!("{}: {}", f.field, f.detail))
        .collect();
    if fields.is_empty() {
        HandlerError::permanent(error)
    } else {
        HandlerError::permanent(format!("invalid quote request: {}", fields.join("; ")))
    }
}

/// The quote for `request` by the packing rules.
pub fn quote(providers: &TransportProviders, request: &QuoteRequest) -> Result<Quote, DomainError> {
    let destination = integration::address(&request.destination.clone().into())
        .map_err(|e| prefixed("destination.", e))?;
    let order = OrderToPack {
        // A quote is nobody's order.
        order_id: Uuid::nil(),
        destination,
        items: request
            .items
            .iter()
            .map(|i| ItemToPack {
                sku: i.sku.clone(),
                quantity: i.quantity,
                weight_grams: i.weight_grams,
                dimensions: Dimensions::new(i.length_mm, i.width_mm, i.height_mm),
            })
            .collect(),
    };
    let Packing::Packed(packed) = pack(
        &order,
        None,
        Vec::new(),
        providers,
        OffsetDateTime::now_utc(),
    ) else {
        unreachable!("an order without a shipment is always packed")
    };
    let packages: Vec<QuotedPackage> = packed
        .opened
        .iter()
        .map(|p| QuotedPackage {
            transport_provider: p.transport_provider().name().to_owned(),
            weight_grams: p.total_weight_grams(),
            units: p.items().iter().map(|i| i.quantity).sum(),
        })
        .collect();
    let transport_provider = match packages.split_first() {
        Some((first, rest))
            if rest
                .iter()
                .all(|p| p.transport_provider == first.transport_provider) =>
        {
            Some(first.transport_provider.clone())
        }
        _ => None,
    };
    Ok(Quote {
        transport_provider,
        package_count: u32::try_from(packages.len()).unwrap_or(u32::MAX),
        packages,
        unshippable: packed
            .shipment
            .unshippable()
            .iter()
            .map(|u| dto::UnshippableItem {
                sku: u.sku.clone(),
                quantity: u.quantity,
                reason: u.reason.to_string(),
            })
            .collect(),
    })
}

/// The address errors of `error` under `prefix` (`destination.city`).
fn prefixed(prefix: &str, error: DomainError) -> DomainError {
    let fields = error.field_errors().to_vec();
    if fields.is_empty() {
        return error;
    }
    DomainError::validation(fields.into_iter().map(|mut f| {
        f.field = format!("{prefix}{}", f.field);
        f
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipping_service_client::quote::QuoteItem;

    fn request(items: Vec<QuoteItem>) -> QuoteRequest {
        QuoteRequest {
            destination: shipping_service_client::quote::Destination {
                name: "Ada".into(),
                street: "1 Main St".into(),
                city: "London".into(),
                postal_code: "N1".into(),
                country: "GB".into(),
            },
            items,
        }
    }

    fn item(sku: &str, quantity: u32, weight_grams: u32, side_mm: u32) -> QuoteItem {
        QuoteItem {
            sku: sku.into(),
            quantity,
            weight_grams,
            length_mm: side_mm,
            width_mm: side_mm,
            height_mm: side_mm,
        }
    }

    fn providers() -> TransportProviders {
        TransportProviders::from_config(&ShippingConfig::default()).unwrap()
    }

    #[test]
    fn quotes_follow_the_packing_rules() {
        // As in the crate example: 31.5 kg per parcel, three 12 kg lamps.
        let quote = quote(&providers(), &request(vec![item("LAMP", 3, 12_000, 300)])).unwrap();
        assert_eq!(quote.package_count, 2);
        assert_eq!(
            quote
                .packages
                .iter()
                .map(|p| p.weight_grams)
                .collect::<Vec<_>>(),
            [24_000, 12_000]
        );
        assert_eq!(quote.packages.iter().map(|p| p.units).sum::<u32>(), 3);
        assert!(quote.transport_provider.is_some());
        assert!(quote.unshippable.is_empty());
    }

    #[test]
    fn unshippable_lines_and_invalid_destinations_are_reported() {
        let quote = quote(
            &providers(),
            &request(vec![
                item("ANVIL", 1, 5_000_000, 300),
                item("PEN", 1, 10, 10),
            ]),
        )
        .unwrap();
        assert_eq!(quote.package_count, 1);
        assert_eq!(quote.unshippable.len(), 1);
        assert_eq!(quote.unshippable[0].sku, "ANVIL");

        let mut bad = request(vec![item("PEN", 1, 10, 10)]);
        bad.destination.city = String::new();
        let err = super::quote(&providers(), &bad).unwrap_err();
        assert_eq!(err.field_errors()[0].field, "destination.city");
        assert!(refusal(err).reason.contains("destination.city"));
    }
}
