//! Where a package goes.

use serde::{Deserialize, Serialize};

/// Longest accepted text of one address field (what the HTTP schema states).
use shipping_service_client::dto::limits::MAX_TEXT;

/// A postal address. Two addresses are the same place when they match after
/// trimming, collapsing blanks and ignoring case ([`Address::place_key`]) —
/// `"12  Main St"` and `"12 main st"` go into the same package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    name: String,
    street: String,
    city: String,
    postal_code: String,
    country: String,
}

/// One rejected address field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidAddress {
    /// The field (`name`, `street`, `city`, `postal_code`, `country`).
    pub field: &'static str,
    /// What was expected.
    pub message: String,
}

impl Address {
    /// Validates and trims every field; reports every invalid one.
    pub fn new(
        name: &str,
        street: &str,
        city: &str,
        postal_code: &str,
        country: &str,
    ) -> Result<Self, Vec<InvalidAddress>> {
        let mut errors = Vec::new();
        // The rule the OpenAPI schema states (chassis_domain::text).
        let mut field = |field: &'static str, value: &str| match chassis_domain::text::required(
            value, MAX_TEXT,
        ) {
            Ok(text) => text.to_owned(),
            Err(why) => {
                errors.push(InvalidAddress {
                    field,
                    message: why.to_string(),
                });
                value.trim().to_owned()
            }
        };
        let address = Self {
            name: field("name", name),
            street: field("street", street),
            city: field("city", city),
            postal_code: field("postal_code", postal_code),
            country: field("country", country),
        };
        if errors.is_empty() {
            Ok(address)
        } else {
            Err(errors)
        }
    }

    /// Recipient.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Street and number.
    pub fn street(&self) -> &str {
        &self.street
    }
    /// City.
    pub fn city(&self) -> &str {
        &self.city
    }
    /// Postal code.
    pub fn postal_code(&self) -> &str {
        &self.postal_code
    }
    /// Country.
    pub fn country(&self) -> &str {
        &self.country
    }

    /// A normalized key: equal keys mean the same place. Stored as an index
    /// so open packages to a place are found without loading all of them.
    pub fn place_key(&self) -> String {
        [
            &self.name,
            &self.street,
            &self.city,
            &self.postal_code,
            &self.country,
        ]
        .iter()
        .map(|part| {
            part.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        })
        .collect::<Vec<_>>()
        .join("|")
    }

    /// Whether both addresses are the same place.
    pub fn same_place(&self, other: &Self) -> bool {
        self.place_key() == other.place_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_place_ignores_case_and_blanks() {
        let a = Address::new("Ada", "12  Main St", "London", "N1 9GU", "GB").unwrap();
        let b = Address::new(" ada ", "12 main st", "LONDON", "n1  9gu", "gb").unwrap();
        let c = Address::new("Ada", "14 Main St", "London", "N1 9GU", "GB").unwrap();
        assert!(a.same_place(&b));
        assert!(!a.same_place(&c));
        assert_eq!(b.name(), "ada");
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let long = "x".repeat(MAX_TEXT + 1);
        let errors = Address::new("", "Main St", " ", "N1", &long).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["name", "city", "country"]);
        assert_eq!(
            errors[2].to_string(),
            "country: must be at most 200 characters long"
        );
    }
}
