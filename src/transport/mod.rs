//! The transports over an [`EventSource`](crate::EventSource): SSE and long poll, and the wire
//! format they share.

pub(crate) mod long_poll;
pub(crate) mod sse;
pub(crate) mod wire;
