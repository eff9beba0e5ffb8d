//! The services as processes of their own, so that a fault can be a real
//! SIGKILL: each [`Service`] knows how to start its binary again with the
//! same flags and state directory, appends its output to a log file, and
//! samples its resident memory per incarnation.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// One service process and how to start it again.
pub struct Service {
    /// Name in the report (`node-0`, `gateway`, ...).
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    started: Instant,
    /// SIGKILLs the injector sent.
    pub kills: u32,
    /// Exits nobody asked for (a crash).
    pub unexpected_exits: u32,
    /// Resident memory samples (KiB) of each incarnation, with the time
    /// since that incarnation started.
    pub rss: Vec<Vec<(Duration, u64)>>,
}

impl Service {
    /// A service that runs `program args...`, logging to `logs/<name>.log`.
    pub fn new(name: &str, program: PathBuf, args: Vec<String>, logs: &Path) -> Self {
        Self {
            name: name.to_string(),
            program,
            args,
            log: logs.join(format!("{name}.log")),
            child: None,
            started: Instant::now(),
            kills: 0,
            unexpected_exits: 0,
            rss: Vec::new(),
        }
    }

    /// Starts a new incarnation.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        self.started = Instant::now();
        self.rss.push(Vec::new());
        Ok(())
    }

    /// SIGKILL (no chance to flush or say goodbye), then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills += 1;
        }
    }

    /// A polite stop at the end of the run (SIGTERM is not Ctrl-C for these
    /// binaries, so this is a kill too; the campaign has settled by then).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is running; an exit nobody asked for is counted
    /// and the service started again.
    pub fn check(&mut self) -> anyhow::Result<bool> {
        let exited = match self.child.as_mut() {
            Some(c) => c.try_wait()?.is_some(),
            None => return Ok(false),
        };
        if exited {
            self.child = None;
            self.unexpected_exits += 1;
            tracing::warn!(service = %self.name, "exited on its own; starting it again");
            self.spawn()?;
        }
        Ok(true)
    }

    /// Records the resident memory of the running incarnation.
    pub fn sample(&mut self) {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return;
        };
        if let Some(kib) = rss_kib(pid) {
            let at = self.started.elapsed();
            if let Some(samples) = self.rss.last_mut() {
                samples.push((at, kib));
            }
        }
    }

    /// The longest-lived incarnation's growth: (median RSS of its last
    /// quarter) / (median of its second quarter), the first quarter being
    /// warm-up (model load, caches). `None` when no incarnation has eight
    /// samples.
    pub fn growth(&self) -> Option<MemoryGrowth> {
        let longest = self
            .rss
            .iter()
            .filter(|s| s.len() >= 8)
            .max_by_key(|s| s.len())?;
        let q = longest.len() / 4;
        let median = |s: &[(Duration, u64)]| {
            let mut v: Vec<u64> = s.iter().map(|(_, k)| *k).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let early = median(&longest[q..2 * q]);
        let late = median(&longest[3 * q..]);
        Some(MemoryGrowth {
            lived: longest.last().map(|(t, _)| *t).unwrap_or_default(),
            early_kib: early,
            late_kib: late,
            peak_kib: longest.iter().map(|(_, k)| *k).max().unwrap_or(0),
        })
    }
}

/// How one process's memory moved over its longest life.
#[derive(Debug, Clone, Copy)]
pub struct MemoryGrowth {
    /// How long that incarnation lived (to its last sample).
    pub lived: Duration,
    /// Median RSS over its second quarter, KiB.
    pub early_kib: u64,
    /// Median RSS over its last quarter, KiB.
    pub late_kib: u64,
    /// Highest sample, KiB.
    pub peak_kib: u64,
}

impl MemoryGrowth {
    /// Late over early.
    pub fn ratio(&self) -> f64 {
        self.late_kib as f64 / self.early_kib.max(1) as f64
    }
}

/// VmRSS of `pid` from /proc, KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}
