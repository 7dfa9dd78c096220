//! The crate's diagnostics: `warn_event!` and `debug_event!` that become `tracing` events with the
//! `tracing` feature and nothing without it (while still using their fields, so that no
//! variable goes unused in either build).
//!
//! `warn_event!("message", field = %display_value, other = ?debug_value)`.

macro_rules! warn_event {
    ($message:literal $(, $field:ident = $sigil:tt $value:expr)* $(,)?) => {{
        #[cfg(feature = "tracing")]
        ::tracing::warn!($($field = $sigil $value,)* $message);
        #[cfg(not(feature = "tracing"))]
        {
            $(let _ = &$value;)*
        }
    }};
}

macro_rules! debug_event {
    ($message:literal $(, $field:ident = $sigil:tt $value:expr)* $(,)?) => {{
        #[cfg(feature = "tracing")]
        ::tracing::debug!($($field = $sigil $value,)* $message);
        #[cfg(not(feature = "tracing"))]
        {
            $(let _ = &$value;)*
        }
    }};
}

pub(crate) use {debug_event, warn_event};
