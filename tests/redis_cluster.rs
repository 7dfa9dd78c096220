//! A Redis Cluster of the test's own (feature `redis`): it forms, keys spread over its three
//! primaries, and a killed primary's replica takes over with what was replicated to it.
//!
//! Each test starts its own cluster (six `redis-server` processes on free loopback ports,
//! joined with `redis-cli --cluster create`) and kills it when done. Without `redis-server`
//! and `redis-cli` on the PATH (Debian packages `redis-server` and `redis-tools`) the tests
//! are skipped with a warning, except under CI (`CI` set), where they fail.

#![cfg(feature = "redis")]

mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use redis::cluster_async::ClusterConnection;
use support::redis_cluster::RedisCluster;
use support::{report, within};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Keys `a`, `b`, … `z`, `aa`, `ab`, …: the first that lands on each primary, by primary.
fn key_on_each_primary(cluster: &RedisCluster) -> BTreeMap<u16, String> {
    let primaries = cluster.primaries();
    let letters = || ('a'..='z').map(String::from);
    let mut keys = BTreeMap::new();
    for key in letters().chain(letters().flat_map(|first| letters().map(move |l| first.clone() + &l))) {
        keys.entry(cluster.primary_of(&key)).or_insert(key);
        if keys.len() == primaries.len() {
            break;
        }
    }
    assert_eq!(
        keys.keys().copied().collect::<Vec<_>>(),
        primaries,
        "a key on each primary"
    );
    keys
}

async fn set(connection: &mut ClusterConnection, key: &str, value: &str) {
    let () = within(
        "SET through the cluster",
        redis::cmd("SET").arg(key).arg(value).query_async(connection),
    )
    .await
    .unwrap_or_else(|error| panic!("SET {key}: {error}"));
}

async fn get(connection: &mut ClusterConnection, key: &str) -> Option<String> {
    within(
        "GET through the cluster",
        redis::cmd("GET").arg(key).query_async(connection),
    )
    .await
    .unwrap_or_else(|error| panic!("GET {key}: {error}"))
}

/// `GET key` on the node on `port` alone, over a plain connection: no redirection followed.
async fn get_on_node(port: u16, key: &str) -> redis::RedisResult<Option<String>> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("node URL");
    let mut connection = within("connect to a node", client.get_multiplexed_async_connection())
        .await
        .expect("connect to a node");
    within(
        "GET on a node",
        redis::cmd("GET").arg(key).query_async(&mut connection),
    )
    .await
}

/// Writes `key` through the cluster and waits (`WAIT 1 1000`, on every primary over the
/// connection that wrote) until a replica of its primary acknowledged it.
async fn set_replicated(connection: &mut ClusterConnection, key: &str, value: &str) {
    set(connection, key, value).await;
    let acknowledged: i64 = within(
        "WAIT through the cluster",
        redis::cmd("WAIT").arg(1).arg(1000).query_async(connection),
    )
    .await
    .expect("WAIT");
    assert_eq!(acknowledged, 1, "one replica acknowledged {key}");
}

// ---------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_forms_with_keys_on_three_primaries_each_with_a_replica() {
    let started = Instant::now();
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    report(&format!(
        "redis_cluster: a cluster formed in {:?}",
        started.elapsed()
    ));
    assert_eq!(cluster.ports().len(), 6);
    assert_eq!(cluster.node_urls().len(), 6);
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "three primaries: {primaries:?}");
    assert!(cluster.node_urls().contains(&cluster.seed_url()));
    assert!(primaries
        .iter()
        .any(|port| cluster.seed_url() == format!("redis://127.0.0.1:{port}")));
    let mut replicas: Vec<u16> = primaries
        .iter()
        .flat_map(|primary| {
            let replicas = cluster.replicas_of(*primary);
            assert_eq!(replicas.len(), 1, "one replica of {primary}: {replicas:?}");
            replicas
        })
        .collect();
    replicas.extend(&primaries);
    replicas.sort_unstable();
    let mut ports = cluster.ports();
    ports.sort_unstable();
    assert_eq!(replicas, ports, "every node is a primary or a replica");

    let keys = key_on_each_primary(&cluster);
    let mut connection = cluster.connection().await;
    for (primary, key) in &keys {
        let value = format!("value of {key}");
        set(&mut connection, key, &value).await;
        assert_eq!(get(&mut connection, key).await.as_deref(), Some(&*value));
        // The key is held by the primary said to serve it: it answers itself…
        let held = get_on_node(*primary, key).await.expect("GET on its primary");
        assert_eq!(held.as_deref(), Some(&*value));
        // …and the other primaries redirect to it.
        let slot = cluster.slot_of(key);
        for other in primaries.iter().filter(|other| *other != primary) {
            let error = get_on_node(*other, key)
                .await
                .expect_err("another primary redirects");
            assert_eq!(error.code(), Some("MOVED"), "{error}");
            let address = format!("127.0.0.1:{primary}");
            assert_eq!(error.redirect_node(), Some((&*address, slot)));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primarys_replica_takes_over_with_the_replicated_value() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let key = "a";
    let old = cluster.primary_of(key);
    let replicas = cluster.replicas_of(old);
    let mut connection = cluster.connection().await;
    set_replicated(&mut connection, key, "before the kill").await;

    let started = Instant::now();
    let new = cluster.kill_primary_of(key);
    report(&format!(
        "redis_cluster: a replica took over in {:?}",
        started.elapsed()
    ));
    assert_eq!(replicas, vec![new], "the replica of {old} took over");
    assert!(!cluster.is_running(old));
    assert_eq!(cluster.primary_of(key), new);
    assert!(cluster.primaries().contains(&new));
    assert!(!cluster.primaries().contains(&old));
    assert!(
        cluster.replicas_of(new).is_empty(),
        "its replica was the one killed"
    );

    // The connection made before the kill finds the new primary, which kept the value.
    assert_eq!(
        get(&mut connection, key).await.as_deref(),
        Some("before the kill")
    );
    assert_eq!(
        get_on_node(new, key)
            .await
            .expect("GET on the new primary")
            .as_deref(),
        Some("before the kill")
    );
    set(&mut connection, key, "after the kill").await;
    let mut fresh = cluster.connection().await;
    assert_eq!(get(&mut fresh, key).await.as_deref(), Some("after the kill"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primaries_fail_over_one_after_another_and_killed_nodes_return_as_replicas() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let urls = cluster.node_urls();
    let keys = key_on_each_primary(&cluster);
    let (first, second) = {
        let mut keys = keys.values();
        (keys.next().unwrap().clone(), keys.next().unwrap().clone())
    };
    let mut connection = cluster.connection().await;

    // The first key's primary is killed; its replica takes over.
    set(&mut connection, &first, "1").await;
    cluster.wait_replicated(&first);
    let original = cluster.primary_of(&first);
    let promoted = cluster.kill_primary_of(&first);
    assert_eq!(get(&mut connection, &first).await.as_deref(), Some("1"));

    // The killed node comes back on its port as the promoted one's replica, in sync.
    let started = Instant::now();
    cluster.restart_node(original);
    report(&format!(
        "redis_cluster: a killed node rejoined as a replica in {:?}",
        started.elapsed()
    ));
    assert!(cluster.is_running(original));
    assert_eq!(cluster.replicas_of(promoted), vec![original]);
    assert_eq!(
        get_on_node(promoted, &first).await.expect("GET").as_deref(),
        Some("1")
    );

    // Killed again, the shard fails back to the node that started as its primary.
    set(&mut connection, &first, "2").await;
    cluster.wait_replicated(&first);
    let started = Instant::now();
    assert_eq!(cluster.kill_primary_of(&first), original);
    report(&format!("redis_cluster: a failback took {:?}", started.elapsed()));
    assert_eq!(get(&mut connection, &first).await.as_deref(), Some("2"));

    // Another shard's primary fails over while a node of the first shard is still down.
    set(&mut connection, &second, "3").await;
    cluster.wait_replicated(&second);
    let before = cluster.primary_of(&second);
    let started = Instant::now();
    let after = cluster.kill_primary_of(&second);
    report(&format!(
        "redis_cluster: another shard failed over in {:?}",
        started.elapsed()
    ));
    assert_ne!(before, after);
    assert_eq!(get(&mut connection, &second).await.as_deref(), Some("3"));
    assert_eq!(get(&mut connection, &first).await.as_deref(), Some("2"));
    let running: Vec<u16> = cluster
        .ports()
        .into_iter()
        .filter(|port| cluster.is_running(*port))
        .collect();
    assert_eq!(running.len(), 4, "two nodes down: {running:?}");
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3);
    assert!(primaries.iter().all(|port| running.contains(port)));

    // Ports and URLs never changed.
    assert_eq!(cluster.node_urls(), urls);
}
