//! Appending: one `XADD` (and an `XTRIM` in the same `MULTI` under an age limit).

use std::time::Duration;

use redis::{Cmd, Value};

use super::error::RedisLogError;
use super::id::StreamId;
use super::reply::{text_of, GAP_FIELD};
use super::RedisLog;
use crate::Event;

impl RedisLog {
    /// Stores `event`'s fields as a new entry (or, for `None`, a recorded gap); returns the id
    /// Redis assigned.
    pub(super) async fn xadd(&self, event: Option<&Event>) -> Result<StreamId, RedisLogError> {
        let key = &self.inner.key;
        // Until its answer comes, the reader holds the subscribers' wake-up for this entry
        // if it is reading on.
        let _appending = self.inner.window.appending();
        let xadd = self.xadd_command(event);
        let mut connection = self.inner.manager.clone();
        let reply = match self.inner.max_age {
            None => xadd.query_async::<Value>(&mut connection).await,
            Some(age) => {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .add_command(xadd)
                    .add_command(self.trim_command(age))
                    .ignore();
                pipe.query_async::<Value>(&mut connection)
                    .await
                    .map(|reply| match reply {
                        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
                        other => other,
                    })
            }
        };
        let reply = reply.map_err(|e| RedisLogError::from_redis("XADD", key, e))?;
        text_of(&reply).and_then(StreamId::parse).ok_or_else(|| {
            RedisLogError::unexpected("XADD", key, format!("expected the new entry's id, got {reply:?}"))
        })
    }

    /// `XADD <key> MAXLEN ~ <n> * <fields>`.
    fn xadd_command(&self, event: Option<&Event>) -> Cmd {
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&*self.inner.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.inner.max_len)
            .arg("*");
        let Some(event) = event else {
            xadd.arg(GAP_FIELD).arg("");
            return xadd;
        };
        let mut fields = 0;
        if let Some(name) = event.name() {
            xadd.arg("name").arg(name);
            fields += 1;
        }
        if event.has_data() {
            xadd.arg("data").arg(event.data());
            fields += 1;
        }
        if let Some(retry) = event.retry() {
            xadd.arg("retry")
                .arg(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
            fields += 1;
        }
        if let Some(comment) = event.comment() {
            xadd.arg("comment").arg(comment);
            fields += 1;
        }
        if fields == 0 {
            // XADD needs a field; this one marks an event with nothing in it.
            xadd.arg("empty").arg("");
        }
        xadd
    }

    /// `XTRIM <key> MINID ~ <now - age>`, with this process's clock.
    fn trim_command(&self, age: Duration) -> Cmd {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let oldest_ms = u64::try_from(now_ms.saturating_sub(age.as_millis())).unwrap_or(0);
        let mut xtrim = redis::cmd("XTRIM");
        xtrim
            .arg(&*self.inner.key)
            .arg("MINID")
            .arg("~")
            .arg(format!("{oldest_ms}-0"));
        xtrim
    }
}
