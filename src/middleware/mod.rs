//! The middleware: [`EventStreamLayer`] over any service whose response is an
//! [`EventFeed`](crate::EventFeed), in tower-http's shape (layer, service, future).

mod future;
mod layer;
mod service;

pub(crate) use future::refusal;
pub use future::EventStreamFuture;
pub use layer::EventStreamLayer;
pub use service::EventStreamService;
