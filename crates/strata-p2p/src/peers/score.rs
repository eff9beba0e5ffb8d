//! What the p2p layer remembers about misbehaving peers: penalty points that
//! decay, bans that expire, and a per-peer budget of inbound requests.
//!
//! Points decay so that a peer with one flaky moment long ago is not treated
//! like one that keeps sending garbage; bans expire so that a node whose
//! operator fixed a bug (or whose key was briefly abused) can rejoin without
//! everyone restarting. Time is passed in, so the rules are tested without
//! sleeping.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Tunables of [`PeerScores`].
#[derive(Debug, Clone, Copy)]
pub struct ScoreConfig {
    /// Points at which a peer is banned.
    pub ban_threshold: u32,
    /// Time for accumulated points to halve.
    pub penalty_half_life: Duration,
    /// How long a ban lasts.
    pub ban_duration: Duration,
    /// Sustained inbound requests per second allowed from one peer.
    pub request_rate: u32,
    /// Requests one peer may send in a burst above the sustained rate.
    pub request_burst: u32,
}

/// Outcome of [`PeerScores::penalise`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Already banned: nothing changes.
    AlreadyBanned,
    /// Points added; the peer stays.
    Penalised {
        /// Its points after decay and this penalty.
        score: f64,
    },
    /// The peer crossed the threshold and is banned until the given instant.
    Banned {
        /// When the ban ends.
        until: Instant,
    },
}

#[derive(Debug, Clone, Copy)]
struct Points {
    value: f64,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Penalties, bans and request budgets of every peer.
#[derive(Debug)]
pub struct PeerScores<P> {
    config: ScoreConfig,
    points: HashMap<P, Points>,
    banned: HashMap<P, Instant>,
    buckets: HashMap<P, Bucket>,
}

impl<P: Clone + Eq + Hash> PeerScores<P> {
    /// Empty state.
    pub fn new(config: ScoreConfig) -> Self {
        PeerScores {
            config,
            points: HashMap::new(),
            banned: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    fn decayed(&self, p: Points, now: Instant) -> f64 {
        let half = self.config.penalty_half_life.as_secs_f64();
        if half <= 0.0 {
            return 0.0;
        }
        let age = now.saturating_duration_since(p.at).as_secs_f64();
        p.value * 0.5f64.powf(age / half)
    }

    /// Current points of `peer` (after decay).
    pub fn score(&self, peer: &P, now: Instant) -> f64 {
        self.points
            .get(peer)
            .map(|p| self.decayed(*p, now))
            .unwrap_or(0.0)
    }

    /// Adds `points` to `peer`; bans it when the decayed total reaches the
    /// threshold. A ban clears the points, so after it expires the peer starts
    /// afresh.
    pub fn penalise(&mut self, peer: P, points: u32, now: Instant) -> Verdict {
        if self.is_banned(&peer, now) {
            return Verdict::AlreadyBanned;
        }
        let score = self.score(&peer, now) + f64::from(points);
        if score >= f64::from(self.config.ban_threshold) {
            let until = now + self.config.ban_duration;
            self.points.remove(&peer);
            self.buckets.remove(&peer);
            self.banned.insert(peer, until);
            Verdict::Banned { until }
        } else {
            self.points.insert(
                peer,
                Points {
                    value: score,
                    at: now,
                },
            );
            Verdict::Penalised { score }
        }
    }

    /// Whether `peer` is banned at `now`.
    pub fn is_banned(&self, peer: &P, now: Instant) -> bool {
        self.banned.get(peer).is_some_and(|until| now < *until)
    }

    /// Peers banned at `now`.
    pub fn banned_count(&self, now: Instant) -> usize {
        self.banned.values().filter(|until| now < **until).count()
    }

    /// Ends the bans that have run out and forgets points that decayed to
    /// nothing; returns the peers let back in.
    pub fn expire(&mut self, now: Instant) -> Vec<P> {
        let released: Vec<P> = self
            .banned
            .iter()
            .filter(|(_, until)| now >= **until)
            .map(|(p, _)| p.clone())
            .collect();
        for p in &released {
            self.banned.remove(p);
        }
        let half = self.config.penalty_half_life;
        self.points
            .retain(|_, p| now.saturating_duration_since(p.at) < half * 16);
        let window = self.refill_window();
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.at) < window);
        released
    }

    /// Time an idle bucket takes to fill up; after that it equals a fresh one.
    fn refill_window(&self) -> Duration {
        let rate = f64::from(self.config.request_rate.max(1));
        Duration::from_secs_f64(f64::from(self.config.request_burst.max(1)) / rate + 1.0)
    }

    /// Takes one inbound request from `peer`'s budget (a token bucket of
    /// `request_burst` refilled at `request_rate` per second); `false` means
    /// the peer is over its budget and the request must be refused.
    pub fn allow_request(&mut self, peer: &P, now: Instant) -> bool {
        let rate = f64::from(self.config.request_rate);
        let burst = f64::from(self.config.request_burst.max(1));
        let b = self.buckets.entry(peer.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> ScoreConfig {
        ScoreConfig {
            ban_threshold: 100,
            penalty_half_life: Duration::from_secs(60),
            ban_duration: Duration::from_secs(600),
            request_rate: 10,
            request_burst: 20,
        }
    }

    #[test]
    fn one_strike_at_the_threshold_bans_until_expiry() {
        let t0 = Instant::now();
        let mut s = PeerScores::new(config());
        let v = s.penalise(1u32, 100, t0);
        assert_eq!(
            v,
            Verdict::Banned {
                until: t0 + Duration::from_secs(600)
            }
        );
        assert!(s.is_banned(&1, t0 + Duration::from_secs(599)));
        assert_eq!(
            s.penalise(1, 100, t0 + Duration::from_secs(1)),
            Verdict::AlreadyBanned
        );
        assert!(s.expire(t0 + Duration::from_secs(599)).is_empty());
        assert_eq!(s.expire(t0 + Duration::from_secs(600)), vec![1]);
        assert!(!s.is_banned(&1, t0 + Duration::from_secs(600)));
        assert_eq!(s.banned_count(t0 + Duration::from_secs(600)), 0);
        // Back in with a clean slate.
        assert_eq!(s.score(&1, t0 + Duration::from_secs(600)), 0.0);
    }

    #[test]
    fn points_decay_so_rare_faults_never_ban() {
        let t0 = Instant::now();
        let mut s = PeerScores::new(config());
        // 60 points now and 60 more two half-lives later: 15 + 60 < 100.
        assert!(matches!(
            s.penalise(7u32, 60, t0),
            Verdict::Penalised { .. }
        ));
        let v = s.penalise(7, 60, t0 + Duration::from_secs(120));
        match v {
            Verdict::Penalised { score } => assert!((score - 75.0).abs() < 1e-6, "{score}"),
            other => panic!("expected penalised, got {other:?}"),
        }
        // The same two faults close together do ban.
        let mut s = PeerScores::new(config());
        s.penalise(8u32, 60, t0);
        assert!(matches!(
            s.penalise(8, 60, t0 + Duration::from_secs(1)),
            Verdict::Banned { .. }
        ));
    }

    #[test]
    fn request_budget_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut s = PeerScores::new(config());
        let allowed = (0..50).filter(|_| s.allow_request(&1u32, t0)).count();
        assert_eq!(allowed, 20, "the burst");
        // Half a second later: 5 more tokens at 10/s.
        let t1 = t0 + Duration::from_millis(500);
        let allowed = (0..50).filter(|_| s.allow_request(&1u32, t1)).count();
        assert_eq!(allowed, 5);
        // Another peer has its own budget.
        assert!(s.allow_request(&2u32, t1));
    }

    proptest! {
        /// Whatever the sequence of penalties, a peer is banned exactly when
        /// its decayed points would reach the threshold, and never for longer
        /// than the ban duration.
        #[test]
        fn bans_always_expire(steps in proptest::collection::vec((0u64..400, 0u32..120), 1..40)) {
            let t0 = Instant::now();
            let mut s = PeerScores::new(config());
            let mut now = t0;
            for (dt, pts) in steps {
                now += Duration::from_secs(dt);
                s.expire(now);
                let before = s.score(&0u8, now);
                match s.penalise(0u8, pts, now) {
                    Verdict::Banned { until } => {
                        prop_assert!(before + f64::from(pts) >= 100.0);
                        prop_assert_eq!(until, now + Duration::from_secs(600));
                    }
                    Verdict::Penalised { score } => prop_assert!(score < 100.0),
                    Verdict::AlreadyBanned => prop_assert!(s.is_banned(&0, now)),
                }
            }
            s.expire(now + Duration::from_secs(600));
            prop_assert!(!s.is_banned(&0, now + Duration::from_secs(600)));
        }
    }
}
