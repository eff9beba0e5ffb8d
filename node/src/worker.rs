//! The engine thread: one continuous batch over the model, fed by the task
//! service. Each task's progress (text so far, and usage once finished) is
//! published on a `watch` channel that the service's long polls wait on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use strata_engine::{Batcher, Engine, FinishReason, GenerateRequest, SeqId, TokenLogprobs};
use tokio::sync::watch;

/// Task id as in the wire protocol.
pub type TaskId = [u8; 32];

/// What a running task has produced.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Output text so far (whole characters only; stop strings cut off).
    pub text: String,
    /// Generated tokens so far.
    pub tokens: Vec<u32>,
    /// Their log-probabilities, one per token, when the task asked for them
    /// (published with the tokens; empty otherwise).
    pub logprobs: Vec<TokenLogprobs>,
    /// Set when the task has ended.
    pub done: Option<Done>,
}

/// How a task ended.
#[derive(Debug, Clone)]
pub struct Done {
    /// True when it ended at a stop token or string (false: length).
    pub stopped: bool,
    /// True when the caller cancelled it.
    pub cancelled: bool,
    /// Root of the per-layer commitments.
    pub commitment_root: [u8; 32],
    /// The engine failed; the task is not billed.
    pub error: Option<String>,
}

/// A job for the engine thread.
pub enum Job {
    /// Run a request; progress goes to the sender.
    Start {
        /// The task.
        task: TaskId,
        /// Tokenized request.
        request: GenerateRequest,
        /// Stop strings on the decoded text.
        stop: Vec<String>,
        /// Where progress goes.
        progress: watch::Sender<Progress>,
    },
    /// End a task early.
    Cancel(TaskId),
}

/// A task's streaming state: its tokens so far and how much of their text
/// has been published.
pub(crate) struct Running {
    pub(crate) task: TaskId,
    pub(crate) stop: Vec<String>,
    pub(crate) progress: watch::Sender<Progress>,
    pub(crate) tokens: Vec<u32>,
    pub(crate) logprobs: Vec<TokenLogprobs>,
    pub(crate) text_bytes: usize,
    pub(crate) cancelled: bool,
}

impl Running {
    /// A task that has produced nothing yet.
    pub(crate) fn new(task: TaskId, stop: Vec<String>, progress: watch::Sender<Progress>) -> Self {
        Self {
            task,
            stop,
            progress,
            tokens: Vec::new(),
            logprobs: Vec::new(),
            text_bytes: 0,
            cancelled: false,
        }
    }
}

/// Handle to the engine thread.
#[derive(Clone)]
pub struct Worker {
    tx: mpsc::Sender<Job>,
    cpu_micros: Arc<AtomicU64>,
    engine: Arc<Engine>,
}

impl Worker {
    /// Starts the engine thread over `engine`.
    pub fn spawn(engine: Arc<Engine>) -> Self {
        let (tx, rx) = mpsc::channel();
        let cpu_micros = Arc::new(AtomicU64::new(0));
        let cpu = cpu_micros.clone();
        let e = engine.clone();
        std::thread::Builder::new()
            .name("strata-engine".into())
            .spawn(move || run(&e, rx, &cpu))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the engine thread: {e}"));
        Self {
            tx,
            cpu_micros,
            engine,
        }
    }

    /// The engine the thread runs.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// CPU time the engine thread has spent in forward passes, microseconds
    /// (all of the serving work when candle runs on one thread).
    pub fn cpu_micros(&self) -> u64 {
        self.cpu_micros.load(Ordering::Relaxed)
    }

    /// Hands a job to the engine thread; false if it has stopped.
    pub fn submit(&self, job: Job) -> bool {
        self.tx.send(job).is_ok()
    }
}

fn run(engine: &Engine, rx: mpsc::Receiver<Job>, cpu_micros: &AtomicU64) {
    let mut batcher = Batcher::new(&engine.model);
    let mut running: HashMap<SeqId, Running> = HashMap::new();
    loop {
        // Block when idle; otherwise take whatever arrived since the last step.
        let mut jobs = Vec::new();
        if batcher.is_idle() {
            match rx.recv() {
                Ok(j) => jobs.push(j),
                Err(_) => return,
            }
        }
        jobs.extend(rx.try_iter());
        for job in jobs {
            match job {
                Job::Start {
                    task,
                    request,
                    stop,
                    progress,
                } => match batcher.add(request) {
                    Ok(id) => {
                        running.insert(id, Running::new(task, stop, progress));
                    }
                    Err(e) => fail(&progress, e.to_string()),
                },
                Job::Cancel(task) => {
                    if let Some((&id, r)) = running.iter_mut().find(|(_, r)| r.task == task) {
                        r.cancelled = true;
                        let _ = batcher.stop(id);
                    }
                }
            }
        }
        let before = strata_service::thread_cpu_micros();
        let step = batcher.step();
        cpu_micros.fetch_add(
            strata_service::thread_cpu_micros().saturating_sub(before),
            Ordering::Relaxed,
        );
        let step = match step {
            Ok(s) => s,
            Err(e) => {
                // A failed pass poisons every sequence in it: fail them all, unbilled.
                for (_, r) in running.drain() {
                    fail(&r.progress, e.to_string());
                }
                batcher = Batcher::new(&engine.model);
                continue;
            }
        };
        for t in step {
            let Some(r) = running.get_mut(&t.id) else {
                continue;
            };
            r.tokens.push(t.token);
            r.logprobs.extend(t.logprobs);
            if append_text(engine, r) {
                let _ = batcher.stop(t.id);
            }
        }
        for f in batcher.take_finished() {
            let Some(r) = running.remove(&f.id) else {
                continue;
            };
            let root = f.commitments.as_ref().map(|c| c.root()).unwrap_or([0; 32]);
            r.progress.send_modify(|p| {
                p.tokens = f.tokens.clone();
                p.logprobs = f.logprobs.clone();
                p.done = Some(Done {
                    stopped: f.reason == FinishReason::Stop,
                    cancelled: r.cancelled,
                    commitment_root: root,
                    error: None,
                });
            });
        }
    }
}

/// Decodes the new tokens into text; returns true if a stop string matched
/// (the text is cut before it).
pub(crate) fn append_text(engine: &Engine, r: &mut Running) -> bool {
    let Ok(bytes) = engine.tokenizer.decode_bytes(&r.tokens, true) else {
        return false;
    };
    // Hold back an incomplete UTF-8 character until its last byte arrives.
    let valid = match std::str::from_utf8(&bytes) {
        Ok(s) => s.len(),
        Err(e) => e.valid_up_to(),
    };
    if valid <= r.text_bytes {
        return false;
    }
    let text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
    let cut = r.stop.iter().filter_map(|s| text.find(s.as_str())).min();
    let (text, stopped) = match cut {
        Some(at) => (text[..at].to_string(), true),
        None => (text, false),
    };
    r.text_bytes = valid;
    let tokens = r.tokens.clone();
    // Empty unless the task asked for logprobs.
    let logprobs = r.logprobs.clone();
    r.progress.send_modify(|p| {
        p.text = text;
        p.tokens = tokens;
        p.logprobs = logprobs;
    });
    stopped
}

fn fail(progress: &watch::Sender<Progress>, error: String) {
    progress.send_modify(|p| {
        p.done = Some(Done {
            stopped: false,
            cancelled: false,
            commitment_root: [0; 32],
            error: Some(error),
        });
    });
}
