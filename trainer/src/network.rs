//! The trainer on the network: rollouts from a gateway's rollout jobs
//! (`POST /v1/rollouts`, each completion a paid, receipted task on some
//! node), and versions published to the nodes over p2p (the adapter file
//! seeded on the chunked distribution, a signed announcement on POLICY
//! gossip; nodes following this trainer's key fetch, verify and serve it).
//!
//! Rewards in a job's answer are recomputed here from the text and the
//! gateway's number is only compared: a reward is data, never trusted.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use strata_chain::Keypair;
use strata_engine::{Adapter, ChatMessage, Tokenizer};
use strata_p2p::{NodeIdentity, P2pConfig, P2pHandle};
use strata_rl::TaskPrompt;
use strata_wire::policy::PolicyAnnouncement;
use strata_wire::protocols::{ALL_PROTOCOLS, ALL_TOPICS};

use crate::error::{Result, TrainerError};
use crate::rollout::{Rollout, RolloutBatch, SampleSpec};
use crate::run::{Publisher, RolloutSource};

/// How often the newest version is announced again.
const REANNOUNCE: Duration = Duration::from_secs(3);

/// Largest rollout job answer read (256 completions with their receipts).
const MAX_ANSWER_BYTES: usize = 32 << 20;

fn rollouts(e: impl std::fmt::Display) -> TrainerError {
    TrainerError::Rollouts(e.to_string())
}

/// Rollouts from a gateway's rollout jobs, paid from the API key's escrow.
pub struct GatewaySource {
    rt: Arc<tokio::runtime::Runtime>,
    client: reqwest::Client,
    url: String,
    api_key: String,
    model: String,
    tokenizer: Tokenizer,
    /// Completions whose text or reward the gateway reported differently
    /// from the recomputation here from their tokens (logged; the
    /// recomputed one is used).
    pub reward_mismatches: u64,
    /// How long a job refused with 503 (capacity, or a version no node
    /// serves yet) is retried before the run fails.
    pub version_wait: Duration,
}

impl std::fmt::Debug for GatewaySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySource")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl GatewaySource {
    /// A source asking the gateway at `url` (e.g. `http://127.0.0.1:8080`)
    /// for rollouts of `model` with `api_key`; `tokenizer` rebuilds the
    /// prompts' tokens as the nodes saw them (the chat template of one user
    /// turn).
    pub fn new(
        rt: Arc<tokio::runtime::Runtime>,
        url: &str,
        api_key: &str,
        model: &str,
        tokenizer: Tokenizer,
    ) -> Self {
        Self {
            rt,
            client: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            model: model.to_string(),
            tokenizer,
            reward_mismatches: 0,
            version_wait: Duration::from_secs(120),
        }
    }

    /// Turns a job's answer into a batch: whole groups only (a group with a
    /// failed member is dropped, its advantages would be skewed), rewards
    /// recomputed, versions as the nodes reported them.
    fn parse(
        &mut self,
        body: &Value,
        version: u64,
        prompts: &[TaskPrompt],
        spec: &SampleSpec,
    ) -> Result<RolloutBatch> {
        let vocab = self.tokenizer.vocab_size();
        let results = body["results"]
            .as_array()
            .ok_or_else(|| rollouts(format!("answer without results: {body}")))?;
        if results.len() != prompts.len() {
            return Err(rollouts(format!(
                "{} results for {} prompts",
                results.len(),
                prompts.len()
            )));
        }
        let mut out = Vec::new();
        'groups: for (r, p) in results.iter().zip(prompts) {
            let prompt_tokens = self
                .tokenizer
                .apply_chat_template(&[ChatMessage::new("user", &p.prompt)], true)?;
            let members = r["completions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            if members.len() != spec.group_size {
                continue;
            }
            let mut group = Vec::with_capacity(members.len());
            for c in members {
                if c.get("error").is_some() {
                    continue 'groups;
                }
                let ids: Vec<u32> = c["token_ids"]
                    .as_array()
                    .ok_or_else(|| rollouts("a completion without token_ids"))?
                    .iter()
                    .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| rollouts("a token id is not a u32"))?;
                let logprobs: Vec<f32> = c["logprobs"]
                    .as_array()
                    .ok_or_else(|| rollouts("a completion without logprobs"))?
                    .iter()
                    .map(|l| l.as_f64().map(|l| l as f32))
                    .collect::<Option<_>>()
                    .ok_or_else(|| rollouts("a logprob is not a number"))?;
                if ids.is_empty()
                    || ids.len() != logprobs.len()
                    || ids.len() > spec.max_tokens
                    || logprobs.iter().any(|l| l.is_nan() || *l > 0.0)
                {
                    return Err(rollouts(format!(
                        "a completion with {} tokens (budget {}) and {} logprobs (each must be ≤ 0)",
                        ids.len(),
                        spec.max_tokens,
                        logprobs.len()
                    )));
                }
                if let Some(t) = ids.iter().find(|&&t| t as usize >= vocab) {
                    return Err(rollouts(format!(
                        "token id {t} outside the vocabulary of {vocab}"
                    )));
                }
                let reported = c["policy_version"]
                    .as_u64()
                    .ok_or_else(|| rollouts("a completion without policy_version"))?;
                if reported != version {
                    return Err(rollouts(format!(
                        "a completion of version {reported} in a job for version {version}"
                    )));
                }
                // The reward of the tokens trained on: their text decoded
                // here (special tokens, the stop token among them, dropped),
                // never the text a node sent alongside them.
                let text = self.tokenizer.decode(&ids, true)?;
                let reward = strata_rl::score(p.reward, &p.expected, &text)?;
                if c["reward"].as_f64().map(|r| r as f32) != Some(reward)
                    || c["text"].as_str() != Some(text.as_str())
                {
                    self.reward_mismatches += 1;
                    tracing::warn!(node = %c["node"], "the answer's text or reward differs from the recomputation");
                }
                let version = reported;
                group.push(Rollout {
                    prompt_tokens: prompt_tokens.clone(),
                    completion: ids,
                    logprobs,
                    version,
                    reward,
                });
            }
            out.extend(group);
        }
        if out.is_empty() {
            return Err(rollouts("no complete group came back"));
        }
        Ok(RolloutBatch {
            group_size: spec.group_size,
            temperature: f64::from(spec.temperature),
            rollouts: out,
        })
    }
}

impl RolloutSource for GatewaySource {
    fn sample(
        &mut self,
        version: u64,
        _adapter: Option<&Arc<Adapter>>,
        prompts: &[TaskPrompt],
        spec: &SampleSpec,
    ) -> Result<RolloutBatch> {
        let reward = prompts
            .first()
            .map(|p| p.reward)
            .ok_or_else(|| rollouts("no prompts"))?;
        let job = json!({
            "model": self.model,
            "policy_version": version,
            "prompts": prompts.iter().map(|p| json!({"prompt": p.prompt, "expected": p.expected})).collect::<Vec<_>>(),
            "reward": reward,
            "group_size": spec.group_size,
            "max_tokens": spec.max_tokens,
            "sampling": {"temperature": spec.temperature, "top_p": 1.0, "top_k": 0, "seed": spec.seed},
        });
        let (client, url, key) = (
            self.client.clone(),
            format!("{}/v1/rollouts", self.url),
            self.api_key.clone(),
        );
        let wait = self.version_wait;
        let body: Value = self.rt.block_on(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let resp = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&job)
                    .send()
                    .await
                    .map_err(rollouts)?;
                let status = resp.status();
                let bytes = resp.bytes().await.map_err(rollouts)?;
                if bytes.len() > MAX_ANSWER_BYTES {
                    return Err(rollouts(format!("answer of {} bytes", bytes.len())));
                }
                // A version just published is not served until a node has
                // fetched it and announced so: wait for it, within bounds.
                if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                if !status.is_success() {
                    return Err(rollouts(format!(
                        "{status}: {}",
                        String::from_utf8_lossy(&bytes)
                    )));
                }
                return serde_json::from_slice(&bytes).map_err(rollouts);
            }
        })?;
        self.parse(&body, version, prompts, spec)
    }
}

/// Rollout worker offers from a gateway's `GET /v1/workers` answer: each
/// node's announced price, and its speed with every free slot running (one
/// sequence's announced speed × free slots: an upper bound, batched decoding
/// does not scale linearly).
pub fn offers(body: &Value) -> Result<Vec<strata_rl::workers::WorkerOffer>> {
    let list = body["data"]
        .as_array()
        .ok_or_else(|| rollouts(format!("workers answer without data: {body}")))?;
    list.iter()
        .map(|w| {
            let num = |k: &str| {
                w[k].as_f64()
                    .ok_or_else(|| rollouts(format!("a worker without {k}: {w}")))
            };
            let slots = (num("max_concurrent")? - num("active")?).max(0.0) as u32;
            Ok(strata_rl::workers::WorkerOffer {
                id: w["node"].as_str().unwrap_or("?").to_string(),
                price_per_token: num("price_per_token")? as u64,
                tokens_per_sec: num("tokens_per_sec")? * f64::from(slots),
                slots,
            })
        })
        .collect()
}

/// Publishes each version to the nodes that follow this trainer's key.
pub struct P2pPublisher {
    rt: Arc<tokio::runtime::Runtime>,
    p2p: P2pHandle,
    key: Keypair,
    base_model: [u8; 32],
    /// Every announcement made, newest last.
    pub announcements: Vec<PolicyAnnouncement>,
    /// The newest announcement, which a background task publishes again
    /// every few seconds for nodes that joined (or meshed) after it.
    latest: Arc<Mutex<Option<PolicyAnnouncement>>>,
}

impl std::fmt::Debug for P2pPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pPublisher")
            .field("peer", &self.p2p.node_id())
            .finish_non_exhaustive()
    }
}

impl P2pPublisher {
    /// Starts a p2p peer with the trainer's key (its identity is the key
    /// nodes follow) on `config` (the network's catalogue of protocols and
    /// topics is added), and dials `peers`.
    pub fn start(
        rt: Arc<tokio::runtime::Runtime>,
        key: Keypair,
        base_model: [u8; 32],
        config: P2pConfig,
        peers: &[String],
    ) -> Result<Self> {
        let p2p = rt.block_on(async {
            let identity = NodeIdentity::from_keypair_bytes(key.to_bytes())
                .map_err(|e| rollouts(format!("trainer identity: {e}")))?;
            let config = config.with_protocols(ALL_PROTOCOLS).with_topics(ALL_TOPICS);
            let (p2p, mut events) = strata_p2p::start(identity, config)
                .await
                .map_err(rollouts)?;
            // The trainer answers chunk requests (the p2p layer does) and
            // needs nothing else from the network's events.
            tokio::spawn(async move { while events.recv().await.is_some() {} });
            for addr in peers {
                if let Err(e) = p2p.dial(addr).await {
                    tracing::warn!("dialing {addr}: {e}");
                }
            }
            Ok::<_, TrainerError>(p2p)
        })?;
        let latest: Arc<Mutex<Option<PolicyAnnouncement>>> = Arc::default();
        let (again, handle) = (latest.clone(), p2p.clone());
        rt.spawn(async move {
            let mut tick = tokio::time::interval(REANNOUNCE);
            loop {
                tick.tick().await;
                let a = again.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(a) = a {
                    // Errors (no subscriber yet, a duplicate) change nothing.
                    let _ = strata_service::policy::announce(&handle, &a).await;
                }
            }
        });
        Ok(Self {
            rt,
            p2p,
            key,
            base_model,
            announcements: Vec::new(),
            latest,
        })
    }

    /// The trainer's p2p handle.
    pub fn p2p(&self) -> &P2pHandle {
        &self.p2p
    }
}

impl Publisher for P2pPublisher {
    fn publish(&mut self, adapter: &Arc<Adapter>, path: &Path) -> Result<()> {
        let version = adapter.version();
        let (p2p, key, base) = (&self.p2p, &self.key, self.base_model);
        let a = self.rt.block_on(async move {
            let a = strata_service::policy::prepare_policy(p2p, key, base, version, path)
                .await
                .map_err(|e| rollouts(format!("seeding version {version}: {e}")))?;
            // Gossip refuses to publish while no follower is subscribed yet
            // (a node starting up): the file is seeded, so try again.
            let mut tries = 0;
            while let Err(e) = strata_service::policy::announce(p2p, &a).await {
                tries += 1;
                if tries == 10 {
                    return Err(rollouts(format!("announcing version {version}: {e}")));
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Ok(a)
        })?;
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(a.clone());
        self.announcements.push(a);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job answer of one prompt's group.
    fn answer(members: Vec<Value>) -> Value {
        json!({"results": [{"completions": members}]})
    }

    fn member(ids: &[u32], logprob: f64, text: &str, version: u64) -> Value {
        json!({"token_ids": ids, "logprobs": vec![logprob; ids.len()], "text": text,
               "reward": 0.0, "policy_version": version})
    }

    #[test]
    fn answers_are_checked_and_rewards_recomputed_from_the_tokens() {
        let engine = strata_engine::Engine::load_default().unwrap();
        let rt = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        let mut src =
            GatewaySource::new(rt, "http://127.0.0.1:1", "k", "m", engine.tokenizer.clone());
        let prompts = strata_rl::generate("copy", 3, 1).unwrap();
        let spec = SampleSpec {
            group_size: 2,
            max_tokens: 16,
            temperature: 1.0,
            seed: 1,
        };
        let right = engine
            .tokenizer
            .encode(&format!("Answer: {}", prompts[0].expected), false)
            .unwrap();
        // Right tokens sent with a wrong text and reward: scored from the tokens.
        let ok = answer(vec![
            member(&right, -0.5, "junk", 2),
            member(&right, -0.5, "junk", 2),
        ]);
        let b = src.parse(&ok, 2, &prompts, &spec).unwrap();
        assert_eq!(b.rollouts.len(), 2);
        assert_eq!(b.rollouts[0].reward, 1.0);
        assert_eq!(src.reward_mismatches, 2);

        let refused = |body: Value, src: &mut GatewaySource| {
            src.parse(&body, 2, &prompts, &spec)
                .unwrap_err()
                .to_string()
        };
        let e = refused(
            answer(vec![
                member(&right, -0.5, "", 3),
                member(&right, -0.5, "", 3),
            ]),
            &mut src,
        );
        assert!(e.contains("version 3 in a job for version 2"), "{e}");
        let e = refused(
            answer(vec![
                member(&[u32::MAX], -0.5, "", 2),
                member(&right, -0.5, "", 2),
            ]),
            &mut src,
        );
        assert!(e.contains("outside the vocabulary"), "{e}");
        let e = refused(
            answer(vec![
                member(&right, 0.5, "", 2),
                member(&right, -0.5, "", 2),
            ]),
            &mut src,
        );
        assert!(e.contains("must be ≤ 0"), "{e}");
        let long = vec![right[0]; 17];
        let e = refused(
            answer(vec![
                member(&long, -0.5, "", 2),
                member(&right, -0.5, "", 2),
            ]),
            &mut src,
        );
        assert!(e.contains("budget 16"), "{e}");
        // A group with a failed member is dropped whole: nothing is left.
        let failed = json!({"error": {"message": "node down"}});
        let e = refused(answer(vec![member(&right, -0.5, "", 2), failed]), &mut src);
        assert!(e.contains("no complete group"), "{e}");
    }

    #[test]
    fn offers_count_free_slots_and_refuse_missing_fields() {
        let body = json!({"data": [
            {"node": "a", "price_per_token": 3, "tokens_per_sec": 20.0, "max_concurrent": 8, "active": 2, "policy_versions": [1]},
            {"node": "b", "price_per_token": 1, "tokens_per_sec": 10.0, "max_concurrent": 4, "active": 6, "policy_versions": []},
        ]});
        let o = offers(&body).unwrap();
        assert_eq!(
            (o[0].slots, o[0].tokens_per_sec, o[0].price_per_token),
            (6, 120.0, 3)
        );
        assert_eq!(
            (o[1].slots, o[1].tokens_per_sec),
            (0, 0.0),
            "an over-busy node has no room"
        );
        assert!(offers(&json!({"data": [{"node": "c"}]})).is_err());
        assert!(offers(&json!({"error": "x"})).is_err());
    }
}
