//! Rarest-first chunk scheduling.
//!
//! Each downloader keeps a view of which chunks every known peer holds and is
//! fetching, and repeatedly picks the chunk held by the fewest peers (counting
//! peers already fetching it, since they will hold it soon). Ties are broken by
//! a per-node random order so that downloaders starting together ask the
//! source for *different* chunks; then they trade those among themselves. The
//! holder chosen is the least loaded one, preferring peers that hold fewer
//! chunks, so a complete seed is asked last and its uplink sends about one
//! copy of the file.

use std::collections::HashMap;
use std::hash::Hash;

use crate::distribution::store::bit;

#[derive(Debug, Default, Clone)]
struct PeerView {
    have: Vec<u8>,
    fetching: Vec<u8>,
    have_count: u32,
    outstanding: usize,
    origin: bool,
}

/// Scheduling state for one download.
#[derive(Debug)]
pub struct Scheduler<P> {
    n: u32,
    have: Vec<bool>,
    in_flight: HashMap<u32, P>,
    peers: HashMap<P, PeerView>,
    rank: Vec<u64>,
    max_per_peer: usize,
    max_total: usize,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl<P: Clone + Eq + Hash> Scheduler<P> {
    /// A scheduler for `n` chunks; `have` marks chunks already held (resume).
    pub fn new(
        n: u32,
        have: impl Fn(u32) -> bool,
        seed: u64,
        max_per_peer: usize,
        max_total: usize,
    ) -> Self {
        Scheduler {
            n,
            have: (0..n).map(have).collect(),
            in_flight: HashMap::new(),
            peers: HashMap::new(),
            rank: (0..n).map(|i| splitmix(seed ^ u64::from(i))).collect(),
            max_per_peer: max_per_peer.max(1),
            max_total: max_total.max(1),
        }
    }

    /// Update what `peer` holds and is fetching (bitmaps, LSB first).
    pub fn set_peer_view(&mut self, peer: P, have: Vec<u8>, fetching: Vec<u8>) {
        let have_count = (0..self.n).filter(|i| bit(&have, *i)).count() as u32;
        let v = self.peers.entry(peer).or_default();
        v.have = have;
        v.fetching = fetching;
        v.have_count = have_count;
    }

    /// Mark `peer` as an origin (the publisher): asked only for chunks that no
    /// other peer holds or is fetching, so its capped uplink sends each chunk
    /// about once and the downloaders trade the rest.
    pub fn set_origin(&mut self, peer: P) {
        self.peers.entry(peer).or_default().origin = true;
    }

    /// Record that `peer` does not (or will not now) give us chunk `i`.
    pub fn peer_lacks(&mut self, peer: &P, i: u32) {
        if let Some(v) = self.peers.get_mut(peer) {
            if bit(&v.have, i) {
                v.have[i as usize / 8] &= !(1 << (i % 8));
                v.have_count = v.have_count.saturating_sub(1);
            }
        }
    }

    /// Drop what we believed `peer` holds and is fetching (it stopped
    /// answering have-map polls, e.g. it left after finishing). Its stale
    /// `fetching` bits would otherwise keep the origin from being asked for
    /// those chunks forever. Origin status is kept.
    pub fn forget_view(&mut self, peer: &P) {
        if let Some(v) = self.peers.get_mut(peer) {
            v.have.clear();
            v.fetching.clear();
            v.have_count = 0;
        }
    }

    /// Forget a peer (disconnected or banned); its in-flight chunks are freed.
    pub fn remove_peer(&mut self, peer: &P) {
        self.peers.remove(peer);
        self.in_flight.retain(|_, p| p != peer);
    }

    /// Chunks still missing.
    #[cfg(test)]
    pub fn missing(&self) -> u32 {
        self.have.iter().filter(|h| !**h).count() as u32
    }

    /// Bitmap of chunks currently being fetched by us.
    pub fn fetching_bitmap(&self) -> Vec<u8> {
        let mut m = vec![0u8; (self.n as usize).div_ceil(8)];
        for i in self.in_flight.keys() {
            m[*i as usize / 8] |= 1 << (i % 8);
        }
        m
    }

    /// Requests in flight.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Pick the next `(peer, chunk)` requests to send, within the limits.
    pub fn next_requests(&mut self) -> Vec<(P, u32)> {
        let mut out = Vec::new();
        if self.in_flight.len() >= self.max_total || self.peers.is_empty() {
            return out;
        }
        // (rarity, random rank, chunk) of every chunk someone can give us.
        let mut candidates: Vec<(usize, u64, u32)> = Vec::new();
        for i in 0..self.n {
            if self.have[i as usize] || self.in_flight.contains_key(&i) {
                continue;
            }
            let mut holders = 0usize;
            let mut soon = 0usize;
            for v in self.peers.values() {
                if bit(&v.have, i) {
                    holders += 1;
                } else if bit(&v.fetching, i) {
                    soon += 1;
                }
            }
            if holders > 0 {
                candidates.push((holders + soon, self.rank[i as usize], i));
            }
        }
        candidates.sort_unstable();
        for (_, rank, i) in candidates {
            if self.in_flight.len() >= self.max_total {
                break;
            }
            let mut other_holder_busy = false;
            let mut other_fetching = false;
            for v in self.peers.values().filter(|v| !v.origin) {
                if bit(&v.have, i) && v.outstanding >= self.max_per_peer {
                    other_holder_busy = true;
                }
                if bit(&v.fetching, i) {
                    other_fetching = true;
                }
            }
            let best = self
                .peers
                .iter()
                .filter(|(_, v)| bit(&v.have, i) && v.outstanding < self.max_per_peer)
                .filter(|(_, v)| !v.origin || (!other_holder_busy && !other_fetching))
                .min_by_key(|(_, v)| (v.origin, v.outstanding, v.have_count, rank))
                .map(|(p, _)| p.clone());
            if let Some(p) = best {
                if let Some(v) = self.peers.get_mut(&p) {
                    v.outstanding += 1;
                }
                self.in_flight.insert(i, p.clone());
                out.push((p, i));
            }
        }
        out
    }

    /// A request finished: `ok` if the chunk verified and was stored.
    pub fn finished(&mut self, peer: &P, i: u32, ok: bool) {
        if self.in_flight.get(&i) == Some(peer) {
            self.in_flight.remove(&i);
        }
        if let Some(v) = self.peers.get_mut(peer) {
            v.outstanding = v.outstanding.saturating_sub(1);
        }
        if ok {
            if let Some(h) = self.have.get_mut(i as usize) {
                *h = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(n: u32) -> Vec<u8> {
        let mut m = vec![0u8; (n as usize).div_ceil(8)];
        for i in 0..n {
            m[i as usize / 8] |= 1 << (i % 8);
        }
        m
    }

    #[test]
    fn rarest_first_and_prefers_partial_peers_over_seed() {
        let mut s = Scheduler::new(16, |_| false, 7, 2, 8);
        s.set_peer_view("seed", full(16), vec![]);
        // "peer" holds chunks 0 and 1 only.
        s.set_peer_view("peer", vec![0b11, 0], vec![]);
        let reqs = s.next_requests();
        assert_eq!(reqs.len(), 4, "2 per peer");
        // Chunks 2.. are rarer (only the seed) so the seed gets two of those;
        // the partial peer serves what it has.
        for (p, i) in &reqs {
            if *p == "peer" {
                assert!(*i < 2);
            } else {
                assert!(*i >= 2);
            }
        }
    }

    #[test]
    fn origin_is_asked_only_for_chunks_nobody_else_has_or_fetches() {
        let mut s = Scheduler::new(4, |_| false, 3, 1, 8);
        s.set_peer_view("origin", full(4), vec![]);
        s.set_origin("origin");
        // "peer" holds chunk 0; "other" is fetching chunk 1.
        s.set_peer_view("peer", vec![0b0001], vec![]);
        s.set_peer_view("other", vec![], vec![0b0010]);
        let reqs = s.next_requests();
        assert!(reqs.contains(&("peer", 0)));
        for (p, i) in &reqs {
            if *p == "origin" {
                assert!(*i >= 2, "origin asked for chunk {i} that others have/fetch");
            }
        }
        assert_eq!(reqs.len(), 2, "one per peer (limit 1)");
    }

    #[test]
    fn different_seeds_spread_first_requests() {
        let mut a = Scheduler::new(64, |_| false, 1, 4, 4);
        let mut b = Scheduler::new(64, |_| false, 2, 4, 4);
        a.set_peer_view(0u8, full(64), vec![]);
        b.set_peer_view(0u8, full(64), vec![]);
        let ra: Vec<u32> = a.next_requests().into_iter().map(|x| x.1).collect();
        let rb: Vec<u32> = b.next_requests().into_iter().map(|x| x.1).collect();
        assert_ne!(ra, rb);
    }

    #[test]
    fn forgotten_view_no_longer_blocks_origin() {
        let mut s = Scheduler::new(1, |_| false, 0, 4, 4);
        s.set_peer_view("origin", full(1), vec![]);
        s.set_origin("origin");
        // "gone" said it was fetching chunk 0, then left.
        s.set_peer_view("gone", vec![], vec![0b1]);
        assert!(s.next_requests().is_empty());
        s.forget_view(&"gone");
        assert_eq!(s.next_requests(), vec![("origin", 0)]);
    }

    #[test]
    fn a_refused_chunk_is_not_asked_again_until_the_next_view() {
        let mut s = Scheduler::new(1, |_| false, 0, 4, 4);
        s.set_peer_view("origin", full(1), vec![]);
        s.set_origin("origin");
        assert_eq!(s.next_requests(), vec![("origin", 0)]);
        s.finished(&"origin", 0, false);
        s.peer_lacks(&"origin", 0);
        assert!(s.next_requests().is_empty(), "no tight retry loop");
        s.set_peer_view("origin", full(1), vec![]);
        assert_eq!(s.next_requests(), vec![("origin", 0)]);
    }

    #[test]
    fn completes_and_frees_on_removal() {
        let mut s = Scheduler::new(3, |i| i == 0, 0, 4, 4);
        s.set_peer_view(1u8, full(3), vec![]);
        let reqs = s.next_requests();
        assert_eq!(reqs.len(), 2);
        s.remove_peer(&1);
        assert_eq!(s.in_flight(), 0);
        s.set_peer_view(2u8, full(3), vec![]);
        for (p, i) in s.next_requests() {
            s.finished(&p, i, true);
        }
        assert_eq!(s.missing(), 0);
        assert!(s.next_requests().is_empty());
    }
}
