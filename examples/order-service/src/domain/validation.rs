//! Collecting every problem of an input at once, each with the path of the
//! field it concerns (`items[2].quantity`), so a client can fix them all in
//! one round trip.

use std::fmt;

use chassis_domain::{DomainError, FieldError};

/// Every problem found in one input; empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// The violations, in the order they were found.
    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }

    /// Whether nothing was rejected.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was rejected.
    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, Self> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }

    /// A required text of at most `max` characters, without its padding
    /// ([`chassis_domain::text`]: the rule the OpenAPI schema states).
    pub(crate) fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        match chassis_domain::text::required(value, max) {
            Ok(text) => text.to_owned(),
            Err(why) => {
                self.add(field, why.to_string());
                value.trim().to_owned()
            }
        }
    }

    /// An integer in `min..=max`, converted to the target type.
    pub(crate) fn in_range<T: TryFrom<i64> + Default>(
        &mut self,
        field: &str,
        value: i64,
        min: i64,
        max: i64,
    ) -> T {
        if value < min || value > max {
            self.add(field, format!("must be between {min} and {max}"));
            return T::default();
        }
        T::try_from(value).unwrap_or_default()
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

impl From<Violations> for DomainError {
    /// A 422 naming every invalid field.
    fn from(violations: Violations) -> Self {
        DomainError::validation(violations.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_violation_with_its_path() {
        let mut v = Violations::default();
        assert_eq!(v.text("name", "  Ada ", 10), "Ada");
        v.text("city", "   ", 10);
        v.text("street", "a very long street", 5);
        let q: u32 = v.in_range("items[0].quantity", 0, 1, 10);
        assert_eq!(q, 0);
        let ok: u32 = v.in_range("items[1].quantity", 3, 1, 10);
        assert_eq!(ok, 3);
        let fields: Vec<_> = v.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(fields, ["city", "street", "items[0].quantity"]);
        assert_eq!(
            v.to_string(),
            "city: must not be empty; street: must be at most 5 characters long; \
             items[0].quantity: must be between 1 and 10"
        );
        assert!(v.clone().into_result(|| ()).is_err());
        let err = DomainError::from(v);
        assert_eq!(err.status(), 422);
        assert_eq!(err.field_errors()[0].field, "city");
        assert_eq!(Violations::default().into_result(|| 7), Ok(7));
    }
}
