//! One connection type for a single server and for a Redis Cluster, so that the appends,
//! the reads and the reader are written once for both.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

/// A connection commands go through: to one server, or routed by key to the cluster node
/// that serves the key's slot (following `MOVED` and `ASK`, and the new primary after a
/// failover).
#[derive(Clone)]
pub(super) enum Connection {
    /// A single server, reconnecting by itself (appends and reads).
    Server(ConnectionManager),
    /// A single server's connection that the reader reconnects itself (its Pub/Sub).
    Node(MultiplexedConnection),
    /// A Redis Cluster: one connection per node, reconnecting and re-routing by itself.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(connection) => connection.req_packed_command(cmd),
            Connection::Node(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(connection) => connection.req_packed_commands(pipeline, offset, count),
            Connection::Node(connection) => connection.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(connection) => connection.get_db(),
            Connection::Node(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// Whether `error` is a cluster's redirection or a pause of a slot (`MOVED`, `ASK`,
/// `TRYAGAIN`, `CLUSTERDOWN`), alone or inside an aborted transaction. The cluster client
/// follows such answers to single commands by itself, but not inside a `MULTI`.
pub(super) fn redirected(error: &RedisError) -> bool {
    if error.is_cluster_error() {
        return true;
    }
    let Some(errors) = error.clone().into_server_errors() else {
        return false;
    };
    errors.iter().any(|(_, error)| {
        matches!(
            error.kind(),
            Some(
                ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            )
        )
    })
}
