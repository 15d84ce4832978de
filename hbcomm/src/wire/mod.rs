//! Heartbeat 3.0.6's messages on the wire: the message model, its two encodings, and
//! authentication.

pub mod auth;
pub mod codec;
pub mod message;

pub use auth::{AuthError, Authenticator};
pub use codec::{decode, encode, frame, receive, Format, Framed, Limits, WireError};
pub use message::{Message, Value, RESERVED_FIELDS};
