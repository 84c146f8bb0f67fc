//! Transport providers, what they can carry, and the shipping items'
//! physical traits.

use std::cmp::Reverse;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Size of one unit, in millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dimensions {
    /// Length.
    pub length_mm: u32,
    /// Width.
    pub width_mm: u32,
    /// Height.
    pub height_mm: u32,
}

impl Dimensions {
    /// A size.
    pub fn new(length_mm: u32, width_mm: u32, height_mm: u32) -> Self {
        Self {
            length_mm,
            width_mm,
            height_mm,
        }
    }

    fn sorted(self) -> [u32; 3] {
        let mut sides = [self.length_mm, self.width_mm, self.height_mm];
        sides.sort_unstable();
        sides
    }

    /// Whether something of this size fits into `limit`, turned whichever
    /// way suits: compare the sides from shortest to longest.
    pub fn fits_within(self, limit: Self) -> bool {
        let (a, b) = (self.sorted(), limit.sorted());
        a.iter().zip(b.iter()).all(|(x, y)| x <= y)
    }
}

impl fmt::Display for Dimensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}×{}×{} mm",
            self.length_mm, self.width_mm, self.height_mm
        )
    }
}

/// A transport provider as configured.
///
/// ```toml
/// [[shipping.transport_providers]]
/// name = "parcel-post"
/// max_weight_grams = 31500
/// max_dimensions_mm = [1200, 600, 600]   # optional: no size limit when absent
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportProviderConfig {
    /// Name shown on packages: letters, digits, `-`, `_`.
    pub name: String,
    /// Heaviest package it takes, in grams.
    pub max_weight_grams: u64,
    /// Largest item it takes (length, width, height in mm; any orientation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_dimensions_mm: Option<[u32; 3]>,
}

/// The service's own configuration section, `[shipping]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShippingConfig {
    /// The providers packages can go with, in order of preference on ties.
    pub transport_providers: Vec<TransportProviderConfig>,
}

impl Default for ShippingConfig {
    /// Two providers that run the examples: a parcel service and a carrier
    /// for long goods.
    fn default() -> Self {
        Self {
            transport_providers: vec![
                TransportProviderConfig {
                    name: "parcel-post".into(),
                    max_weight_grams: 31_500,
                    max_dimensions_mm: Some([1200, 600, 600]),
                },
                TransportProviderConfig {
                    name: "long-goods-freight".into(),
                    max_weight_grams: 20_000,
                    max_dimensions_mm: Some([3000, 500, 500]),
                },
            ],
        }
    }
}

/// An invalid `[shipping]` section; names the key path and the expectation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {expected}")]
pub struct InvalidShippingConfig {
    /// Key path, e.g. `shipping.transport_providers[1].max_weight_grams`.
    pub key: String,
    /// What was expected.
    pub expected: String,
}

/// A provider packages can go with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportProvider {
    name: String,
    max_weight_grams: u64,
    max_dimensions: Option<Dimensions>,
}

impl TransportProvider {
    /// A provider as a stored package copied it (its limits at packing time).
    pub(crate) fn restore(
        name: String,
        max_weight_grams: u64,
        max_dimensions: Option<Dimensions>,
    ) -> Self {
        Self {
            name,
            max_weight_grams,
            max_dimensions,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Heaviest package it takes, in grams.
    pub fn max_weight_grams(&self) -> u64 {
        self.max_weight_grams
    }

    /// Largest item it takes, if limited.
    pub fn max_dimensions(&self) -> Option<Dimensions> {
        self.max_dimensions
    }

    /// Whether an item of this size fits this provider's packages.
    pub fn takes_size(&self, dimensions: Dimensions) -> bool {
        self.max_dimensions
            .is_none_or(|limit| dimensions.fits_within(limit))
    }

    /// Whether it can carry one unit of this weight and size.
    pub fn can_carry(&self, weight_grams: u32, dimensions: Dimensions) -> bool {
        u64::from(weight_grams) <= self.max_weight_grams && self.takes_size(dimensions)
    }
}

/// Why no provider can carry an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UnshippableReason {
    /// Heavier than any provider takes.
    TooHeavy {
        /// Weight of one unit.
        weight_grams: u32,
        /// The most any provider takes.
        max_weight_grams: u64,
    },
    /// Larger than any provider takes.
    TooLarge {
        /// Size of one unit.
        dimensions: Dimensions,
    },
    /// Providers take the weight and others the size, but none both.
    NoProviderForWeightAndSize {
        /// Weight of one unit.
        weight_grams: u32,
        /// Size of one unit.
        dimensions: Dimensions,
    },
    /// The order sent data no package can hold (zero weight, size or quantity).
    InvalidItem {
        /// What is wrong.
        problem: String,
    },
}

impl fmt::Display for UnshippableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooHeavy {
                weight_grams,
                max_weight_grams,
            } => write!(
                f,
                "one unit weighs {weight_grams} g; no transport provider takes more than \
                 {max_weight_grams} g"
            ),
            Self::TooLarge { dimensions } => write!(
                f,
                "one unit measures {dimensions}; no transport provider takes an item that large"
            ),
            Self::NoProviderForWeightAndSize {
                weight_grams,
                dimensions,
            } => write!(
                f,
                "no transport provider takes an item of {weight_grams} g measuring {dimensions}"
            ),
            Self::InvalidItem { problem } => write!(f, "invalid item: {problem}"),
        }
    }
}

/// The configured providers, in configuration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportProviders(Vec<TransportProvider>);

impl TransportProviders {
    /// Validates the `[shipping]` section: at least one provider, unique
    /// names made of letters, digits, `-` and `_`, weights and sizes above 0.
    pub fn from_config(config: &ShippingConfig) -> Result<Self, InvalidShippingConfig> {
        let invalid = |key: String, expected: &str| InvalidShippingConfig {
            key,
            expected: expected.to_owned(),
        };
        if config.transport_providers.is_empty() {
            return Err(invalid(
                "shipping.transport_providers".into(),
                "expected at least one transport provider",
            ));
        }
        let mut providers: Vec<TransportProvider> = Vec::new();
        for (i, p) in config.transport_providers.iter().enumerate() {
            let key = format!("shipping.transport_providers[{i}]");
            let name_ok = !p.name.is_empty()
                && p.name.len() <= 64
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !name_ok {
                return Err(invalid(
                    format!("{key}.name"),
                    "expected 1 to 64 letters, digits, `-` or `_`",
                ));
            }
            if providers.iter().any(|q| q.name == p.name) {
                return Err(invalid(
                    format!("{key}.name"),
                    &format!("expected a unique name; `{}` appears twice", p.name),
                ));
            }
            if p.max_weight_grams == 0 {
                return Err(invalid(
                    format!("{key}.max_weight_grams"),
                    "expected an integer > 0",
                ));
            }
            if p.max_dimensions_mm.is_some_and(|d| d.contains(&0)) {
                return Err(invalid(
                    format!("{key}.max_dimensions_mm"),
                    "expected three integers > 0 (length, width, height in mm)",
                ));
            }
            providers.push(TransportProvider {
                name: p.name.clone(),
                max_weight_grams: p.max_weight_grams,
                max_dimensions: p
                    .max_dimensions_mm
                    .map(|[l, w, h]| Dimensions::new(l, w, h)),
            });
        }
        Ok(Self(providers))
    }

    /// The providers, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &TransportProvider> {
        self.0.iter()
    }

    /// The provider a new package for this item goes with: among those that
    /// can carry one unit, the one with the **largest maximum weight**, so the
    /// package can take the most further items (fewer packages, lower cost);
    /// on a tie the one configured first. If none can, why not.
    pub fn choose(
        &self,
        weight_grams: u32,
        dimensions: Dimensions,
    ) -> Result<&TransportProvider, UnshippableReason> {
        let best = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, p)| p.can_carry(weight_grams, dimensions))
            .min_by_key(|(i, p)| (Reverse(p.max_weight_grams), *i))
            .map(|(_, p)| p);
        best.ok_or_else(|| {
            let max_weight_grams = self.0.iter().map(|p| p.max_weight_grams).max().unwrap_or(0);
            if u64::from(weight_grams) > max_weight_grams {
                UnshippableReason::TooHeavy {
                    weight_grams,
                    max_weight_grams,
                }
            } else if !self.0.iter().any(|p| p.takes_size(dimensions)) {
                UnshippableReason::TooLarge { dimensions }
            } else {
                UnshippableReason::NoProviderForWeightAndSize {
                    weight_grams,
                    dimensions,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, max: u64, dims: Option<[u32; 3]>) -> TransportProviderConfig {
        TransportProviderConfig {
            name: name.into(),
            max_weight_grams: max,
            max_dimensions_mm: dims,
        }
    }

    fn providers(list: Vec<TransportProviderConfig>) -> TransportProviders {
        TransportProviders::from_config(&ShippingConfig {
            transport_providers: list,
        })
        .unwrap()
    }

    #[test]
    fn sizes_fit_in_any_orientation() {
        let limit = Dimensions::new(1200, 600, 600);
        assert!(Dimensions::new(600, 1200, 100).fits_within(limit));
        assert!(Dimensions::new(1200, 600, 600).fits_within(limit));
        assert!(!Dimensions::new(1201, 10, 10).fits_within(limit));
        assert!(!Dimensions::new(700, 700, 10).fits_within(limit));
        assert_eq!(Dimensions::new(1, 2, 3).to_string(), "1×2×3 mm");
    }

    #[test]
    fn the_largest_capacity_that_can_carry_wins_ties_go_to_the_first() {
        let p = providers(vec![
            provider("small", 5_000, None),
            provider("big-a", 30_000, Some([1000, 500, 500])),
            provider("big-b", 30_000, None),
            provider("long", 20_000, Some([3000, 400, 400])),
        ]);
        let small_box = Dimensions::new(200, 200, 200);
        assert_eq!(p.choose(1_000, small_box).unwrap().name(), "big-a");
        // Too long for big-a: big-b has the same capacity and no size limit.
        let long = Dimensions::new(2500, 100, 100);
        assert_eq!(p.choose(1_000, long).unwrap().name(), "big-b");
        // Exactly at the limit is carried; one gram over is not.
        assert_eq!(p.choose(30_000, small_box).unwrap().name(), "big-a");
        assert_eq!(
            p.choose(30_001, small_box),
            Err(UnshippableReason::TooHeavy {
                weight_grams: 30_001,
                max_weight_grams: 30_000
            })
        );
    }

    #[test]
    fn reasons_say_why_nothing_can_carry() {
        let p = providers(vec![
            provider("parcel", 30_000, Some([1000, 500, 500])),
            provider("long", 5_000, Some([3000, 300, 300])),
        ]);
        let huge = Dimensions::new(4000, 100, 100);
        let reason = p.choose(100, huge).unwrap_err();
        assert_eq!(reason, UnshippableReason::TooLarge { dimensions: huge });
        assert_eq!(
            reason.to_string(),
            "one unit measures 4000×100×100 mm; no transport provider takes an item that large"
        );
        // Long enough only for `long`, heavy enough only for `parcel`.
        let long = Dimensions::new(2000, 100, 100);
        assert_eq!(
            p.choose(10_000, long).unwrap_err(),
            UnshippableReason::NoProviderForWeightAndSize {
                weight_grams: 10_000,
                dimensions: long
            }
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let check = |list: Vec<TransportProviderConfig>| {
            TransportProviders::from_config(&ShippingConfig {
                transport_providers: list,
            })
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            check(vec![]),
            "shipping.transport_providers: expected at least one transport provider"
        );
        assert_eq!(
            check(vec![provider("a", 1, None), provider("b", 0, None)]),
            "shipping.transport_providers[1].max_weight_grams: expected an integer > 0"
        );
        assert!(
            check(vec![provider("a", 1, None), provider("a", 2, None)])
                .starts_with("shipping.transport_providers[1].name: expected a unique name")
        );
        assert!(
            check(vec![provider("bad name", 1, None)])
                .starts_with("shipping.transport_providers[0].name")
        );
        assert!(
            check(vec![provider("a", 1, Some([1, 0, 1]))])
                .starts_with("shipping.transport_providers[0].max_dimensions_mm")
        );
    }

    #[test]
    fn the_default_config_is_valid_and_reads_from_toml_like_json() {
        let p = TransportProviders::from_config(&ShippingConfig::default()).unwrap();
        assert_eq!(p.iter().count(), 2);
        let c: ShippingConfig = serde_json::from_value(serde_json::json!({
            "transport_providers": [{"name": "x", "max_weight_grams": 10}]
        }))
        .unwrap();
        assert_eq!(c.transport_providers[0].max_dimensions_mm, None);
    }
}
