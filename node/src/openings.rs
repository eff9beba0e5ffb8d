//! The node's side of an audit: answering an opening request.
//!
//! Only the verifier the audit rules assign to a receipt, or a member of the
//! committee of an open challenge against it, gets an answer, and only for
//! the layers the rules pick: the node checks both against the chain
//! (`strata_chain::audit`), and checks the receipt's Merkle proof against the
//! batch root so an asker cannot borrow another batch's seed. What the asker
//! learns is the task's token ids and the hidden states of the chosen layers;
//! nobody else learns anything.
//!
//! The node re-derives the task's states from its archive in one prefill pass
//! ([`build_opening`]) and checks that they lead to the root it signed. A
//! pipeline hop's receipt is opened the same way over the hop's own blocks,
//! from what the hop received ([`build_hop_opening`]), with the node's
//! loaded shard: layers are drawn inside the hop's blocks
//! ([`receipt_plan`]).
//!
//! A task served with a policy version (its receipt names the version and
//! the adapter's digest) is re-derived with that adapter, taken from the
//! node's policy store: the version served, or, once evicted, its file,
//! which the store keeps while the archive pins it (as long as the task
//! may be audited; see docs/rl.md).

use std::collections::BTreeSet;
use std::sync::Arc;

use strata_chain::accounts::{Batch, Config, Node};
use strata_chain::audit::{committee, plan, plan_range, AuditPlan};
use strata_chain::merkle::{self, domains::Ledger};
use strata_chain::rpc::ChainClient;
use strata_chain::{accounts::ChallengeStatus, pda, Pubkey};
use strata_engine::{
    Adapter, CommitmentTree, Engine, HiddenStates, LayerTamper, Model, SamplingParams, WireDType,
    DEFAULT_MAX_HIDDEN_BYTES,
};
use strata_p2p::{IncomingRequest, NodeId};
use strata_wire::audit::{OpenedEntry, OpeningRequest, OpeningResponse, TaskOpening};
use strata_wire::{Receipt, Sampling};

use crate::archive::{Archive, HopInput as Received, HopRecord, TaskRecord};
use crate::cheat::Cheat;
use crate::policy::PolicyStore;

/// The engine's form of a task's (or a receipt's) sampling settings.
pub fn sampling_params(s: &Sampling) -> SamplingParams {
    SamplingParams {
        temperature: s.temperature,
        top_k: s.top_k as usize,
        top_p: s.top_p,
        seed: s.seed,
    }
}

/// Why an opening could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OpeningError {
    /// A requested layer is not in the model.
    #[error("layer {layer} is not in a model of {n_layers} layers")]
    NoSuchLayer {
        /// The layer asked for.
        layer: u32,
        /// The model's depth.
        n_layers: usize,
    },
    /// A requested layer is not one the hop ran.
    #[error("layer {layer} is not among the hop's blocks {start}..{end}")]
    OutsideHop {
        /// The layer asked for.
        layer: u32,
        /// The hop's first block.
        start: u16,
        /// One past its last block.
        end: u16,
    },
    /// The archived hop record cannot answer an audit.
    #[error("{0}")]
    Record(String),
    /// The adapter the receipt names is not held (nor its file kept).
    #[error("{0}")]
    NoAdapter(String),
    /// The engine failed.
    #[error("engine: {0}")]
    Engine(#[from] strata_engine::EngineError),
}

/// The audit plan of `receipt`, served by `serving`, by the rules anyone can
/// recompute: a whole-model receipt's layers among the model's `n_layers`,
/// steps among its completion tokens; a hop receipt's layers inside its
/// blocks, steps only for the last hop (among the tokens it sampled). The
/// node and the verifier both plan with this, so they agree.
pub fn receipt_plan(
    config: &Config,
    batch: &Batch,
    receipt: &Receipt,
    serving: &Pubkey,
    nodes: &[Node],
    n_layers: u32,
) -> Option<AuditPlan> {
    let b = &receipt.body;
    let leaf = receipt.leaf();
    match &b.hop {
        None => plan(
            config,
            batch,
            &leaf,
            serving,
            nodes,
            n_layers,
            b.completion_tokens,
        ),
        Some(h) => {
            let sampled = if h.end == h.n_layers {
                b.completion_tokens
            } else {
                0
            };
            let blocks = u32::from(h.start)..u32::from(h.end);
            plan_range(config, batch, &leaf, serving, nodes, blocks, sampled)
        }
    }
}

/// Re-derives a pipeline hop's states from `record` (what it received) over
/// its blocks `a..b` with `model` (which must hold them, and the embedding
/// for the first hop), and opens: entry `a` (its hash is the receipt's
/// `input_states`), the inputs and outputs of `layers` with their states,
/// and the exit entry `b` (the receipt's `output_states`), with its states
/// when the hop sampled (the last hop: the verifier re-samples from them).
/// The token ids sent are the first hop's prompt (then, unless it is also
/// the last, the tokens fed back to it) and the last hop's sampled tokens.
/// Returns the opening and the root the re-derived states lead to.
pub fn build_hop_opening(
    model: &Model,
    record: &HopRecord,
    layers: &[u32],
    tamper: Option<Arc<dyn LayerTamper>>,
) -> Result<(TaskOpening, [u8; 32]), OpeningError> {
    let hop = record
        .check()
        .map_err(|e| OpeningError::Record(e.to_string()))?;
    let (start, end) = (u32::from(hop.start), u32::from(hop.end));
    if let Some(&layer) = layers.iter().find(|&&l| l < start || l >= end) {
        return Err(OpeningError::OutsideHop {
            layer,
            start: hop.start,
            end: hop.end,
        });
    }
    let last = hop.end == hop.n_layers;
    let (input, prompt, fed) = match &record.input {
        Received::Tokens(t) => {
            let p = (record.receipt.body.prompt_tokens as usize).min(t.len());
            let input = strata_engine::HopInput::Tokens(t.clone());
            (input, t[..p].to_vec(), t[p..].to_vec())
        }
        Received::States(bytes) => {
            let s = HiddenStates::decode(bytes, DEFAULT_MAX_HIDDEN_BYTES)?;
            (strata_engine::HopInput::States(s), Vec::new(), Vec::new())
        }
    };
    let range = start as usize..end as usize;
    let recorder = strata_engine::rederive_hop(model, range, &input, tamper)?;
    let tree = CommitmentTree::for_range(start as usize, recorder.entries())?;
    // Entry index -> whether its states are sent.
    let mut opened: std::collections::BTreeMap<u32, bool> =
        [(start, false), (end, last)].into_iter().collect();
    for &l in layers {
        opened.insert(l, true);
        opened.insert(l + 1, true);
    }
    let mut entries = Vec::with_capacity(opened.len());
    for (index, with_states) in opened {
        let states = if with_states {
            let s = recorder.states(index as usize).ok_or_else(|| {
                strata_engine::EngineError::Commitment(format!("no states for entry {index}"))
            })?;
            Some(s.encode(WireDType::F32)?)
        } else {
            None
        };
        entries.push(OpenedEntry {
            index,
            opening: tree.open(index as usize)?.encode(),
            states,
        });
    }
    let output = if last { record.sampled.clone() } else { fed };
    Ok((
        TaskOpening {
            prompt,
            output,
            entries,
        },
        tree.root(),
    ))
}

/// Re-derives `record`'s states and opens entry 0, the inputs and outputs of
/// `layers`, and the final states. Returns the opening and the root the
/// re-derived states lead to (the receipt's root, for an honest node).
pub fn build_opening(
    model: &Model,
    record: &TaskRecord,
    layers: &[u32],
    tamper: Option<Arc<dyn LayerTamper>>,
) -> Result<(TaskOpening, [u8; 32]), OpeningError> {
    build_opening_adapted(model, record, layers, tamper, None)
}

/// [`build_opening`] of a task served with a policy version: the states
/// are re-derived with its `adapter`, as the engine ran it.
pub fn build_opening_adapted(
    model: &Model,
    record: &TaskRecord,
    layers: &[u32],
    tamper: Option<Arc<dyn LayerTamper>>,
    adapter: Option<&Adapter>,
) -> Result<(TaskOpening, [u8; 32]), OpeningError> {
    let n = model.n_layers();
    if let Some(&layer) = layers.iter().find(|&&l| l as usize >= n) {
        return Err(OpeningError::NoSuchLayer { layer, n_layers: n });
    }
    let recorder = strata_engine::rederive_adapted(model, &record.positions(), tamper, adapter)?;
    let tree = CommitmentTree::new(recorder.entries())?;
    let final_entry = n as u32;
    let mut with_states: BTreeSet<u32> = layers.iter().flat_map(|&l| [l, l + 1]).collect();
    with_states.insert(final_entry);
    let mut entries = vec![];
    if !with_states.contains(&0) {
        entries.push(OpenedEntry {
            index: 0,
            opening: tree.open(0)?.encode(),
            states: None,
        });
    }
    for index in with_states {
        let states = recorder.states(index as usize).ok_or_else(|| {
            strata_engine::EngineError::Commitment(format!("no states for entry {index}"))
        })?;
        entries.push(OpenedEntry {
            index,
            opening: tree.open(index as usize)?.encode(),
            states: Some(states.encode(WireDType::F32)?),
        });
    }
    Ok((
        TaskOpening {
            prompt: record.prompt.clone(),
            output: record.output.clone(),
            entries,
        },
        tree.root(),
    ))
}

/// An archived record an opening is built from.
enum Archived {
    Task(TaskRecord),
    Hop(HopRecord),
}

impl Archived {
    fn receipt(&self) -> &Receipt {
        match self {
            Archived::Task(r) => &r.receipt,
            Archived::Hop(r) => &r.receipt,
        }
    }
}

/// What the node serves with now: a whole model, or a hop's blocks (which
/// change when the hop moves, so they are asked for at each opening).
#[derive(Clone)]
pub enum Serving {
    /// The whole model.
    Whole(Arc<Engine>),
    /// A pipeline hop's current blocks.
    Hops(crate::Hops),
}

impl Serving {
    fn current(&self) -> Arc<Engine> {
        match self {
            Serving::Whole(e) => e.clone(),
            Serving::Hops(h) => h.engine(),
        }
    }
}

/// An engine that holds what `record` ran: `current` if it does, else the
/// record's blocks loaded from the model file (a hop that has moved since).
fn engine_for(
    current: Arc<Engine>,
    path: &std::path::Path,
    record: &Archived,
) -> Result<Arc<Engine>, OpeningError> {
    let Archived::Hop(r) = record else {
        return Ok(current);
    };
    let hop = r.check().map_err(|e| OpeningError::Record(e.to_string()))?;
    let (a, b) = (usize::from(hop.start), usize::from(hop.end));
    let m = &current.model;
    let held = m.layers();
    let holds = held.start <= a
        && b <= held.end
        && (a != 0 || m.has_embedding())
        && (b != m.n_layers() || m.has_head());
    if holds {
        return Ok(current);
    }
    let shard = strata_engine::Shard::Layers(a..b);
    Ok(Arc::new(Engine::load_shard(path, &shard)?))
}

/// Serves the `OPENING` protocol.
#[derive(Clone)]
pub struct Openings {
    serving: Serving,
    /// The model file: a hop that has moved since it served an audited
    /// part loads that part's blocks again from it.
    model_path: std::path::PathBuf,
    archive: Arc<Archive>,
    chain: Option<ChainClient>,
    me: Pubkey,
    cheat: Option<Cheat>,
    /// CPU time spent re-deriving states for openings, microseconds.
    cpu_micros: Arc<std::sync::atomic::AtomicU64>,
    /// The policy versions held: a task served with one is re-derived
    /// with its adapter.
    policies: Option<PolicyStore>,
}

impl Openings {
    /// A server over the node's engine and archive; without a chain nothing
    /// is ever audited, so every request is refused.
    pub fn new(
        serving: Serving,
        model_path: std::path::PathBuf,
        archive: Arc<Archive>,
        chain: Option<ChainClient>,
        me: Pubkey,
        cheat: Option<Cheat>,
    ) -> Self {
        Self {
            serving,
            model_path,
            archive,
            chain,
            me,
            cheat,
            cpu_micros: Arc::default(),
            policies: None,
        }
    }

    /// Opens tasks served with policy versions with the adapters `policies` holds.
    pub fn with_policies(mut self, policies: Option<PolicyStore>) -> Self {
        self.policies = policies;
        self
    }

    /// The adapter a whole-model receipt names, from the store (served, or
    /// loaded from its pinned file: blocking): None for a base-model
    /// receipt, an error when it is no longer held.
    fn adapter_of(
        policies: Option<&PolicyStore>,
        receipt: &Receipt,
    ) -> Result<Option<Arc<Adapter>>, String> {
        let Some(part) = receipt.body.adapter else {
            return Ok(None);
        };
        let Some(store) = policies else {
            return Err(format!(
                "the adapter of policy version {} ({}) is not held: this node follows no trainer",
                part.policy_version,
                hex::encode(part.adapter)
            ));
        };
        store.adapter(part.policy_version, &part.adapter).map(Some)
    }

    /// CPU time spent re-deriving states to answer audits, microseconds.
    pub fn cpu_micros(&self) -> u64 {
        self.cpu_micros.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answers one request (or, for a node cheating by withholding, never).
    pub async fn handle(&self, req: IncomingRequest) {
        if self.cheat == Some(Cheat::Withhold) {
            // Dropped unanswered: the asker times out.
            return;
        }
        let response = match OpeningRequest::decode(&req.payload) {
            Ok(r) => self.answer(req.from, r).await,
            Err(e) => OpeningResponse::Refused(e.to_string()),
        };
        if let OpeningResponse::Refused(why) = &response {
            tracing::info!(peer = %req.from, "opening refused: {why}");
        }
        if req.respond(strata_wire::encode(&response)).is_err() {
            tracing::debug!("could not answer an opening request: p2p is shutting down");
        }
    }

    async fn answer(&self, from: NodeId, request: OpeningRequest) -> OpeningResponse {
        let record = match self.archive.get(&request.task_id) {
            Ok(Some(r)) => Archived::Task(r),
            Ok(None) => match self.archive.get_hop(&request.task_id) {
                Ok(Some(r)) => Archived::Hop(r),
                Ok(None) => return OpeningResponse::Refused("unknown task".into()),
                Err(e) => return OpeningResponse::Refused(format!("archive: {e}")),
            },
            Err(e) => return OpeningResponse::Refused(format!("archive: {e}")),
        };
        if let Err(why) = self.authorize(from, &request, &record).await {
            return OpeningResponse::Refused(why);
        }
        let policies = self.policies.clone();
        let current = self.serving.current();
        let tamper = self.cheat.and_then(|c| c.tamper(current.model.n_layers()));
        let layers = request.layers.clone();
        let cpu = self.cpu_micros.clone();
        let path = self.model_path.clone();
        let built = tokio::task::spawn_blocking(move || {
            let before = strata_service::thread_cpu_micros();
            let adapter = Self::adapter_of(policies.as_ref(), record.receipt())
                .map_err(OpeningError::NoAdapter)?;
            let engine = engine_for(current, &path, &record)?;
            let built = match &record {
                Archived::Task(r) => {
                    build_opening_adapted(&engine.model, r, &layers, tamper, adapter.as_deref())
                }
                Archived::Hop(r) => build_hop_opening(&engine.model, r, &layers, tamper),
            }
            .map(|(o, root)| (o, root, record.receipt().body.commitment_root));
            cpu.fetch_add(
                strata_service::thread_cpu_micros().saturating_sub(before),
                std::sync::atomic::Ordering::Relaxed,
            );
            built
        })
        .await;
        match built {
            Ok(Ok((opening, root, signed))) => {
                if root != signed && self.cheat != Some(Cheat::WrongRoot) {
                    // Never expected of an honest node: the engine's prefill
                    // and decode are bit-identical. Say so loudly.
                    tracing::error!(
                        task = %hex::encode(request.task_id),
                        "re-derived states do not reach the signed commitment root"
                    );
                }
                OpeningResponse::Opened(Box::new(opening))
            }
            Ok(Err(e)) => OpeningResponse::Refused(e.to_string()),
            Err(e) => OpeningResponse::Refused(format!("opening task failed: {e}")),
        }
    }

    /// The asker must be the assigned verifier of an audited receipt, or a
    /// member of the committee of an open challenge against it, and ask for
    /// exactly the layers the audit rules pick.
    async fn authorize(
        &self,
        from: NodeId,
        request: &OpeningRequest,
        record: &Archived,
    ) -> Result<(), String> {
        let chain = self
            .chain
            .as_ref()
            .ok_or("this node runs off-chain: nothing it serves is audited")?;
        let read = |e: strata_chain::ChainError| format!("reading the chain: {e}");
        let batch = chain
            .batch(request.batch_id)
            .await
            .map_err(read)?
            .ok_or_else(|| format!("batch {} is not posted", request.batch_id))?;
        let receipt = record.receipt();
        let leaf = receipt.leaf();
        merkle::verify::<Ledger>(
            &batch.root,
            leaf,
            u64::from(request.leaf_index),
            u64::from(batch.task_count),
            &request.proof,
        )
        .map_err(|e| format!("the receipt is not at that leaf of that batch: {e}"))?;
        let config = chain.config().await.map_err(read)?;
        let nodes = chain.registered_nodes().await.map_err(read)?;
        let n_layers = self.serving.current().model.n_layers() as u32;
        let plan = match record {
            Archived::Task(r) => {
                let n_outputs = r.output.len() as u32;
                plan(
                    &config, &batch, &leaf, &self.me, &nodes, n_layers, n_outputs,
                )
            }
            // A hop's plan depends only on its signed receipt, as the
            // verifier's does.
            Archived::Hop(_) => receipt_plan(&config, &batch, receipt, &self.me, &nodes, n_layers),
        }
        .ok_or("the batch's audit seed is not drawn yet")?;
        if request.layers != plan.layers {
            return Err(format!(
                "asked for layers {:?}; the audit rules pick {:?}",
                request.layers, plan.layers
            ));
        }
        let asker = Pubkey::from(from.0);
        if plan.audited && plan.verifiers.contains(&asker) {
            return Ok(());
        }
        let challenge = pda::challenge(&pda::batch(request.batch_id), request.leaf_index);
        let open = chain
            .account::<strata_chain::accounts::Challenge>(&challenge, "challenge")
            .await
            .map_err(read)?
            .filter(|c| c.status == ChallengeStatus::Open);
        match open {
            Some(c) if committee(&c, &nodes, config.params.min_stake).contains(&asker) => Ok(()),
            Some(_) => Err("not on the committee of the challenge against this receipt".into()),
            None if plan.audited => Err("not the verifier assigned to this audit".into()),
            None => Err("this receipt is not audited".into()),
        }
    }
}
