//! Reconnect churn: how many SSE clients per second a server can take back where they left
//! off, as after a deploy or a flaky network every client comes back with `Last-Event-ID`.
//! [`HISTORY_EVENTS`] events are published first, while a recorder subscriber notes each
//! one's id as the server wrote it (every server has its own ids: the crate's
//! `<epoch>-<seq>`, axum's counter, Nchan's `<time>:<tag>`). Then `reconnect_clients`
//! loops, for `reconnect_time`, each connect, ask for the stream with `Last-Event-ID` set to
//! the id [`REPLAYED`] events back from the newest, read until the newest event has arrived
//! and close. Nothing is published meanwhile, so a resume is right only if it got exactly
//! the [`REPLAYED`] events after the cursor: one that did not fails the server. Figures:
//! completed resumes per second and the server's CPU time per connection, each the median
//! of the rounds.
//!
//! Nchan resumes by `Last-Event-ID` as given (its own `<time>:<tag>` ids, from its message
//! buffer). axum's `Sse` over a broadcast channel keeps no history and cannot resume: its
//! clients connect and take the response head (it writes nothing more until an event or the
//! keep-alive), the fair equivalent of a resume with nothing to replay, and its row says
//! so. The ceiling has no resume either: n/a.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::client;
use crate::kind::Kind;
use crate::load;
use crate::notify::median;
use crate::process::Server;
use crate::procfs;
use crate::scenario::{self, Scenario};
use crate::settings::Settings;
use crate::table::{Cell, Row, Unit};

/// Events published before the churn.
const HISTORY_EVENTS: usize = 100;
/// Events each resume replays: the cursor is this many events back from the newest.
const REPLAYED: usize = 10;
/// The longest one resume, or the recorder, may take.
const RESUME_LIMIT: Duration = Duration::from_secs(10);

pub struct Reconnect<'a>(pub &'a Settings);

pub struct Figures {
    resumes_per_sec: f64,
    cpu_per_connection_us: f64,
    resumes: f64,
    rounds: usize,
}

impl Scenario for Reconnect<'_> {
    type Figures = Figures;
    const NAME: &'static str = "reconnect";

    fn rows(&self) -> Vec<Row> {
        let s = self.0;
        vec![
            Row::new(
                format!(
                    "reconnect: resumes/s ({} clients, {REPLAYED} of {HISTORY_EVENTS} events \
                     replayed; axum: head only, no replay)",
                    s.reconnect_clients
                ),
                Unit::PerSecond,
            ),
            Row::new("reconnect: server CPU per connection", Unit::Micros),
        ]
    }

    fn rounds(&self) -> usize {
        self.0.rounds
    }

    fn applies(&self, kind: Kind) -> bool {
        kind != Kind::Ceiling
    }

    async fn measure(&self, servers: &[Server]) -> Vec<Result<Figures, String>> {
        scenario::each(servers, |server| reconnect(server, self.0)).await
    }

    /// The median of each figure over the rounds.
    fn settle(&self, rounds: Vec<Figures>) -> Figures {
        let of = |figure: fn(&Figures) -> f64| median(rounds.iter().map(figure).collect());
        Figures {
            resumes_per_sec: of(|r| r.resumes_per_sec),
            cpu_per_connection_us: of(|r| r.cpu_per_connection_us),
            resumes: of(|r| r.resumes),
            rounds: rounds.len(),
        }
    }

    fn summary(&self, r: &Figures) -> String {
        format!(
            "{:.0} resumes/s ({:.0} in all), {:.1} µs server CPU per connection",
            r.resumes_per_sec, r.resumes, r.cpu_per_connection_us
        )
    }

    fn cells(&self, r: &Figures) -> Vec<Cell> {
        let note = (r.rounds > 1).then(|| format!("median of {}", r.rounds));
        vec![
            Cell::Value(r.resumes_per_sec, note.clone()),
            Cell::Value(r.cpu_per_connection_us, note),
        ]
    }
}

/// What a resume asks for and what it must get.
struct Resume {
    request: Vec<u8>,
    /// The newest event's id line as the server writes it (`id: …\n`): read until it and
    /// the rest of its event have arrived.
    newest: Vec<u8>,
    /// Only the response head is awaited (axum: no replay).
    head_only: bool,
}

async fn reconnect(server: &Server, s: &Settings) -> Result<Figures, String> {
    let ids = record_history(server).await?;
    let cursor = &ids[ids.len() - 1 - REPLAYED];
    let newest = ids.last().ok_or("no ids recorded")?;
    let path = server.kind.sse_path();
    let resume = Arc::new(Resume {
        request: format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\
             Last-Event-ID: {}\r\n\r\n",
            id_value(cursor)
        )
        .into_bytes(),
        newest: format!("{newest}\n").into_bytes(),
        head_only: server.kind == Kind::Axum,
    });
    let clients = s.reconnect_clients;
    let port = server.port;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = server.cpu_seconds();
    let own_cpu_before = procfs::cpu_seconds(std::process::id());
    let started = Instant::now();
    let mut loops = JoinSet::new();
    for c in 0..clients {
        let (resume, done, stop) = (Arc::clone(&resume), Arc::clone(&done), Arc::clone(&stop));
        loops.spawn(async move {
            // Each connection from the next source address, so that no one address's
            // ports fill with closed connections.
            let mut source = c;
            while !stop.load(Ordering::Relaxed) {
                let events = tokio::time::timeout(RESUME_LIMIT, resume_once(source, port, &resume))
                    .await
                    .map_err(|_| format!("a resume took over {RESUME_LIMIT:?}"))?
                    .map_err(|e| format!("resume: {e}"))?;
                if !resume.head_only && events != REPLAYED {
                    return Err(format!(
                        "a resume got {events} events, not the {REPLAYED} after its cursor"
                    ));
                }
                done.fetch_add(1, Ordering::Relaxed);
                source += clients;
            }
            Ok::<_, String>(())
        });
    }
    tokio::time::sleep(s.reconnect_time).await;
    stop.store(true, Ordering::Relaxed);
    let mut failure = None;
    while let Some(joined) = loops.join_next().await {
        let result = joined.unwrap_or_else(|_| Err("a resume loop panicked".to_owned()));
        if let Err(error) = result {
            failure.get_or_insert(error);
            loops.abort_all();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = server.cpu_seconds() - cpu_before;
    let own_cpu = procfs::cpu_seconds(std::process::id()) - own_cpu_before;
    if let Some(error) = failure {
        return Err(error);
    }
    let resumes = done.load(Ordering::Relaxed);
    println!(
        "  (cursor {}, newest {}: {resumes} resumes in {elapsed:.2} s, server CPU {server_cpu:.2} s, \
         load generator CPU {own_cpu:.2} s)",
        id_value(cursor),
        id_value(newest)
    );
    Ok(Figures {
        resumes_per_sec: resumes as f64 / elapsed,
        cpu_per_connection_us: server_cpu * 1e6 / resumes.max(1) as f64,
        resumes: resumes as f64,
        rounds: 1,
    })
}

/// The value of an `id:` line (`id: 5` or `id:5`).
fn id_value(line: &str) -> &str {
    let value = line.strip_prefix("id:").unwrap_or(line);
    value.strip_prefix(' ').unwrap_or(value)
}

/// Subscribes, publishes [`HISTORY_EVENTS`] events and returns their `id:` lines as the
/// server wrote them, oldest first.
async fn record_history(server: &Server) -> Result<Vec<String>, String> {
    let path = server.kind.sse_path();
    let mut stream = load::connect(249, server.port)
        .await
        .map_err(|e| format!("recorder: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
    let recording = async {
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(64 * 1024);
        let body = read_head(&mut stream, &mut buf).await?;
        Ok::<_, io::Error>((stream, buf, body))
    };
    let (mut stream, mut buf, body) = tokio::time::timeout(RESUME_LIMIT, recording)
        .await
        .map_err(|_| "recorder: no response head".to_owned())?
        .map_err(|e| format!("recorder: {e}"))?;
    let mut publisher = scenario::open_publisher(250, server.port).await?;
    for _ in 0..HISTORY_EVENTS {
        client::publish(
            &mut publisher,
            server.kind.publish_path(),
            &load::payload(Some(load::now_us())),
        )
        .await
        .map_err(|e| format!("publish: {e}"))?;
    }
    let deadline = Instant::now() + RESUME_LIMIT;
    loop {
        let ids = event_ids(&buf[body..]);
        if ids.len() >= HISTORY_EVENTS {
            return Ok(ids);
        }
        let read = tokio::time::timeout_at(deadline.into(), stream.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => {
                return Err(format!(
                    "the recorder got the ids of {} of {HISTORY_EVENTS} events",
                    ids.len()
                ))
            }
        }
    }
}

/// The `id:` lines of the complete measured events in `body` (chunk framing and all: an
/// event is never split across chunks).
fn event_ids(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let Some(complete) = text.rfind("\n\n") else {
        return Vec::new();
    };
    (text[..complete].split("\n\n"))
        .filter(|event| event.contains("@t"))
        .filter_map(|event| {
            (event.split('\n'))
                .map(|line| line.trim_end_matches('\r'))
                .find(|line| line.starts_with("id:"))
                .map(str::to_owned)
        })
        .collect()
}

/// Reads the response head into `buf`; the offset of the body. Fails unless it is a 200.
async fn read_head(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let end = loop {
        if let Some(end) = memmem::find(buf, b"\r\n\r\n") {
            break end + 4;
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::Error::other("closed before the response head"));
        }
    };
    if !buf.starts_with(b"HTTP/1.1 200") {
        let line = String::from_utf8_lossy(&buf[..end.min(60)]).into_owned();
        return Err(io::Error::other(format!("answered {line:?}")));
    }
    Ok(end)
}

/// One resume: connect, request, read until the newest event is whole, close; the measured
/// events received.
async fn resume_once(source: usize, port: u16, resume: &Resume) -> io::Result<usize> {
    let mut stream = load::connect(source, port).await?;
    stream.write_all(&resume.request).await?;
    let mut buf = Vec::with_capacity(8 * 1024);
    let body = read_head(&mut stream, &mut buf).await?;
    if resume.head_only {
        return Ok(0);
    }
    loop {
        let received = &buf[body..];
        if let Some(at) = memmem::find(received, &resume.newest) {
            // The newest event ends at the first blank line from its id line's end.
            let from = at + resume.newest.len() - 1;
            if memmem::find(&received[from..], b"\n\n").is_some() {
                return Ok(memmem::find_iter(received, b"@t").count());
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::other("closed before the newest event"));
        }
    }
}
