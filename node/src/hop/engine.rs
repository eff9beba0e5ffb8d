//! The hop's engine thread: one [`HopBatcher`] over the blocks this node
//! holds, fed by the hop runtime. After each forward pass it hands the
//! step's outputs back to the runtime, which sends them on.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_engine::{Engine, HopBatcher, HopFinished, HopInput, HopKey, HopOptions, HopOutput};
use tokio::sync::{mpsc as async_mpsc, oneshot};

/// Longest a hop waits for more rows before a step ([`run`]'s gather).
const GATHER_MAX: Duration = Duration::from_millis(50);

/// A job for the hop's engine thread.
pub(crate) enum HopJob {
    /// Open a sequence.
    Open { key: HopKey, opts: HopOptions },
    /// Queue its next input for the next step.
    Push { key: HopKey, input: HopInput },
    /// Close it and report what it ran.
    Close {
        key: HopKey,
        reply: oneshot::Sender<Result<HopFinished, String>>,
    },
}

/// What the engine thread tells the runtime.
pub(crate) enum EngineEvent {
    /// One step's outputs, in key order.
    Outputs(Vec<(HopKey, HopOutput)>),
    /// A sequence could not be opened or fed; it will not produce output.
    Failed(HopKey, String),
}

/// Handle to the hop's engine thread.
#[derive(Clone)]
pub(crate) struct HopEngine {
    tx: mpsc::Sender<HopJob>,
}

impl HopEngine {
    /// Starts the thread over `engine`'s blocks `layers`; its events go to `events`.
    pub(crate) fn spawn(
        engine: Arc<Engine>,
        layers: std::ops::Range<usize>,
        events: async_mpsc::UnboundedSender<EngineEvent>,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("strata-hop".into())
            .spawn(move || run(&engine, layers, rx, &events))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the hop engine thread: {e}"));
        Self { tx }
    }

    /// Hands a job to the thread; false if it has stopped.
    pub(crate) fn submit(&self, job: HopJob) -> bool {
        self.tx.send(job).is_ok()
    }
}

fn run(
    engine: &Engine,
    layers: std::ops::Range<usize>,
    rx: mpsc::Receiver<HopJob>,
    events: &async_mpsc::UnboundedSender<EngineEvent>,
) {
    let mut batcher = match HopBatcher::new(&engine.model, layers) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("the hop engine cannot run: {e}");
            return;
        }
    };
    // The keys fed since the last step: the sequences a failed pass takes down.
    let mut fed: Vec<HopKey> = Vec::new();
    let mut last_step = Duration::ZERO;
    loop {
        let mut jobs = Vec::new();
        if !batcher.has_pending() {
            match rx.recv() {
                Ok(j) => jobs.push(j),
                Err(_) => return,
            }
        }
        jobs.extend(rx.try_iter());
        apply(&mut batcher, jobs, &mut fed, events);
        // Gather: while some live sequences have no input yet (their rows
        // are one hop upstream), wait a little for them, so that groups of
        // sequences that entered the pipeline apart merge into one batch
        // instead of circulating as small ones forever (a batched step costs
        // less per row). At most half the last step: a hop never idles
        // longer than the work it saves, and one stream never waits.
        let deadline = Instant::now() + last_step.min(GATHER_MAX);
        while batcher.has_pending() && batcher.pending() < batcher.live() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match rx.recv_timeout(left) {
                Ok(j) => {
                    let mut more = vec![j];
                    more.extend(rx.try_iter());
                    apply(&mut batcher, more, &mut fed, events);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        if !batcher.has_pending() {
            continue;
        }
        let started = Instant::now();
        let stepped = batcher.step();
        last_step = started.elapsed();
        match stepped {
            Ok(out) => {
                let _ = events.send(EngineEvent::Outputs(out));
            }
            Err(e) => {
                // The inputs were checked when pushed, so a failed pass is the
                // engine's own fault: every sequence in it fails, unbilled.
                tracing::error!("hop forward pass failed: {e}");
                for &key in &fed {
                    let _ = events.send(EngineEvent::Failed(key, e.to_string()));
                }
            }
        }
        fed.clear();
    }
}

/// Hands `jobs` to the batcher; a failure is reported for its sequence.
fn apply(
    batcher: &mut HopBatcher<'_>,
    jobs: Vec<HopJob>,
    fed: &mut Vec<HopKey>,
    events: &async_mpsc::UnboundedSender<EngineEvent>,
) {
    for job in jobs {
        match job {
            HopJob::Open { key, opts } => {
                if let Err(e) = batcher.open(key, opts) {
                    let _ = events.send(EngineEvent::Failed(key, e.to_string()));
                }
            }
            HopJob::Push { key, input } => match batcher.push(key, input) {
                Ok(()) => fed.push(key),
                Err(e) => {
                    let _ = events.send(EngineEvent::Failed(key, e.to_string()));
                }
            },
            HopJob::Close { key, reply } => {
                let _ = reply.send(batcher.close(key).map_err(|e| e.to_string()));
            }
        }
    }
}
