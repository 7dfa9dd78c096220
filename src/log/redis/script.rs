//! The append script: every entry this crate adds (an event, a recorded gap, the end) goes
//! through one Lua script, which refuses to add anything after the stream's end. Redis runs
//! a script atomically, so the check and the `XADD` are one step for every process: once one
//! of them has added the end, no other can add an entry after it.
//!
//! It is sent as `EVALSHA` (one round trip, the script's digest rather than its text). The
//! digest is learnt from `SCRIPT LOAD`, sent with the first `EVAL` in one pipeline; a server
//! that forgot the script (restarted, `SCRIPT FLUSH`) answers `NOSCRIPT` without running
//! anything, and the pair is sent again.

use std::sync::Arc;

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use super::error::RedisLogError;
use super::reply::{int_of, text_of};
use crate::log::remote::StreamId;
use crate::log::ring::Lock;

/// `KEYS[1]`: the stream; `KEYS[2]`, for an append with an idempotency key, the key that
/// remembers it (in the stream's slot). `ARGV[1]`: the `MAXLEN ~` bound, or empty for none.
/// `ARGV[2]`: the `MINID ~` bound of an age limit, or empty for none. `ARGV[3]`, `ARGV[4]`: the
/// event's fingerprint and the window in milliseconds (with `KEYS[2]`). `ARGV[5]`: the fields
/// part of the entry's notice, encoded by the caller. `ARGV[6…]`: the entry's fields and
/// values.
///
/// Answers `{1, id}` for the entry added; `{0, end}` when the stream's newest entry is its end
/// (then nothing is added or trimmed); `{2, id}` when the idempotency key is remembered with
/// the same fingerprint (nothing added: the first append's id); `{3, ""}` when it is remembered
/// with another. The key is remembered as `<fingerprint> <id>` for the window (`SET … PX`).
///
/// Every entry added is announced on the sharded Pub/Sub channel named like the stream
/// (`SPUBLISH <key>`, in the stream's slot on a cluster) with its [notice](super::notice): the
/// id of the entry before it, its own id and its fields, so that a reader that holds the
/// entry before it takes it from the notice without reading the stream.
pub(super) const SOURCE: &str = r"local key = KEYS[1]
local once = KEYS[2]
if once then
  local seen = redis.call('GET', once)
  if seen then
    local space = string.find(seen, ' ', 1, true)
    if space and string.sub(seen, 1, space - 1) == ARGV[3] then
      return {2, string.sub(seen, space + 1)}
    end
    return {3, ''}
  end
end
local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
if newest then
  local fields = newest[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'end' then
      return {0, newest[1]}
    end
  end
end
local id
local prev = newest and newest[1] or '0-0'
if ARGV[1] == '' then
  id = redis.call('XADD', key, '*', unpack(ARGV, 6))
else
  id = redis.call('XADD', key, 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 6))
end
if ARGV[2] ~= '' then
  redis.call('XTRIM', key, 'MINID', '~', ARGV[2])
end
redis.call('SPUBLISH', key, prev .. ' ' .. id .. '\n' .. ARGV[5])
if once then
  redis.call('SET', once, ARGV[3] .. ' ' .. id, 'PX', ARGV[4])
end
return {1, id}
";

/// What the script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Added {
    /// Added the entry, with this id.
    Entry(StreamId),
    /// Added nothing: the stream is finished, its end is this entry.
    Finished(StreamId),
    /// Added nothing: the idempotency key is remembered with this event, added as this id.
    Repeat(StreamId),
    /// Added nothing: the idempotency key is remembered with another event.
    KeyReused,
}

/// The script's digest, once the server has told it (shared by a family's logs).
pub(super) struct Script {
    sha: Lock<Option<Arc<str>>>,
}

impl Default for Script {
    fn default() -> Self {
        Script { sha: Lock::new(None) }
    }
}

impl Script {
    /// Runs the script on `key` (and `once`, the key remembering an idempotency key);
    /// `args` appends its arguments (`ARGV`) to the command.
    pub(super) async fn run(
        &self,
        connection: &mut impl ConnectionLike,
        operation: &'static str,
        (key, once): (&Arc<str>, Option<&str>),
        args: impl Fn(&mut Cmd),
    ) -> Result<Added, RedisLogError> {
        let keys = |command: &mut Cmd| {
            command.arg(1 + usize::from(once.is_some())).arg(&**key);
            if let Some(once) = once {
                command.arg(once);
            }
            args(command);
        };
        let failed = |error| RedisLogError::from_redis(operation, key, error);
        let known = self.sha.lock().clone();
        let reply = match known {
            Some(sha) => {
                let mut evalsha = redis::cmd("EVALSHA");
                evalsha.arg(&*sha);
                keys(&mut evalsha);
                match evalsha.query_async::<Value>(connection).await {
                    // The server forgot the script (it ran nothing): load it again.
                    Err(error) if error.code() == Some("NOSCRIPT") => None,
                    other => Some(other.map_err(failed)?),
                }
            }
            None => None,
        };
        let reply = match reply {
            Some(reply) => reply,
            None => self.load_and_run(connection, &keys).await.map_err(failed)?,
        };
        parse_reply(&reply).ok_or_else(|| {
            RedisLogError::unexpected(operation, key, format!("the append script answered {reply:?}"))
        })
    }

    /// `SCRIPT LOAD` and `EVAL` in one pipeline: learns the digest and runs the script.
    async fn load_and_run(
        &self,
        connection: &mut impl ConnectionLike,
        keys_and_args: &impl Fn(&mut Cmd),
    ) -> redis::RedisResult<Value> {
        let mut eval = redis::cmd("EVAL");
        eval.arg(SOURCE);
        keys_and_args(&mut eval);
        let mut pipe = redis::pipe();
        pipe.cmd("SCRIPT").arg("LOAD").arg(SOURCE);
        pipe.add_command(eval);
        let (sha, reply): (Value, Value) = pipe.query_async(connection).await?;
        if let Some(sha) = text_of(&sha) {
            *self.sha.lock() = Some(Arc::from(sha));
        }
        Ok(reply)
    }
}

/// `{1, id}`, `{0, end}`, `{2, id}` or `{3, ""}`.
fn parse_reply(reply: &Value) -> Option<Added> {
    let Value::Array(parts) = reply else { return None };
    let [flag, id] = parts.as_slice() else { return None };
    let flag = int_of(flag)?;
    if flag == 3 {
        return Some(Added::KeyReused);
    }
    let id = text_of(id).and_then(StreamId::parse)?;
    match flag {
        1 => Some(Added::Entry(id)),
        0 => Some(Added::Finished(id)),
        2 => Some(Added::Repeat(id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::redis::reply::END_FIELD;

    #[test]
    fn the_script_looks_for_the_end_field() {
        assert!(SOURCE.contains(&format!("fields[i] == '{END_FIELD}'")));
    }

    #[test]
    fn reads_what_the_script_did_and_never_panics() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let id = StreamId { major: 5, seq: 1 };
        let reply = |flag: i64, text: &str| Value::Array(vec![Value::Int(flag), bulk(text)]);
        assert_eq!(parse_reply(&reply(1, "5-1")), Some(Added::Entry(id)));
        assert_eq!(parse_reply(&reply(0, "5-1")), Some(Added::Finished(id)));
        assert_eq!(parse_reply(&reply(2, "5-1")), Some(Added::Repeat(id)));
        assert_eq!(parse_reply(&reply(3, "")), Some(Added::KeyReused));
        for bad in [
            reply(4, "5-1"),
            reply(2, ""),
            reply(1, "x"),
            Value::Array(vec![Value::Int(1)]),
            Value::Nil,
            bulk("5-1"),
        ] {
            assert_eq!(parse_reply(&bad), None, "{bad:?}");
        }
    }
}
