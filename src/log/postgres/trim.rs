//! Trimming: one pass of `eventstream_trim` (see the schema) with a family's settings.

use std::sync::Arc;

use super::error::PostgresLogError;
use super::link::Session;
use super::settings::Settings;

/// Rows the age limit removes per trimming pass, the oldest first.
const TRIM_AGE_BATCH: i32 = 10_000;

/// One trimming pass over `topics` with the family's settings.
pub(super) async fn trim(
    session: &Session,
    topics: &[String],
    settings: &Settings,
) -> Result<u64, PostgresLogError> {
    let keep = settings.max_len.map(|len| i64::try_from(len).unwrap_or(i64::MAX));
    let max_age_ms = settings
        .max_age
        .map(|age| i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
    trim_with(session, topics, (keep, max_age_ms)).await
}

pub(super) async fn trim_with(
    session: &Session,
    topics: &[String],
    (keep, max_age_ms): (Option<i64>, Option<i64>),
) -> Result<u64, PostgresLogError> {
    let empty: Arc<str> = Arc::from("");
    let removed = session
        .client
        .query_one(&session.trim, &[&topics, &keep, &max_age_ms, &TRIM_AGE_BATCH])
        .await
        .map_err(|error| PostgresLogError::from_postgres("trim", &empty, error))?;
    let removed: Option<i64> = removed
        .try_get(0)
        .map_err(|error| PostgresLogError::unexpected("trim", &empty, error.to_string()))?;
    Ok(removed.map_or(0, |n| n.max(0) as u64))
}
