//! The subscribers of a round: in this process, or in child processes (this binary again, with
//! `REDIS_TOPICS_CHILD` set), which answer the lines `count` and `report` on their stdin with a
//! line of numbers each, and exit when their stdin closes (the parent is done, or gone).

use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::task::{block_in_place, JoinSet};

use crate::{connect, must, open_all, Recorder, Tally, CHILD_ENV};

/// A child process, the writing end of its stdin, and its stdout's lines.
type Kid = (Child, Option<ChildStdin>, mpsc::Receiver<String>);

/// Where the subscribers are: in this process, or in child processes.
pub enum Subscribers {
    Here(Arc<Recorder>),
    Children(Vec<Kid>),
}

/// Sends each line of `from` to `to` on a thread, until either ends; then runs `then`.
fn forward(from: impl BufRead + Send + 'static, to: mpsc::Sender<String>, then: fn()) {
    std::thread::spawn(move || {
        let _ = from
            .lines()
            .map_while(Result::ok)
            .try_for_each(|line| to.send(line));
        then();
    });
}

impl Subscribers {
    /// Starts `n` children of `topics` topics each and waits until each is ready, or until
    /// `deadline` (then the error is empty).
    pub fn spawn(n: u64, topics: u64, url: &str, deadline: Instant) -> Result<Subscribers, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut children = Vec::new();
        for index in 0..n {
            let mut command = Command::new(&exe);
            command.env(CHILD_ENV, format!("{index},{url},{topics}"));
            let spawned = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
            let mut child = spawned.map_err(|e| format!("starting a child: {e}"))?;
            let (lines, stdout) = (mpsc::channel(), child.stdout.take().expect("a piped stdout"));
            forward(std::io::BufReader::new(stdout), lines.0, || {});
            let stdin = child.stdin.take();
            children.push((child, stdin, lines.1));
        }
        let subscribers = Subscribers::Children(children);
        subscribers.ready(deadline)?; // On an error, dropping them ends them.
        Ok(subscribers)
    }

    /// Waits for each child's `ready` line until `deadline`.
    fn ready(&self, deadline: Instant) -> Result<(), String> {
        if let Subscribers::Children(children) = self {
            for (_, _, lines) in children {
                let ready = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()));
                ready.map_err(|_| String::new())?;
            }
        }
        Ok(())
    }

    /// What the subscribers received since the last report; with `reset`, the next starts here.
    pub fn report(&mut self, reset: bool) -> Result<Tally, String> {
        let tallies = match self {
            Subscribers::Here(recorder) => vec![recorder.report(reset)],
            Subscribers::Children(children) => ask(children, if reset { "report" } else { "count" })?,
        };
        let mut all = Tally::default();
        for Tally(counts, latencies) in tallies {
            (0..3).for_each(|i| all.0[i] += counts[i]);
            all.1.extend(latencies);
        }
        Ok(all)
    }
}

impl Drop for Subscribers {
    /// Closes the children's stdins (they exit then), and kills those still running after 5 s.
    fn drop(&mut self) {
        if let Subscribers::Children(children) = self {
            children.iter_mut().for_each(|(_, stdin, _)| drop(stdin.take()));
            let deadline = Instant::now() + Duration::from_secs(5);
            for (child, _, _) in children {
                while child.try_wait().is_ok_and(|exited| exited.is_none()) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let (_, _) = (child.kill(), child.wait());
            }
        }
    }
}

/// Sends `command` to each child and reads its answer: `<events> <gaps> <ended> <µs>…`.
fn ask(children: &mut [Kid], command: &str) -> Result<Vec<Tally>, String> {
    for (_, stdin, _) in children.iter_mut() {
        let sent = writeln!(stdin.as_mut().expect("an open stdin"), "{command}");
        sent.map_err(|e| format!("a child's stdin: {e}"))?;
    }
    let mut tallies = Vec::new();
    for (_, _, lines) in children.iter() {
        let line = lines.recv_timeout(Duration::from_secs(30));
        let line = line.map_err(|_| "a child did not answer")?;
        let mut numbers = line.split(' ').filter_map(|n| n.parse().ok());
        let counts = [(); 3].map(|_| numbers.next().unwrap_or(0));
        tallies.push(Tally(counts, numbers.collect()));
    }
    Ok(tallies)
}

/// A child process: subscribes its topics, says `ready`, then answers `count` and `report` (a
/// line of numbers each) until its stdin closes, when the parent is done or gone.
pub async fn child(spec: &str) {
    let spec: Vec<&str> = spec.split(',').collect();
    let topics: u64 = must(spec[2].parse(), "a number of topics");
    let (commands, queue) = mpsc::channel();
    let stdin = std::io::BufReader::new(std::io::stdin());
    forward(stdin, commands, || std::process::exit(0));
    let (recorder, mut readers) = (Arc::new(Recorder::default()), JoinSet::new());
    let family = connect(spec[1]).await;
    let names = (0..topics).map(|i| format!("p{}-t{i}", spec[0]));
    let _logs = open_all(&family, names, Some(&recorder), &mut readers).await;
    println!("ready");
    while let Ok(command) = block_in_place(|| queue.recv()) {
        let Tally([events, gaps, ended], latencies) = recorder.report(command == "report");
        let latencies: Vec<String> = latencies.iter().map(u64::to_string).collect();
        println!("{events} {gaps} {ended} {}", latencies.join(" "));
    }
}
