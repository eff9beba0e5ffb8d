//! What the layer knows and decides about other peers: penalties and bans
//! (with [`Misbehaviour`] naming what each peer did), the inbound request
//! budget, dials waiting for a connection and the static peers to keep
//! connected.
//!
//! Deciding is separate from acting: [`Peers::penalise`] updates the score at
//! once and queues a [`Penalty`]; the event loop drains the queue and does
//! the swarm's part (disconnect, gossipsub blacklist, Kademlia removal) and
//! tells the application. That lets every other state machine penalise a
//! peer without holding the swarm.

mod reputation;
mod score;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use crate::error::P2pError;
pub use reputation::{Direction, Misbehaviour, Protocol, Severity};
pub(crate) use score::ScoreConfig;
use score::{PeerScores, Verdict};

/// How often static peers are re-dialled and expired bans lifted.
const REDIAL_EVERY: Duration = Duration::from_secs(5);

/// A reply waiting for a dial to succeed or fail.
pub(crate) type DialReply = oneshot::Sender<Result<(), P2pError>>;

/// A penalty decided but not yet applied to the swarm.
#[derive(Debug)]
pub(crate) struct Penalty {
    /// Who.
    pub(crate) peer: PeerId,
    /// What it did.
    pub(crate) reason: Misbehaviour,
    /// Whether this penalty banned it.
    pub(crate) banned: bool,
}

/// Scores, bans, budgets, pending dials and static peers.
pub(crate) struct Peers {
    scores: PeerScores<PeerId>,
    penalties: VecDeque<Penalty>,
    dials: HashMap<PeerId, Vec<DialReply>>,
    static_peers: Vec<(PeerId, Multiaddr)>,
    last_redial: Instant,
}

impl Peers {
    /// No history yet; `static_peers` are kept connected.
    pub(crate) fn new(config: ScoreConfig, static_peers: Vec<(PeerId, Multiaddr)>) -> Self {
        Peers {
            scores: PeerScores::new(config),
            penalties: VecDeque::new(),
            dials: HashMap::new(),
            static_peers,
            last_redial: Instant::now(),
        }
    }

    /// Whether `peer` is banned at `now`.
    pub(crate) fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.scores.is_banned(peer, now)
    }

    /// Peers banned at `now`.
    pub(crate) fn banned_count(&self, now: Instant) -> usize {
        self.scores.banned_count(now)
    }

    /// Charges `reason`'s weight to `peer` and queues the penalty for the
    /// event loop; returns whether this penalty banned the peer. A peer that
    /// is already banned is left as it is.
    pub(crate) fn penalise(&mut self, peer: PeerId, reason: Misbehaviour, now: Instant) -> bool {
        let banned = match self.scores.penalise(peer, reason.weight(), now) {
            Verdict::AlreadyBanned => return false,
            Verdict::Penalised { .. } => false,
            Verdict::Banned { .. } => true,
        };
        self.penalties.push_back(Penalty {
            peer,
            reason,
            banned,
        });
        banned
    }

    /// The next penalty the event loop has yet to apply.
    pub(crate) fn next_penalty(&mut self) -> Option<Penalty> {
        self.penalties.pop_front()
    }

    /// Spends one unit of `peer`'s inbound request budget; a request over
    /// budget must be refused (its stream dropped), and costs the peer.
    pub(crate) fn admit(&mut self, peer: PeerId, protocol: Protocol, now: Instant) -> bool {
        if self.scores.allow_request(&peer, now) {
            return true;
        }
        self.penalise(peer, Misbehaviour::OverRequestBudget { protocol }, now);
        false
    }

    /// Lifts the bans that ran out; returns the peers let back in.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<PeerId> {
        self.scores.expire(now)
    }

    /// Parks a dial reply until a connection to `peer` opens or fails.
    pub(crate) fn await_dial(&mut self, peer: PeerId, reply: DialReply) {
        self.dials.entry(peer).or_default().push(reply);
    }

    /// A connection to `peer` opened: answers its waiting dials.
    pub(crate) fn dial_succeeded(&mut self, peer: &PeerId) {
        for w in self.dials.remove(peer).unwrap_or_default() {
            let _ = w.send(Ok(()));
        }
    }

    /// Dialling `peer` failed: answers its waiting dials with `error`.
    pub(crate) fn dial_failed(&mut self, peer: &PeerId, error: &str) {
        for w in self.dials.remove(peer).unwrap_or_default() {
            let _ = w.send(Err(P2pError::Dial(error.to_string())));
        }
    }

    /// When a redial round is due (every few seconds): lifts expired bans and
    /// returns them with the static peers, for the loop to act on.
    pub(crate) fn redial_round(&mut self, now: Instant) -> Option<RedialRound> {
        if now.saturating_duration_since(self.last_redial) < REDIAL_EVERY {
            return None;
        }
        self.last_redial = now;
        let released = self.expire(now);
        let redial = self
            .static_peers
            .iter()
            .filter(|(p, _)| !self.is_banned(p, now))
            .cloned()
            .collect();
        Some(RedialRound { released, redial })
    }
}

/// What a redial round asks of the swarm.
pub(crate) struct RedialRound {
    /// Peers whose ban ran out (to take off the gossipsub blacklist).
    pub(crate) released: Vec<PeerId>,
    /// Static peers that are not banned (dialled unless connected).
    pub(crate) redial: Vec<(PeerId, Multiaddr)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults of the p2p config.
    fn config() -> ScoreConfig {
        ScoreConfig {
            ban_threshold: 100,
            penalty_half_life: Duration::from_secs(600),
            ban_duration: Duration::from_secs(3600),
            request_rate: 2000,
            request_burst: 4000,
        }
    }

    fn peers() -> Peers {
        Peers::new(config(), vec![])
    }

    #[test]
    fn misbehaviour_weights_ban_after_the_named_sequence() {
        let t0 = Instant::now();
        let mut p = peers();
        let budget = Misbehaviour::OverRequestBudget {
            protocol: Protocol::App("/strata/task/1"),
        };

        // A flood: 99 requests over budget are tolerated, the 100th bans.
        let flooder = PeerId::random();
        for _ in 0..99 {
            assert!(!p.penalise(flooder, budget.clone(), t0));
        }
        assert!(!p.is_banned(&flooder, t0));
        assert!(p.penalise(flooder, budget.clone(), t0));
        assert!(p.is_banned(&flooder, t0));

        // Each proof of hostility bans on its own.
        let root = [3u8; 32];
        for strike in [
            Misbehaviour::CorruptChunk { root, index: 0 },
            Misbehaviour::WrongManifest { root },
            Misbehaviour::ForgedGossip {
                detail: "bad signature".into(),
            },
            Misbehaviour::MalformedGossip {
                detail: "malformed envelope: message truncated".into(),
            },
            Misbehaviour::AnonymousGossip,
            Misbehaviour::OversizedFrame {
                protocol: Protocol::App("/strata/task/1"),
                direction: Direction::Request,
                detail: "field of 4294967295 bytes exceeds limit 1048576".into(),
            },
            Misbehaviour::MalformedMessage {
                protocol: Protocol::Chunks,
                direction: Direction::Request,
                detail: "unknown tag 9".into(),
            },
        ] {
            assert!(p.penalise(PeerId::random(), strike, t0));
        }

        // A short burst then a malformed frame: banned on the frame.
        let mixed = PeerId::random();
        for _ in 0..5 {
            assert!(!p.penalise(mixed, budget.clone(), t0));
        }
        let frame = Misbehaviour::MalformedMessage {
            protocol: Protocol::Chunks,
            direction: Direction::Response,
            detail: "x".into(),
        };
        assert!(p.penalise(mixed, frame.clone(), t0));
        // Already banned: nothing more is charged or queued.
        assert!(!p.penalise(mixed, frame, t0));

        // Every penalty reached the queue, in order, with its kind.
        let queued: Vec<Penalty> = std::iter::from_fn(|| p.next_penalty()).collect();
        assert_eq!(queued.len(), 100 + 7 + 6);
        assert!(queued[..99].iter().all(|q| !q.banned && q.reason == budget));
        assert!(queued[99].banned && queued[99].peer == flooder);
        let last = queued.last().unwrap();
        assert!(last.banned && last.peer == mixed);
        assert_eq!(last.reason.to_string(), "malformed chunk response: x");
    }

    #[test]
    fn requests_over_budget_are_refused_and_charged() {
        let t0 = Instant::now();
        let mut p = Peers::new(
            ScoreConfig {
                request_rate: 1,
                request_burst: 2,
                ..config()
            },
            vec![],
        );
        let peer = PeerId::random();
        assert!(p.admit(peer, Protocol::Chunks, t0));
        assert!(p.admit(peer, Protocol::Chunks, t0));
        assert!(!p.admit(peer, Protocol::Chunks, t0));
        let q = p.next_penalty().unwrap();
        assert_eq!(
            q.reason.to_string(),
            "chunk request over the request budget"
        );
        assert!(!q.banned);
    }

    #[test]
    fn redial_rounds_skip_banned_static_peers_and_release_bans() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let mut p = Peers::new(config(), vec![(a, addr.clone()), (b, addr)]);
        p.last_redial = t0;
        assert!(p.redial_round(t0 + Duration::from_secs(1)).is_none());
        p.penalise(b, Misbehaviour::AnonymousGossip, t0);
        let round = p.redial_round(t0 + REDIAL_EVERY).unwrap();
        assert!(round.released.is_empty());
        assert_eq!(round.redial.len(), 1);
        assert_eq!(round.redial[0].0, a);
        let later = t0 + Duration::from_secs(3600);
        let round = p.redial_round(later).unwrap();
        assert_eq!(round.released, vec![b]);
        assert_eq!(round.redial.len(), 2);
    }
}
