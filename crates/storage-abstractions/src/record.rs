use serde::{Deserialize, Serialize};

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

    /// The same record one version later, ready for [`crate::Transaction::update`].
    pub fn next_version(mut self) -> Self {
        self.version += 1;
        self
    }
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

/// Which slice of the results to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Results to skip.
    pub offset: u64,
    /// Most results to return (1..=1000).
    pub limit: u32,
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
    /// Page to return.
    pub page: PageRequest,
}

impl Query {
    /// All records of `collection` (first page).
    pub fn all(collection: impl Into<String>) -> Self {
        Self {
            collection: collection.into(),
            filters: Vec::new(),
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
