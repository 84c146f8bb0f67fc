//! Harness of the benches that load a system from outside its process
//! (feature `bench`): the bench binary runs each measured side as a process
//! of its own — itself again, with `--role <args…>` — and measures that
//! process' wall time and CPU time (utime + stime from `/proc/<pid>/stat`).
//!
//! The protocol between the bench (parent) and a role process (worker):
//! the worker prepares (connects, declares, builds its messages), prints
//! [`READY`] on stdout and waits for a line on stdin; the parent reads the
//! worker's CPU time and sends `go`; the worker does the measured work and
//! prints `BENCH_DONE <count> <seconds>`; the parent reads the CPU time
//! again, then closes stdin and the worker exits.
//!
//! ```no_run
//! use chassis_testing::bench::{self, Rounds, Worker};
//!
//! if let Some(args) = bench::role_args() {
//!     // This process is a worker: `args` says what to do.
//!     bench::ready();
//!     let started = std::time::Instant::now();
//!     // ... the measured work over 1000 messages ...
//!     bench::done(1000, started.elapsed());
//!     return;
//! }
//! let mut rounds = Rounds::from_env(&["raw", "chassis"]);
//! for round in 0..rounds.count() {
//!     for side in rounds.order(round) {
//!         let quiet = rounds.wait_for_quiet();
//!         let mut worker = Worker::start(&["publish", rounds.side(side)]);
//!         let sample = worker.go();
//!         worker.finish();
//!         rounds.record(round, "publish", side, sample, &quiet);
//!     }
//! }
//! rounds.report();
//! ```

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The argument that makes the bench binary a worker.
pub const ROLE: &str = "--role";
/// Printed by a worker once it is prepared.
pub const READY: &str = "BENCH_READY";
/// Printed by a worker when the measured work is done.
const DONE: &str = "BENCH_DONE";

/// An environment variable as a number, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether this run measures (`cargo bench` passes `--bench`) or is the
/// smoke run of `cargo test --benches` (nothing timed).
pub fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The arguments after `--role` when this process is a worker.
pub fn role_args() -> Option<Vec<String>> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == ROLE)?;
    Some(args[at + 1..].to_vec())
}

/// Worker side: prepared; blocks until the parent says go.
pub fn ready() {
    println!("{READY}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Worker side: the measured work is done, `count` messages in `took`.
pub fn done(count: u64, took: Duration) {
    println!("{DONE} {count} {}", took.as_secs_f64());
    let _ = std::io::stdout().flush();
}

/// Worker side: blocks until the parent closes stdin (the worker is kept
/// alive after [`done`] so its CPU time can still be read).
pub fn wait_for_parent() {
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
}

/// One measured run of a worker.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Messages per second of the worker's measured work.
    pub rate: f64,
    /// CPU time of the worker process per message, in µs.
    pub cpu_us: f64,
}

/// A worker process: this binary run with `--role <args…>`.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    what: String,
}

impl Worker {
    /// Starts the worker and waits until it is prepared. With
    /// `BENCH_WORKER_WRAPPER` set (say `valgrind --tool=callgrind
    /// --callgrind-out-file=/tmp/w.%p`), the worker runs under that command
    /// (split at spaces): to profile the measured side alone.
    pub fn start(args: &[&str]) -> Self {
        let me = std::env::current_exe().expect("current exe");
        let wrapper = std::env::var("BENCH_WORKER_WRAPPER").unwrap_or_default();
        let mut command = match wrapper.split_whitespace().collect::<Vec<_>>().split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(me);
                command
            }
            None => Command::new(me),
        };
        let mut child = command
            .arg(ROLE)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("worker process starts");
        let mut worker = Self {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("stdout")),
            child,
            what: args.join(" "),
        };
        worker.expect_line(READY);
        worker
    }

    fn expect_line(&mut self, prefix: &str) -> String {
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let status = self.child.wait();
                panic!(
                    "worker `{}` ended before `{prefix}` ({status:?})",
                    self.what
                );
            }
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
            // Anything else the worker prints goes through.
            print!("{line}");
        }
    }

    /// Runs the measured work; its rate and the worker's CPU per message.
    pub fn go(&mut self) -> Sample {
        let pid = self.child.id();
        let before = process_cpu(pid);
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"go\n").expect("worker reads stdin");
        stdin.flush().expect("worker reads stdin");
        let line = self.expect_line(DONE);
        let cpu = process_cpu(pid).saturating_sub(before);
        let mut fields = line.split_whitespace();
        let count: f64 = fields.next().and_then(|v| v.parse().ok()).expect("count");
        let seconds: f64 = fields.next().and_then(|v| v.parse().ok()).expect("seconds");
        Sample {
            rate: count / seconds.max(1e-9),
            cpu_us: cpu.as_secs_f64() * 1e6 / count.max(1.0),
        }
    }

    /// Waits until the worker ends on its own (a worker that does not wait
    /// for `go`, such as a filler); panics when it failed.
    pub fn wait(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("worker exit status");
        assert!(status.success(), "worker `{}` failed: {status}", self.what);
    }

    /// Closes stdin and waits for the worker's exit; panics when it failed.
    pub fn finish(self) {
        self.wait();
    }
}

/// Runs `args` as a worker that prints nothing it waits for (pre-filling a
/// queue, say) and waits until it is done.
pub fn run(args: &[&str]) {
    let me = std::env::current_exe().expect("current exe");
    let status = Command::new(me)
        .arg(ROLE)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .expect("worker process starts");
    assert!(
        status.success(),
        "worker `{}` failed: {status}",
        args.join(" ")
    );
}

/// utime + stime of process `pid` (all its threads), from `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (in parentheses, may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after `)`.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Busy (non-idle) CPU time of the whole machine, and the total, from `/proc/stat`.
fn machine_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait are fields 4 and 5.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of the machine's CPUs busy over one second (with no bench load
/// running: other processes).
pub fn busy_share() -> f64 {
    let (busy0, total0) = machine_cpu();
    std::thread::sleep(Duration::from_secs(1));
    let (busy1, total1) = machine_cpu();
    (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64
}

/// What the machine did before a measurement.
#[derive(Debug, Clone, Copy)]
pub struct Quiet {
    /// Share of the CPUs other processes kept busy over the last second.
    pub busy: f64,
    /// The 1-minute load average.
    pub load: f64,
    /// Whether both were under the limits.
    pub quiet: bool,
}

impl std::fmt::Display for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "others busy {:>3.0} %, load {:.2}{}",
            self.busy * 100.0,
            self.load,
            if self.quiet { "" } else { " (not quiet)" }
        )
    }
}

/// Median, min and max of `values` (not empty).
pub fn median_min_max(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// Rounds over sides measured alternately, and their report. Read from the
/// environment: `BENCH_ROUNDS` (default 5; 1 in a smoke run, without
/// `--bench`, which never waits for quiet), and the quiet-machine wait
/// before each measurement — `BENCH_MAX_BUSY` (% of the CPUs other
/// processes may use, default 15), `BENCH_MAX_LOAD_X10` (1-minute load
/// average × 10, default 25), `BENCH_QUIET_WAIT` (seconds, default 120).
#[derive(Debug)]
pub struct Rounds {
    sides: Vec<&'static str>,
    rounds: usize,
    max_busy: f64,
    max_load: f64,
    max_wait: Duration,
    /// Per operation (`publish`, …), per side, the samples.
    results: Vec<(String, Vec<Vec<Sample>>)>,
    loads: Vec<f64>,
    smoke: bool,
}

impl Rounds {
    /// `sides` in report order: the first is the baseline of the ratios.
    pub fn from_env(sides: &[&'static str]) -> Self {
        let smoke = !benching();
        Self {
            sides: sides.to_vec(),
            rounds: env_or("BENCH_ROUNDS", if smoke { 1 } else { 5 }).max(1) as usize,
            max_busy: env_or("BENCH_MAX_BUSY", 15) as f64 / 100.0,
            max_load: env_or("BENCH_MAX_LOAD_X10", 25) as f64 / 10.0,
            max_wait: Duration::from_secs(env_or("BENCH_QUIET_WAIT", 120)),
            results: Vec::new(),
            loads: Vec::new(),
            smoke,
        }
    }

    /// How many rounds.
    pub fn count(&self) -> usize {
        self.rounds
    }

    /// The name of side `i`.
    pub fn side(&self, i: usize) -> &'static str {
        self.sides[i]
    }

    /// The order of the sides in `round`: reversed every other round, so no
    /// side always follows the same one.
    pub fn order(&self, round: usize) -> Vec<usize> {
        if round.is_multiple_of(2) {
            (0..self.sides.len()).collect()
        } else {
            (0..self.sides.len()).rev().collect()
        }
    }

    /// The limits, for the report's header.
    pub fn describe(&self) -> String {
        format!(
            "{} rounds, {} CPUs; quiet = others busy ≤ {:.0} % and load ≤ {:.1} (waiting ≤ {}s)",
            self.rounds,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.max_busy * 100.0,
            self.max_load,
            self.max_wait.as_secs()
        )
    }

    /// Waits until the machine is quiet, at most `BENCH_QUIET_WAIT`.
    pub fn wait_for_quiet(&self) -> Quiet {
        if self.smoke {
            return Quiet {
                busy: 0.0,
                load: load_average(),
                quiet: false,
            };
        }
        let deadline = Instant::now() + self.max_wait;
        loop {
            let busy = busy_share();
            let load = load_average();
            let quiet = busy <= self.max_busy && load <= self.max_load;
            if quiet || Instant::now() >= deadline {
                return Quiet { busy, load, quiet };
            }
        }
    }

    /// Records and prints one measurement of `operation` by side `side`.
    pub fn record(
        &mut self,
        round: usize,
        operation: &str,
        side: usize,
        sample: Sample,
        quiet: &Quiet,
    ) {
        println!(
            "round {round} {operation:<8} {:<18} {:>9.0} msg/s {:>7.2} µs CPU/msg   {quiet}",
            self.sides[side], sample.rate, sample.cpu_us
        );
        let _ = std::io::stdout().flush();
        self.loads.push(quiet.load);
        let sides = self.sides.len();
        let at = match self.results.iter().position(|(o, _)| o == operation) {
            Some(at) => at,
            None => {
                self.results
                    .push((operation.to_owned(), vec![Vec::new(); sides]));
                self.results.len() - 1
            }
        };
        self.results[at].1[side].push(sample);
    }

    /// Prints the table: per operation and side, medians and min–max of
    /// msg/s and of CPU µs/message, and their ratios to the first side.
    pub fn report(&self) {
        println!(
            "\n| operation | side | msg/s median (min–max) | worker CPU µs/msg median (min–max) | msg/s ÷ {0} | CPU ÷ {0} |",
            self.sides[0]
        );
        println!("|---|---|---|---|---|---|");
        for (operation, sides) in &self.results {
            let rate = |s: &[Sample]| median_min_max(s.iter().map(|s| s.rate).collect());
            let cpu = |s: &[Sample]| median_min_max(s.iter().map(|s| s.cpu_us).collect());
            let (base_rate, base_cpu) = (rate(&sides[0]).0, cpu(&sides[0]).0);
            for (i, samples) in sides.iter().enumerate() {
                if samples.is_empty() {
                    continue;
                }
                let (r, r_min, r_max) = rate(samples);
                let (c, c_min, c_max) = cpu(samples);
                println!(
                    "| {operation} | {} | {r:.0} ({r_min:.0}–{r_max:.0}) | {c:.2} ({c_min:.2}–{c_max:.2}) | {:.2}× | {:.2}× |",
                    self.sides[i],
                    r / base_rate,
                    c / base_cpu
                );
            }
        }
        if !self.loads.is_empty() {
            let (median, min, max) = median_min_max(self.loads.clone());
            println!(
                "\n# 1-minute load average before the measurements: median {median:.2} (min–max {min:.2}–{max:.2})"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max_of_an_odd_count() {
        assert_eq!(median_min_max(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
    }

    #[test]
    fn orders_alternate() {
        let rounds = Rounds::from_env(&["a", "b", "c"]);
        assert_eq!(rounds.order(0), vec![0, 1, 2]);
        assert_eq!(rounds.order(1), vec![2, 1, 0]);
    }

    #[test]
    fn this_process_has_cpu_time() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        assert!(process_cpu(std::process::id()) > Duration::ZERO);
    }
}
