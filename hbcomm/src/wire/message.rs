//! Heartbeat's message: an ordered list of named, typed fields.

/// A field's value. Heartbeat's field types: 0 string, 1 binary, 2 struct (a nested message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// FT_STRING.
    Str(String),
    /// FT_BINARY.
    Bin(Vec<u8>),
    /// FT_STRUCT: a nested message.
    Struct(Box<Message>),
}

impl Value {
    /// Heartbeat's type number.
    pub fn type_code(&self) -> u8 {
        match self {
            Value::Str(_) => 0,
            Value::Bin(_) => 1,
            Value::Struct(_) => 2,
        }
    }
}

/// A message: fields in order (Heartbeat keeps and signs them in order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Name and value of each field.
    pub fields: Vec<(String, Value)>,
}

impl Message {
    /// An empty message.
    pub fn new() -> Self {
        Message::default()
    }

    /// Appends a string field.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.fields.push((name.to_owned(), Value::Str(value.into())));
        self
    }

    /// Appends a binary field.
    pub fn with_binary(mut self, name: &str, value: &[u8]) -> Self {
        self.fields.push((name.to_owned(), Value::Bin(value.to_vec())));
        self
    }

    /// Sets a string field, replacing the first of that name or appending it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = Value::Str(value.into());
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some((_, slot)) => *slot = value,
            None => self.fields.push((name.to_owned(), value)),
        }
    }

    /// Sets a binary field, replacing the first of that name or appending it.
    pub fn set_binary(&mut self, name: &str, value: &[u8]) {
        let value = Value::Bin(value.to_vec());
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some((_, slot)) => *slot = value,
            None => self.fields.push((name.to_owned(), value)),
        }
    }

    /// The first string field of that name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find_map(|(n, v)| match v {
            Value::Str(s) if n == name => Some(s.as_str()),
            _ => None,
        })
    }

    /// The first binary field of that name.
    pub fn get_binary(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find_map(|(n, v)| match v {
            Value::Bin(b) if n == name => Some(b.as_slice()),
            _ => None,
        })
    }

    /// Removes every field of that name.
    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| n != name);
    }
}

/// Field names the messaging layer itself uses; a client's body may not set them.
pub const RESERVED_FIELDS: &[&str] = &[
    "t",
    "st",
    "src",
    "srcuuid",
    "dest",
    "destuuid",
    "seq",
    "hg",
    "ts",
    "ttl",
    "ld",
    "dt",
    "auth",
    "protocol",
    "firstseq",
    "lastseq",
    "ackseq",
    "from_id",
    "to_id",
    "client_gen",
    "hbrs_cfd",
];
