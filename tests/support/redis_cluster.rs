//! A Redis Cluster of the test's own (feature `redis`): three primaries and three replicas,
//! six `redis-server` processes on free loopback ports, joined by `redis-cli --cluster create`.
//! Primaries are killed on demand and their replicas promoted; killed nodes come back as
//! replicas. Every node keeps its port for the cluster's whole life, and everything is killed
//! and removed when the cluster is dropped. Without `redis-server` or `redis-cli` a test fails
//! under `CI` and skips loudly otherwise.
//!
//! The methods that wait for the cluster (`start`, `primary_of`, `kill_primary_of`,
//! `restart_node`, `wait_replicated`) block the calling thread; a test that needs its tasks to
//! run meanwhile uses a multi-thread runtime.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::missing_prerequisite;
use super::process::{free_port, ScratchDir};

// The same file as `super::redis` loads (its module is private to it), a second copy.
#[allow(clippy::duplicate_mod)]
#[path = "redis_process.rs"]
mod redis_process;
use redis_process::RedisProcess;

/// Primaries, each with one replica.
const PRIMARIES: usize = 3;
const NODES: usize = 2 * PRIMARIES;
/// All the slots of a cluster.
const SLOTS: usize = 16384;
/// The longest the cluster may take to form after `redis-cli --cluster create` is run.
const FORM_LIMIT: Duration = Duration::from_secs(30);
/// The longest a failover, or a killed node's return as a replica, may take.
const FAILOVER_LIMIT: Duration = Duration::from_secs(20);
/// How long a node may be unreachable before it is failing: failovers take a few seconds.
const NODE_TIMEOUT_MS: &str = "1000";

/// A local Redis Cluster: three primaries and three replicas, killed when dropped.
#[allow(dead_code)]
pub struct RedisCluster {
    /// In start order; a node keeps its place and port whether it runs or not.
    nodes: Vec<Node>,
}

/// One `redis-server` of the cluster and its files (`nodes.conf`).
struct Node {
    process: RedisProcess,
    alive: bool,
    /// Removed after the server is killed (fields drop in order).
    dir: ScratchDir,
}

/// A primary cut off from its stopped replicas ([`RedisCluster::cut_off_replicas_of`]).
#[allow(dead_code)]
pub struct CutOff {
    slot: u16,
    primary: u16,
    replicas: Vec<u16>,
    /// The replicas' process ids.
    stopped: Vec<u32>,
}

/// The cluster as the live nodes agree it is.
#[derive(Debug, Clone, PartialEq)]
struct Topology {
    /// Slot ranges (inclusive) and the port of the primary serving each, by first slot.
    slots: Vec<(u16, u16, u16)>,
    /// Each live replica's port and its primary's port.
    replicas: BTreeMap<u16, u16>,
}

impl Topology {
    fn owner(&self, slot: u16) -> u16 {
        self.slots
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, owner)| *owner)
            .expect("a settled cluster serves every slot")
    }

    fn primaries(&self) -> Vec<u16> {
        let mut primaries: Vec<u16> = self.slots.iter().map(|(_, _, owner)| *owner).collect();
        primaries.sort_unstable();
        primaries.dedup();
        primaries
    }

    fn replicas_of(&self, primary: u16) -> Vec<u16> {
        self.replicas
            .iter()
            .filter(|(_, of)| **of == primary)
            .map(|(replica, _)| *replica)
            .collect()
    }
}

/// One line of `CLUSTER NODES`.
struct NodeLine {
    id: String,
    port: u16,
    flags: Vec<String>,
    /// The primary's id, for a replica.
    primary: Option<String>,
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn parse(line: &str) -> Result<NodeLine, String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return Err(format!("a short CLUSTER NODES line: {line:?}"));
        }
        // `127.0.0.1:7000@17000` or `127.0.0.1:7000@17000,hostname`.
        let port = fields[1]
            .split('@')
            .next()
            .and_then(|address| address.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| format!("no port in the CLUSTER NODES line {line:?}"))?;
        let mut slots = Vec::new();
        // Slots being moved are written `[slot->-id]`; a test cluster moves none.
        for range in fields[8..].iter().filter(|field| !field.starts_with('[')) {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            match (first.parse(), last.parse()) {
                (Ok(first), Ok(last)) => slots.push((first, last)),
                _ => return Err(format!("a bad slot range {range:?} in {line:?}")),
            }
        }
        Ok(NodeLine {
            id: fields[0].to_owned(),
            port,
            flags: fields[2].split(',').map(str::to_owned).collect(),
            primary: (fields[3] != "-").then(|| fields[3].to_owned()),
            slots,
        })
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|own| own == flag)
    }
}

/// The `redis-cli` binary: `REDIS_CLI` if set, else `redis-cli` from the `PATH`.
#[allow(dead_code)]
pub fn redis_cli() -> String {
    std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned())
}

fn redis_cli_installed() -> bool {
    Command::new(redis_cli())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[allow(dead_code)]
impl RedisCluster {
    /// Starts six nodes, joins them as three primaries with one replica each, and returns once
    /// every node agrees that all slots are served and every replica is in sync with its
    /// primary; or `None` (after a loud warning) when `redis-server` or `redis-cli` is missing
    /// outside CI.
    pub fn start() -> Option<RedisCluster> {
        if !RedisProcess::installed() {
            missing_prerequisite(
                "RedisCluster::start",
                "redis-server is not installed (Debian package redis-server)",
            );
            return None;
        }
        if !redis_cli_installed() {
            missing_prerequisite(
                "RedisCluster::start",
                "redis-cli is not installed (Debian package redis-tools)",
            );
            return None;
        }
        let mut taken = HashSet::new();
        let nodes = (0..NODES).map(|_| Node::start(&mut taken)).collect();
        let cluster = RedisCluster { nodes };
        cluster.create();
        let topology = cluster.wait_for(FORM_LIMIT, "the cluster to form", || {
            let topology = cluster.settled()?;
            let primaries = topology.primaries();
            if primaries.len() != PRIMARIES {
                return Err(format!("{} primaries serve slots", primaries.len()));
            }
            match primaries
                .iter()
                .find(|primary| topology.replicas_of(**primary).len() != 1)
            {
                Some(primary) => Err(format!("primary {primary} has no replica, or several")),
                None => Ok(topology),
            }
        });
        assert_eq!(topology.replicas.len(), NODES - PRIMARIES);
        Some(cluster)
    }

    /// The ports of all six nodes, running or killed, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.process.port).collect()
    }

    /// The URLs of all six nodes, running or killed, in start order.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.process.url()).collect()
    }

    /// The URL of a running primary (the first in start order): what a cluster client is
    /// given to find the others.
    pub fn seed_url(&self) -> String {
        let primaries = self.primaries();
        self.nodes
            .iter()
            .find(|node| primaries.contains(&node.process.port))
            .expect("a running primary")
            .process
            .url()
    }

    /// The ports of the primaries serving slots, ascending.
    pub fn primaries(&self) -> Vec<u16> {
        self.topology().primaries()
    }

    /// The ports of the running replicas of the primary on `primary`, ascending.
    pub fn replicas_of(&self, primary: u16) -> Vec<u16> {
        self.topology().replicas_of(primary)
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        query(self.any_live_port(), &["CLUSTER", "KEYSLOT", key]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The port of the primary serving `key`'s slot.
    pub fn primary_of(&self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        self.topology().owner(slot)
    }

    /// Whether the node on `port` runs (it was not killed, or was restarted).
    pub fn is_running(&self, port: u16) -> bool {
        self.node(port).alive
    }

    /// Kills the primary serving `key` at once (SIGKILL), as a crash would, and waits until one
    /// of its replicas has taken over: every running node agrees the slot is served by the
    /// promoted replica and the cluster is ok. Returns the new primary's port.
    ///
    /// Replication is asynchronous: what the killed primary acknowledged but had not yet sent
    /// is lost (see [`wait_replicated`](Self::wait_replicated)). Panics if the primary has no
    /// running replica (bring the killed one back with [`restart_node`](Self::restart_node)).
    pub fn kill_primary_of(&mut self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        let topology = self.topology();
        let old = topology.owner(slot);
        let replicas = topology.replicas_of(old);
        assert!(
            !replicas.is_empty(),
            "the primary {old} serving {key:?} has no running replica to promote \
             (restart a killed node first)"
        );
        self.kill_node(old);
        self.wait_takeover(slot, old, &replicas)
    }

    /// Waits until one of `replicas` serves `slot` in place of `old`; returns its port.
    fn wait_takeover(&self, slot: u16, old: u16, replicas: &[u16]) -> u16 {
        self.wait_for(
            FAILOVER_LIMIT,
            &format!("a replica of {old} ({replicas:?}) to take over slot {slot}"),
            || {
                let owner = self.settled()?.owner(slot);
                if replicas.contains(&owner) {
                    Ok(owner)
                } else {
                    Err(format!("slot {slot} is still served by {owner}"))
                }
            },
        )
    }

    /// Kills the node on `port` at once (SIGKILL) and returns without waiting for the cluster
    /// to notice.
    pub fn kill_node(&mut self, port: u16) {
        let node = self.node_mut(port);
        node.process.kill();
        node.alive = false;
    }

    /// Starts the killed node on `port` again, on the same port with its own `nodes.conf`, and
    /// waits until it is back as a replica in sync with the primary that took over its slots
    /// (or its old primary), the cluster ok and every node agreeing.
    pub fn restart_node(&mut self, port: u16) {
        let node = self.node_mut(port);
        assert!(
            !node.alive,
            "node {port} is running; kill it before restarting it"
        );
        node.process.restart().unwrap_or_else(|error| panic!("{error}"));
        node.alive = true;
        self.wait_for(
            FAILOVER_LIMIT,
            &format!("node {port} to rejoin the cluster as a replica"),
            || {
                let topology = self.settled()?;
                match topology.replicas.get(&port) {
                    Some(_) => Ok(()),
                    None => Err(format!("{port} is not a replica")),
                }
            },
        );
    }

    /// Cuts `key`'s primary off from its replicas: each replica is stopped (SIGSTOP) and the
    /// primary drops its replication links, so what the primary acknowledges from now on
    /// reaches no replica. Pass what it returns to
    /// [`kill_cut_off_primary`](Self::kill_cut_off_primary) soon (a replica stopped for
    /// longer than the node timeout is taken for failing).
    pub fn cut_off_replicas_of(&self, key: &str) -> CutOff {
        let slot = self.slot_of(key);
        let primary = self.primary_of(key);
        let replicas = self.replicas_of(primary);
        let stopped: Vec<u32> = replicas.iter().map(|&replica| process_id(replica)).collect();
        for &pid in &stopped {
            signal(pid, "-STOP");
        }
        let _: redis::Value = query(primary, &["CLIENT", "KILL", "TYPE", "replica"])
            .unwrap_or_else(|e| panic!("dropping the replication links of {primary}: {e}"));
        CutOff {
            slot,
            primary,
            replicas,
            stopped,
        }
    }

    /// Kills `key`'s primary (SIGKILL) while its replicas are cut off, lets the replicas go on
    /// (SIGCONT), and waits until one of them has taken over without what the primary
    /// acknowledged meanwhile. Returns the new primary's port.
    pub fn kill_cut_off_primary(&mut self, cut_off: CutOff) -> u16 {
        let CutOff {
            slot,
            primary: old,
            replicas,
            stopped,
        } = cut_off;
        self.kill_node(old);
        for pid in stopped {
            signal(pid, "-CONT");
        }
        self.wait_takeover(slot, old, &replicas)
    }

    /// Moves `key`'s slot, with every key in it, from its primary to the primary on `to`, as
    /// a resharding does (`CLUSTER SETSLOT … IMPORTING/MIGRATING`, `MIGRATE`, `SETSLOT …
    /// NODE` on every primary), and waits until the cluster agrees.
    pub fn move_slot_of(&self, key: &str, to: u16) {
        let slot = self.slot_of(key).to_string();
        let from = self.primary_of(key);
        assert_ne!(from, to, "{key} is on {to} already");
        let id =
            |port: u16| -> String { query(port, &["CLUSTER", "MYID"]).unwrap_or_else(|e| panic!("{e}")) };
        let (from_id, to_id) = (id(from), id(to));
        let run = |port: u16, args: &[&str]| {
            let _: redis::Value = query(port, args).unwrap_or_else(|e| panic!("{e}"));
        };
        run(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        run(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        loop {
            let keys: Vec<String> =
                query(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"]).unwrap_or_else(|e| panic!("{e}"));
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            run(from, &args);
        }
        for primary in self.primaries() {
            run(primary, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
        let slot: u16 = slot.parse().expect("a slot");
        self.wait_for(
            FAILOVER_LIMIT,
            &format!("slot {slot} to be served by {to}"),
            || {
                let owner = self.settled()?.owner(slot);
                if owner == to {
                    Ok(())
                } else {
                    Err(format!("slot {slot} is still served by {owner}"))
                }
            },
        );
    }

    /// Waits until every running replica of `key`'s primary has applied everything the
    /// primary had written when this was called (whoever wrote it), so killing the primary
    /// loses none of it.
    pub fn wait_replicated(&self, key: &str) {
        let primary = self.primary_of(key);
        let target: u64 = info_field(&info_replication(primary), "master_repl_offset")
            .and_then(|offset| offset.parse().ok())
            .expect("master_repl_offset in INFO replication");
        for replica in self.replicas_of(primary) {
            self.wait_for(
                super::LIMIT,
                &format!("replica {replica} to reach offset {target} of {primary}"),
                || {
                    let info = info_replication(replica);
                    let applied: u64 = info_field(&info, "slave_repl_offset")
                        .and_then(|offset| offset.parse().ok())
                        .ok_or_else(|| format!("no slave_repl_offset on {replica}"))?;
                    if applied >= target {
                        Ok(())
                    } else {
                        Err(format!("{replica} is at offset {applied}"))
                    }
                },
            );
        }
    }

    /// A cluster connection (RESP2) to the running nodes, for checks. It retries quickly, so
    /// a connection made before a failover follows the slots to the promoted replica.
    pub async fn connection(&self) -> redis::cluster_async::ClusterConnection {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| node.alive)
            .map(|node| node.process.url())
            .collect();
        let client = redis::cluster::ClusterClient::builder(urls)
            .retries(30)
            .min_retry_wait(100)
            .max_retry_wait(500)
            .build()
            .expect("a cluster client");
        super::within("a cluster connection", client.get_async_connection())
            .await
            .expect("connect to the test Redis Cluster")
    }

    // -----------------------------------------------------------------------------------
    // Inside
    // -----------------------------------------------------------------------------------

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|node| node.process.port == port)
            .unwrap_or_else(|| panic!("no node of the cluster on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|node| node.process.port == port)
            .unwrap_or_else(|| panic!("no node of the cluster on port {port}"))
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.alive)
            .map(|node| node.process.port)
            .collect()
    }

    fn any_live_port(&self) -> u16 {
        *self.live_ports().first().expect("a running node")
    }

    /// The topology once the cluster is settled (it is, between this module's calls).
    fn topology(&self) -> Topology {
        self.wait_for(super::LIMIT, "the cluster to settle", || self.settled())
    }

    /// `redis-cli --cluster create` over the six nodes, its output in the first node's folder.
    fn create(&self) {
        let log_path = self.nodes[0].dir.path().join("cluster-create.log");
        let log = std::fs::File::create(&log_path).expect("create the redis-cli log");
        let mut command = Command::new(redis_cli());
        command.args(["--cluster", "create"]);
        command.args(self.ports().iter().map(|port| format!("127.0.0.1:{port}")));
        command.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", redis_cli()));
        let deadline = Instant::now() + FORM_LIMIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for redis-cli") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.is_some_and(|status| status.success()) {
            let output = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!(
                "redis-cli --cluster create {} ({status:?}, limit {FORM_LIMIT:?}):\n{output}",
                self.ports()
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }

    /// Polls `check` until it gives a value, panicking with its last complaint after `limit`.
    fn wait_for<T>(&self, limit: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            match check() {
                Ok(value) => return value,
                Err(complaint) if Instant::now() > deadline => {
                    panic!("timed out after {limit:?} waiting for {what}: {complaint}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The topology if the cluster is settled: every running node says `cluster_state:ok`
    /// with all slots served, sees every other running node healthy, agrees with the others
    /// on who serves which slot and who replicates whom; only running nodes serve slots; and
    /// every running replica is linked to its primary and done with its initial sync.
    fn settled(&self) -> Result<Topology, String> {
        let live = self.live_ports();
        let mut agreed: Option<(u16, Topology)> = None;
        for &port in &live {
            let info: String = query(port, &["CLUSTER", "INFO"])?;
            for (field, wanted) in [
                ("cluster_state", "ok".to_owned()),
                ("cluster_slots_assigned", SLOTS.to_string()),
                ("cluster_slots_ok", SLOTS.to_string()),
                ("cluster_known_nodes", NODES.to_string()),
            ] {
                let value = info_field(&info, field);
                if value != Some(wanted.as_str()) {
                    return Err(format!("{port} says {field}:{value:?}"));
                }
            }
            let view = view_of(port, &live)?;
            match &agreed {
                None => agreed = Some((port, view)),
                Some((first, topology)) if *topology != view => {
                    return Err(format!("{port} sees {view:?} but {first} sees {topology:?}"))
                }
                Some(_) => {}
            }
        }
        let (_, topology) = agreed.ok_or("no running node")?;
        for (&replica, &primary) in &topology.replicas {
            let info = info_replication(replica);
            for (field, wanted) in [
                ("role", "slave".to_owned()),
                ("master_port", primary.to_string()),
                ("master_link_status", "up".to_owned()),
                ("master_sync_in_progress", "0".to_owned()),
            ] {
                let value = info_field(&info, field);
                if value != Some(wanted.as_str()) {
                    return Err(format!("replica {replica} says {field}:{value:?}"));
                }
            }
        }
        Ok(topology)
    }
}

/// The cluster as the node on `port` sees it, if it sees every node in `live` healthy and
/// only them serving slots, and every slot served.
fn view_of(port: u16, live: &[u16]) -> Result<Topology, String> {
    let text: String = query(port, &["CLUSTER", "NODES"])?;
    let lines = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(NodeLine::parse)
        .collect::<Result<Vec<_>, _>>()?;
    for &other in live {
        let line = lines
            .iter()
            .find(|line| line.port == other)
            .ok_or_else(|| format!("{port} does not know {other}"))?;
        if let Some(flag) = ["fail", "fail?", "handshake", "noaddr"]
            .into_iter()
            .find(|flag| line.has(flag))
        {
            return Err(format!("{port} flags {other} {flag}"));
        }
    }
    let mut slots = Vec::new();
    let mut replicas = BTreeMap::new();
    for line in &lines {
        let running = live.contains(&line.port);
        if !line.slots.is_empty() {
            if !running || !line.has("master") {
                return Err(format!("{port} sees slots served by {}", line.port));
            }
            slots.extend(line.slots.iter().map(|(first, last)| (*first, *last, line.port)));
        }
        if running && line.has("slave") {
            let primary_id = line.primary.as_deref().unwrap_or("-");
            let primary = lines
                .iter()
                .find(|other| other.id == primary_id)
                .ok_or_else(|| format!("{port} does not know {}'s primary", line.port))?;
            replicas.insert(line.port, primary.port);
        }
    }
    slots.sort_unstable();
    let served: usize = slots
        .iter()
        .map(|(first, last, _)| usize::from(last - first) + 1)
        .sum();
    if served != SLOTS {
        return Err(format!("{port} sees {served} slots served"));
    }
    Ok(Topology { slots, replicas })
}

impl Node {
    /// Starts a cluster-enabled `redis-server` on a free port whose cluster bus port (+10000)
    /// is free too; tries other ports if another program took the port in the meantime.
    fn start(taken: &mut HashSet<u16>) -> Node {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port_pair(taken);
            taken.extend([port, port + 10000]);
            let dir = ScratchDir::new("redis-cluster");
            let settings = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                NODE_TIMEOUT_MS,
                "--save",
                "",
                "--appendonly",
                "no",
                // A replica's first sync starts at once (Redis 7 waits 5 s for more replicas).
                "--repl-diskless-sync-delay",
                "0",
            ];
            match RedisProcess::start(port, Some(dir.path()), &settings) {
                Ok(process) => {
                    // The PING that `start` waited for came from the port: make sure it was
                    // this server's, with this folder.
                    let wanted = std::fs::canonicalize(dir.path()).expect("the scratch folder");
                    match query::<Vec<String>>(port, &["CONFIG", "GET", "dir"]) {
                        Ok(reply) if reply.get(1).map(PathBuf::from) == Some(wanted) => {
                            return Node {
                                process,
                                alive: true,
                                dir,
                            }
                        }
                        other => failures.push(format!("port {port} answered {other:?}")),
                    }
                }
                Err(error) => failures.push(error),
            }
        }
        panic!("could not start a cluster node: {failures:?}");
    }
}

/// A loopback port that was free a moment ago, as was the port 10000 above it.
fn free_port_pair(taken: &HashSet<u16>) -> u16 {
    loop {
        let port = free_port();
        let Some(bus) = port.checked_add(10000) else {
            continue;
        };
        if !taken.contains(&port)
            && !taken.contains(&bus)
            && std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok()
        {
            return port;
        }
    }
}

/// Sends one command to the node on `port` over a connection of its own.
fn query<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> Result<T, String> {
    let what = || format!("{} on 127.0.0.1:{port}", args.join(" "));
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(|e| format!("{}: {e}", what()))?;
    let mut connection = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .map_err(|e| format!("{}: {e}", what()))?;
    connection
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| format!("{}: {e}", what()))?;
    let mut command = redis::cmd(args[0]);
    command.arg(&args[1..]);
    command
        .query(&mut connection)
        .map_err(|e| format!("{}: {e}", what()))
}

/// The process id of the node on `port` (`INFO server`).
fn process_id(port: u16) -> u32 {
    let info: String = query(port, &["INFO", "server"]).unwrap_or_else(|e| panic!("{e}"));
    info_field(&info, "process_id")
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process_id in INFO server of {port}"))
}

/// Sends a signal (`-STOP`, `-CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("kill {signal} {pid}: {e}"));
    assert!(status.success(), "kill {signal} {pid}: {status}");
}

/// `INFO replication` of the node on `port`, or an empty text if it does not answer.
fn info_replication(port: u16) -> String {
    query(port, &["INFO", "replication"]).unwrap_or_default()
}

/// The value of `field` in an `INFO` or `CLUSTER INFO` text (`field:value` lines).
fn info_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}
