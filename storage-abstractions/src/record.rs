use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// Largest [`PageRequest::limit`] a provider accepts.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// Checks a collection name (`[a-z0-9_]+`, at most 63 bytes), so every
/// provider accepts and rejects the same names.
pub fn validate_collection(collection: &str) -> Result<(), StorageError> {
    let valid = !collection.is_empty()
        && collection.len() <= 63
        && collection
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "collection name `{collection}`: expected 1 to 63 characters of [a-z0-9_]"
        )))
    }
}

/// A stored aggregate: a JSON document with identity, version and index entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Collection (table-like namespace), e.g. `orders`. `[a-z0-9_]+`.
    pub collection: String,
    /// Id within the collection.
    pub id: String,
    /// Version: 1 after insert, +1 per update.
    pub version: u64,
    /// The document.
    pub data: serde_json::Value,
    /// Entries simple queries filter on. A key may appear several times
    /// (e.g. one `order_id` entry per order in a package).
    pub index: Vec<IndexEntry>,
}

impl Record {
    /// A new record at version 1.
    pub fn new(
        collection: impl Into<String>,
        id: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        Self {
            collection: collection.into(),
            id: id.into(),
            version: 1,
            data,
            index: Vec::new(),
        }
    }

    /// Adds an index entry.
    pub fn with_index(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.index.push(IndexEntry {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Checks what every provider requires of a record written with
    /// [`crate::Transaction::insert`] (`insert == true`, version 1) or
    /// [`crate::Transaction::update`] (version >= 2), and its collection name.
    pub fn validate_for_write(&self, insert: bool) -> Result<(), StorageError> {
        validate_collection(&self.collection)?;
        if insert && self.version != 1 {
            return Err(StorageError::Invalid(format!(
                "insert of {}/{}: expected version 1, got {}",
                self.collection, self.id, self.version
            )));
        }
        if !insert && self.version < 2 {
            return Err(StorageError::Invalid(format!(
                "update of {}/{}: expected version >= 2 (stored version + 1), got {}",
                self.collection, self.id, self.version
            )));
        }
        Ok(())
    }

    /// The same record one version later, ready for [`crate::Transaction::update`].
    pub fn next_version(mut self) -> Self {
        self.version += 1;
        self
    }
}

/// One write of a record, as [`crate::Transaction::write_with_outbox`] takes
/// it: the same as the transaction's `insert`, `update` or `delete`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RecordWrite {
    /// A new record at version 1 ([`crate::Transaction::insert`]).
    Insert(Record),
    /// The next version of a stored record ([`crate::Transaction::update`]).
    Update(Record),
    /// Deletes a record stored at `expected_version` ([`crate::Transaction::delete`]).
    Delete {
        /// Collection.
        collection: String,
        /// Id within the collection.
        id: String,
        /// The version the caller loaded.
        expected_version: u64,
    },
}

/// One index entry of a record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Index key, e.g. `status`.
    pub key: String,
    /// Value, e.g. `open`.
    pub value: String,
}

/// An equality filter: the record has an index entry `key = value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Index key.
    pub key: String,
    /// Required value.
    pub value: String,
}

/// A range filter: the record has an index entry for `key` whose value lies
/// within the bounds (both inclusive; `None` is unbounded). Values compare
/// by their bytes, so numbers must be zero-padded to one width (what
/// [`sortable`] does) to compare as numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeFilter {
    /// Index key.
    pub key: String,
    /// Smallest value accepted.
    pub min: Option<String>,
    /// Largest value accepted.
    pub max: Option<String>,
}

impl RangeFilter {
    /// Whether `value` lies within the bounds (byte order).
    pub fn contains(&self, value: &str) -> bool {
        self.min.as_deref().is_none_or(|min| value >= min)
            && self.max.as_deref().is_none_or(|max| value <= max)
    }
}

/// `n` as an index value that sorts as the number: 20 digits, zero-padded
/// (every `u64` fits), for [`Query::at_most`] / [`Query::at_least`].
///
/// ```
/// use storage_abstractions::sortable;
/// assert_eq!(sortable(42), "00000000000000000042");
/// assert!(sortable(9) < sortable(10));
/// ```
pub fn sortable(n: u64) -> String {
    format!("{n:020}")
}

/// Which slice of the results to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Results to skip.
    pub offset: u64,
    /// Most results to return (1..=1000).
    pub limit: u32,
}

impl PageRequest {
    /// Checks `1 <= limit <=` [`MAX_PAGE_LIMIT`].
    pub fn validate(&self) -> Result<(), StorageError> {
        if (1..=MAX_PAGE_LIMIT).contains(&self.limit) {
            Ok(())
        } else {
            Err(StorageError::Invalid(format!(
                "page limit {}: expected 1..={MAX_PAGE_LIMIT}",
                self.limit
            )))
        }
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            offset: 0,
            limit: 100,
        }
    }
}

/// A simple query: all filters must match (AND); results in insertion order,
/// oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Collection to search.
    pub collection: String,
    /// Equality filters, all of which must hold.
    pub filters: Vec<Filter>,
    /// Range filters, all of which must hold too.
    #[serde(default)]
    pub ranges: Vec<RangeFilter>,
    /// Page to return.
    pub page: PageRequest,
}

impl Query {
    /// All records of `collection` (first page).
    pub fn all(collection: impl Into<String>) -> Self {
        Self {
            collection: collection.into(),
            filters: Vec::new(),
            ranges: Vec::new(),
            page: PageRequest::default(),
        }
    }

    /// Adds an equality filter.
    pub fn filter(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.filters.push(Filter {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Adds a range filter: some entry of `key` is at most `max` (byte
    /// order; see [`sortable`] for numbers). A store answers it without
    /// handing the other records to the caller: what a due-list needs.
    pub fn at_most(mut self, key: impl Into<String>, max: impl Into<String>) -> Self {
        self.ranges.push(RangeFilter {
            key: key.into(),
            min: None,
            max: Some(max.into()),
        });
        self
    }

    /// Adds a range filter: some entry of `key` is at least `min`.
    pub fn at_least(mut self, key: impl Into<String>, min: impl Into<String>) -> Self {
        self.ranges.push(RangeFilter {
            key: key.into(),
            min: Some(min.into()),
            max: None,
        });
        self
    }

    /// Whether `record` passes every filter of this query (equality and
    /// range; the collection is not checked). What a store without query
    /// support of its own evaluates per record.
    pub fn matches(&self, record: &Record) -> bool {
        let has = |key: &str, ok: &dyn Fn(&str) -> bool| {
            record.index.iter().any(|e| e.key == key && ok(&e.value))
        };
        self.filters.iter().all(|f| has(&f.key, &|v| v == f.value))
            && self.ranges.iter().all(|r| has(&r.key, &|v| r.contains(v)))
    }

    /// Sets the page.
    pub fn page(mut self, offset: u64, limit: u32) -> Self {
        self.page = PageRequest { offset, limit };
        self
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The results on this page.
    pub items: Vec<T>,
    /// How many results match in all.
    pub total: u64,
    /// The page that was asked for.
    pub page: PageRequest,
}

impl<T> Page<T> {
    /// Maps the items, keeping the paging data.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            page: self.page,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names() {
        assert!(validate_collection("orders_2").is_ok());
        for bad in ["", "Orders", "a-b", "x y", &"a".repeat(64)] {
            assert!(matches!(
                validate_collection(bad),
                Err(StorageError::Invalid(_))
            ));
        }
    }

    #[test]
    fn page_limits() {
        assert!(PageRequest::default().validate().is_ok());
        assert!(
            PageRequest {
                offset: 0,
                limit: 0
            }
            .validate()
            .is_err()
        );
        assert!(
            PageRequest {
                offset: 0,
                limit: MAX_PAGE_LIMIT + 1
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn write_versions() {
        let r = Record::new("orders", "1", serde_json::json!({}));
        assert!(r.validate_for_write(true).is_ok());
        assert!(r.validate_for_write(false).is_err());
        let r = r.next_version();
        assert!(r.validate_for_write(false).is_ok());
        assert!(r.validate_for_write(true).is_err());
    }
}
