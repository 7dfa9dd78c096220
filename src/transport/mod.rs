//! The transports over an [`EventFeed`](crate::EventFeed): SSE and long poll, and the wire
//! format they share.

pub(crate) mod long_poll;
pub(crate) mod sse;
pub(crate) mod watch;
pub(crate) mod wire;
