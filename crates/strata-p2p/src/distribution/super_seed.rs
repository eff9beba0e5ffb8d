//! Super-seeding: how the publisher of a file keeps its uplink to about one
//! copy however many peers download.
//!
//! Downloaders ask the publisher only for chunks no other peer holds or is
//! fetching, but they learn what others hold from periodic polls, so two of
//! them often ask for the same chunk within one poll interval, and the
//! publisher's capped uplink pays twice. A super-seeder remembers which peer
//! each chunk went to: for a short window it hides that chunk from everyone
//! else's view of it and refuses their requests for it, so they fetch it from
//! the peer that got it. After the window the chunk is offered again, so a
//! recipient that left (or peers that cannot reach each other across NATs)
//! only costs a delay, never a stall.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long a chunk sent to one peer is withheld from the others: long enough
/// for the recipient to receive it and for the others' next have-poll to see
/// it there.
pub const SUPER_SEED_WINDOW: Duration = Duration::from_secs(2);

/// The publisher's record of recent sends of one file.
#[derive(Debug)]
pub struct SuperSeed<P> {
    window: Duration,
    sent: HashMap<u32, (P, Instant)>,
}

impl<P: Clone + Eq + Hash> SuperSeed<P> {
    /// An empty record with the given window.
    pub fn new(window: Duration) -> Self {
        SuperSeed {
            window,
            sent: HashMap::new(),
        }
    }

    fn withheld_from(&self, peer: &P, i: u32, now: Instant) -> bool {
        self.sent
            .get(&i)
            .is_some_and(|(to, at)| to != peer && now.saturating_duration_since(*at) < self.window)
    }

    /// Whether to serve chunk `i` to `peer` now; if so, it is recorded as
    /// sent to `peer`. A peer asking again for a chunk it was given (a retry)
    /// is always served.
    pub fn admit(&mut self, peer: &P, i: u32, now: Instant) -> bool {
        if self.withheld_from(peer, i, now) {
            return false;
        }
        self.sent.insert(i, (peer.clone(), now));
        if self.sent.len() > 4096 {
            let window = self.window;
            self.sent
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < window);
        }
        true
    }

    /// `peer` left: what it was given is offered to everyone again, since
    /// nobody can fetch it there any more.
    pub fn forget_peer(&mut self, peer: &P) {
        self.sent.retain(|_, (to, _)| to != peer);
    }

    /// Clears from a have-bitmap (LSB first) the chunks withheld from `peer`.
    pub fn mask(&self, have: &mut [u8], peer: &P, now: Instant) {
        for (&i, _) in self.sent.iter() {
            if self.withheld_from(peer, i, now) {
                if let Some(b) = have.get_mut(i as usize / 8) {
                    *b &= !(1 << (i % 8));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_goes_to_one_peer_per_window() {
        let t0 = Instant::now();
        let mut s = SuperSeed::new(Duration::from_secs(2));
        assert!(s.admit(&"x", 5, t0));
        assert!(
            !s.admit(&"y", 5, t0 + Duration::from_millis(10)),
            "withheld from y"
        );
        assert!(
            s.admit(&"x", 5, t0 + Duration::from_millis(20)),
            "x may retry"
        );
        assert!(s.admit(&"y", 6, t0), "other chunks are free");
        let mut have = vec![0xff, 0xff];
        s.mask(&mut have, &"y", t0 + Duration::from_millis(30));
        assert_eq!(have, vec![0b1101_1111, 0xff], "chunk 5 hidden from y");
        let mut have = vec![0xff, 0xff];
        s.mask(&mut have, &"x", t0 + Duration::from_millis(30));
        assert_eq!(have, vec![0b1011_1111, 0xff], "chunk 6 hidden from x");
        // A recipient that leaves releases what it was given.
        let mut s2 = SuperSeed::new(Duration::from_secs(2));
        assert!(s2.admit(&"x", 1, t0));
        s2.forget_peer(&"x");
        assert!(s2.admit(&"y", 1, t0 + Duration::from_millis(1)));
        // After the window everyone may have it again.
        let later = t0 + Duration::from_secs(3);
        assert!(s.admit(&"y", 5, later));
        let mut have = vec![0xff];
        s.mask(&mut have, &"z", later + Duration::from_secs(3));
        assert_eq!(have, vec![0xff]);
    }
}
