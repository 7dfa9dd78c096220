//! The negotiating transport: SSE for `Accept: text/event-stream`, long poll otherwise.

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::EventStreamLayer;
pub use service::EventStreamService;
