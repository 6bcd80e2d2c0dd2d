//! The routing header (wire.md §6.1, §6.2): an ordered list of name/value fields.
//!
//! Owns the header as the application sees it. Never encodes itself: the per-channel header
//! table does ([`table`](super::table)), because the encoding depends on what the channel sent before.

use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

/// One routing header field: a name and a value, both byte strings.
#[derive(Debug, Clone, Eq)]
pub struct HeaderField {
    /// The field name, 1–255 bytes, lowercase ASCII by convention.
    pub name: Bytes,
    /// The field value.
    pub value: Bytes,
}

impl PartialEq for HeaderField {
    /// Equal names and values. Fields cloned from one another (a header built once and sent
    /// many times) share their bytes and compare without reading them.
    fn eq(&self, other: &Self) -> bool {
        same_bytes(&self.name, &other.name) && same_bytes(&self.value, &other.value)
    }
}

impl std::hash::Hash for HeaderField {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.value.hash(state);
    }
}

/// Whether `a` and `b` hold the same bytes: at once when they are views of the same memory.
fn same_bytes(a: &Bytes, b: &Bytes) -> bool {
    a.len() == b.len() && (a.as_ptr() == b.as_ptr() || a[..] == b[..])
}

/// The fields a header holds without a second allocation: most routing headers have a
/// handful (a call through a router: `type`, `from`, `to`, `method`, `session`), and the shared
/// list then costs one allocation, not two.
const INLINE_FIELDS: usize = 6;

/// A header's field list.
pub(crate) type Fields = SmallVec<[HeaderField; INLINE_FIELDS]>;

impl HeaderField {
    /// The field's size as the header limits count it: `len(name) + len(value) + 32`
    /// (wire.md §6.3.1, §6.5).
    pub fn size(&self) -> usize {
        self.name.len() + self.value.len() + 32
    }
}

/// The routing header of a message (wire.md §6.1): what a router reads to forward it.
///
/// Build it once and clone it per message (clones share the bytes):
///
/// ```
/// use rhizomorph_proto::header::RoutingHeader;
/// let header = RoutingHeader::new()
///     .with("type", "method")
///     .with("to", "ws-1/echo-service")
///     .with("method", "services.echo.echo");
/// assert_eq!(header.get_str("to"), Some("ws-1/echo-service"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RoutingHeader {
    // Shared: a clone per message costs a reference count, not an allocation; changing a
    // shared header copies it first.
    fields: Arc<Fields>,
}

impl RoutingHeader {
    /// An empty header.
    pub fn new() -> Self {
        RoutingHeader::default()
    }

    /// Returns the header with `name: value` appended.
    pub fn with(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.push(name, value);
        self
    }

    /// Appends `name: value`.
    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        Arc::make_mut(&mut self.fields).push(HeaderField {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Replaces the value of the first field called `name`, or appends it (a router uses this
    /// to overwrite `from`, wire.md §6.2).
    pub fn set(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        let name = name.into();
        let value = value.into();
        let fields = Arc::make_mut(&mut self.fields);
        match fields.iter_mut().find(|f| f.name == name) {
            Some(field) => field.value = value,
            None => fields.push(HeaderField { name, value }),
        }
    }

    /// The value of the first field called `name`.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .iter()
            .find(|f| f.name == name.as_bytes())
            .map(|f| &f.value)
    }

    /// The value of the first field called `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The fields in order.
    pub fn fields(&self) -> &[HeaderField] {
        &self.fields
    }

    /// The field list to fill in place (a decoder's: no copy of the list into its allocation).
    pub(crate) fn fields_mut(&mut self) -> &mut Fields {
        Arc::make_mut(&mut self.fields)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The decoded size the limits count (wire.md §6.5).
    pub fn list_size(&self) -> usize {
        self.fields.iter().map(HeaderField::size).sum()
    }
}

impl From<Vec<HeaderField>> for RoutingHeader {
    fn from(fields: Vec<HeaderField>) -> Self {
        RoutingHeader {
            fields: Arc::new(Fields::from_vec(fields)),
        }
    }
}
