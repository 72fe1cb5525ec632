//! [`PayloadJson`]: a serialised payload in the pieces it is sent in.

use bytes::Bytes;

/// A serialised payload: the recipient's own head and the message's shared
/// tail, which together are the JSON document. Cheap to clone; written,
/// signed and sent piece by piece, never joined unless asked. Equal when
/// the documents are, however they are cut.
#[derive(Debug, Clone)]
pub struct PayloadJson {
    head: Bytes,
    tail: Bytes,
}

impl PayloadJson {
    /// A document cut in two: the recipient's head, the message's tail.
    pub(super) fn new(head: Bytes, tail: Bytes) -> Self {
        Self { head, tail }
    }

    /// A document kept whole (read back from the spool).
    pub fn whole(json: Bytes) -> Self {
        Self {
            head: json,
            tail: Bytes::new(),
        }
    }

    /// Length in bytes of the whole document.
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> [&Bytes; 2] {
        [&self.head, &self.tail]
    }

    /// The document in one piece (a copy, unless it is one piece already).
    pub fn to_bytes(&self) -> Bytes {
        if self.tail.is_empty() {
            return self.head.clone();
        }
        let mut whole = Vec::with_capacity(self.len());
        whole.extend_from_slice(&self.head);
        whole.extend_from_slice(&self.tail);
        Bytes::from(whole)
    }
}

impl PartialEq for PayloadJson {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.to_bytes() == other.to_bytes()
    }
}

impl Eq for PayloadJson {}

impl From<Bytes> for PayloadJson {
    fn from(json: Bytes) -> Self {
        Self::whole(json)
    }
}
