//! Phase one: how many pipelines, and which nodes form each.
//!
//! A pipeline is feasible when its members' caps, each in its role, add up to
//! at least `L` and it has at most `L` stages (every stage holds a layer).
//! For each target count `k` the program finds the assignment with the fewest
//! stages `s*(k)`; the plan keeps the `k` maximising `k² / s*(k)`.
//!
//! The program walks the nodes in canonical order (capacity descending). A
//! pipeline is opened by its first hop, grows by middle hops and is closed by
//! its last hop, so the biggest member of a pipeline is its first hop and the
//! last one to join is its last hop. That restriction is what keeps the state
//! small: (next node, the sorted multiset of layers the open pipelines still
//! need, pipelines still to close). Pipelines are interchangeable, so the
//! multiset (not which pipeline is which) is all the future depends on.

use std::collections::HashMap;

use super::{Node, Role};

/// Above this many usable nodes the greedy pass replaces the program.
pub(crate) const DP_MAX_NODES: usize = 16;

/// Memoised states after which the program gives up and the greedy pass is
/// used instead (checked when a new state is entered, so the memo may end a
/// few states, at most one per node, above it). Counted in states, not time,
/// so every machine gives up at the same point and still agrees on the plan.
/// Equal nodes share states and stay far below it; it takes about 16 nodes
/// of all-different sizes, each a third to a half of the model, to reach it
/// (about 0.2 s in a debug build).
pub(crate) const DP_STATE_BUDGET: usize = 40_000;

/// One pipeline before its layers are split: indices into the canonical node
/// list with their roles, in hop order.
pub(crate) type Members = Vec<(usize, Role)>;

/// Stage count of an infeasible state.
const INF: u32 = u32::MAX;

/// The pipelines of the best `k`, by the program when it can run, else greedy.
pub(crate) fn choose(l: u32, nodes: &[Node]) -> Vec<Members> {
    let usable = usable(nodes);
    let mut dp = (usable.len() <= DP_MAX_NODES).then(|| Dp::new(l, nodes, &usable));
    best_k(l, nodes, &usable, |k| {
        dp.as_mut().and_then(|dp| dp.solve(k))
    })
}

/// The same choice with the greedy pass only (the baseline the program must
/// never lose to).
#[cfg(test)]
pub(crate) fn choose_greedy(l: u32, nodes: &[Node]) -> Vec<Members> {
    let usable = usable(nodes);
    best_k(l, nodes, &usable, |_| None)
}

/// Nodes that can hold a layer at all, as indices into `nodes`. Useless ones
/// are dropped before counting against [`DP_MAX_NODES`].
fn usable(nodes: &[Node]) -> Vec<usize> {
    (0..nodes.len()).filter(|&i| nodes[i].mid >= 1).collect()
}

/// Scores every feasible `k` and returns the winner's pipelines.
///
/// `exact(k)` is the program's answer when it has one; otherwise the greedy
/// pipelines with the fewest stages stand in.
fn best_k(
    l: u32,
    nodes: &[Node],
    usable: &[usize],
    mut exact: impl FnMut(usize) -> Option<Vec<Members>>,
) -> Vec<Members> {
    // Each pipeline needs caps summing to L and caps never exceed cap_mid.
    let total: u64 = usable.iter().map(|&i| u64::from(nodes[i].mid)).sum();
    let k_max = usable
        .len()
        .min(usize::try_from(total / u64::from(l)).unwrap_or(usize::MAX));
    let mut greedy = greedy(l, nodes, usable);
    // Fewest stages first; the sort is stable, so ties keep build order.
    greedy.sort_by_key(Vec::len);
    let mut best: Option<(u64, u64, Vec<Members>)> = None;
    for k in 1..=k_max {
        let candidate = match exact(k) {
            Some(p) => p,
            None if greedy.len() >= k => greedy[..k].to_vec(),
            None => continue,
        };
        let k64 = k as u64;
        let s: u64 = candidate.iter().map(|p| p.len() as u64).sum();
        // k²/s against k'²/s' without division: exact, so every node agrees.
        let better = match &best {
            None => true,
            Some((bk, bs, _)) => {
                let (lhs, rhs) = (k64 * k64 * bs, bk * bk * s);
                lhs > rhs || (lhs == rhs && s < *bs)
            }
        };
        if better {
            best = Some((k64, s, candidate));
        }
    }
    let mut pipelines = best.map(|(_, _, p)| p).unwrap_or_default();
    pipelines.sort_by_key(|p| p[0].0);
    pipelines
}

/// Residual need after opening with a first hop of cap `first`.
///
/// Clamped at 1: even a first hop that could hold everything leaves one
/// layer for the last hop, which must exist and hold at least one.
fn after_open(l: u32, first: u32) -> u32 {
    l.saturating_sub(first).max(1)
}

/// Residual need after a middle hop of cap `mid` (same clamp: the last hop
/// is still to come).
fn after_mid(r: u32, mid: u32) -> u32 {
    r.saturating_sub(mid).max(1)
}

/// Whether node `n` may open a multi-stage pipeline: a model of one layer
/// cannot be split, and a first hop must hold a layer.
fn can_open(l: u32, n: &Node) -> bool {
    l >= 2 && n.first >= 1
}

/// Whether `n` may join as a middle hop of a pipeline needing `r` more. Only
/// while `r ≥ 2`: with one layer left, a middle hop would add a stage and no
/// coverage, and this rule is also what bounds stages by `L`.
fn can_mid(r: u32, n: &Node) -> bool {
    r >= 2 && n.mid >= 1
}

/// The greedy pass: biggest remaining node opens; a pipeline closes with the
/// *smallest* node that can finish it (leaving big nodes for the next one);
/// until then, the biggest remaining node joins as a middle hop.
///
/// Every greedy pipeline is a path of the program (opener first in order,
/// closer last), which is why the program never does worse. It stops at the
/// first opener it cannot complete: that attempt already had the largest
/// nodes left, so later openers would have less.
fn greedy(l: u32, nodes: &[Node], usable: &[usize]) -> Vec<Members> {
    let mut free = vec![true; nodes.len()];
    let mut out = Vec::new();
    for (pos, &o) in usable.iter().enumerate() {
        if !free[o] {
            continue;
        }
        let opener = &nodes[o];
        if opener.solo >= l {
            free[o] = false;
            out.push(vec![(o, Role::Solo)]);
            continue;
        }
        if !can_open(l, opener) {
            continue;
        }
        let later = &usable[pos + 1..];
        let mut members = vec![(o, Role::First)];
        let mut taken = vec![o];
        let mut r = after_open(l, opener.first);
        let closed = loop {
            let is_free = |j: usize| free[j] && !taken.contains(&j);
            if let Some(&c) = later
                .iter()
                .rev()
                .find(|&&j| is_free(j) && nodes[j].last >= r)
            {
                members.push((c, Role::Last));
                taken.push(c);
                break true;
            }
            let mid = later
                .iter()
                .find(|&&j| is_free(j) && can_mid(r, &nodes[j]))
                .copied();
            match mid {
                Some(m) => {
                    members.push((m, Role::Mid));
                    taken.push(m);
                    r = after_mid(r, nodes[m].mid);
                }
                None => break false,
            }
        };
        if !closed {
            break;
        }
        for j in taken {
            free[j] = false;
        }
        out.push(members);
    }
    out
}

/// A memo key: next node (position in the usable list), pipelines still to
/// close (open ones included), and what each open pipeline still needs,
/// sorted ascending.
#[derive(Clone, PartialEq, Eq, Hash)]
struct State {
    next: u8,
    need: u8,
    open: Vec<u16>,
}

/// The best decision for node `next` in a state. `Mid` and `Close` name the
/// residual of the open pipeline they apply to.
#[derive(Clone, Copy)]
enum Move {
    Skip,
    Solo,
    Open,
    Close(u32),
    Mid(u32),
}

/// The memoised program over at most [`DP_MAX_NODES`] usable nodes.
struct Dp<'a> {
    l: u32,
    nodes: &'a [Node],
    usable: &'a [usize],
    /// `suffix[p]`: total `cap_mid` of usable nodes from position `p` on, the
    /// most any remaining assignment can contribute.
    suffix: Vec<u64>,
    memo: HashMap<State, (u32, Move)>,
    /// Set once the budget is hit. What is memoised stays exact (a state is
    /// stored only after all its children were solved), but new states can
    /// no longer be explored, so the program answers nothing more and the
    /// greedy pass takes every later `k`.
    exhausted: bool,
}

impl<'a> Dp<'a> {
    fn new(l: u32, nodes: &'a [Node], usable: &'a [usize]) -> Dp<'a> {
        let mut suffix = vec![0u64; usable.len() + 1];
        for p in (0..usable.len()).rev() {
            suffix[p] = suffix[p + 1] + u64::from(nodes[usable[p]].mid);
        }
        Dp {
            l,
            nodes,
            usable,
            suffix,
            memo: HashMap::new(),
            exhausted: false,
        }
    }

    /// The fewest-stage assignment forming exactly `k` pipelines, `None` if
    /// there is none or the budget ran out (the caller falls back).
    fn solve(&mut self, k: usize) -> Option<Vec<Members>> {
        if self.exhausted || k > self.usable.len() {
            return None;
        }
        let cost = self.cost(0, &[], k)?;
        if cost == INF {
            return None;
        }
        Some(self.rebuild(k))
    }

    /// Fewest stages from this state to `need` closed pipelines; `INF` if
    /// impossible, `None` if the budget ran out.
    fn cost(&mut self, next: usize, open: &[u32], need: usize) -> Option<u32> {
        if need == 0 {
            return Some(0);
        }
        let left = self.usable.len() - next;
        // Every pipeline still to close takes at least one more node.
        if left < need {
            return Some(INF);
        }
        let unopened = (need - open.len()) as u64;
        let wanted: u64 =
            open.iter().map(|&r| u64::from(r)).sum::<u64>() + unopened * u64::from(self.l);
        if self.suffix[next] < wanted {
            return Some(INF);
        }
        let key = State {
            next: next as u8,
            need: need as u8,
            open: open.iter().map(|&r| super::to_u16(r)).collect(),
        };
        if let Some(&(c, _)) = self.memo.get(&key) {
            return Some(c);
        }
        if self.memo.len() >= DP_STATE_BUDGET {
            self.exhausted = true;
            return None;
        }
        let n = self.nodes[self.usable[next]];
        let l = self.l;
        let mut best = (INF, Move::Skip);
        // Moves in a fixed order; a later move must be strictly better to
        // win, so ties prefer using bigger nodes earlier, deterministically.
        let mut consider = |c: Option<u32>, mv: Move| -> Option<()> {
            let c = c?;
            if c != INF && c + 1 < best.0 {
                best = (c + 1, mv);
            }
            Some(())
        };
        let can_start = open.len() < need;
        if can_start && n.solo >= l {
            consider(self.cost(next + 1, open, need - 1), Move::Solo)?;
        }
        let mut distinct: Vec<u32> = open.to_vec();
        distinct.dedup();
        for &r in &distinct {
            if n.last >= r {
                let child = without(open, r);
                consider(self.cost(next + 1, &child, need - 1), Move::Close(r))?;
            }
        }
        for &r in &distinct {
            if can_mid(r, &n) {
                let child = with(&without(open, r), after_mid(r, n.mid));
                consider(self.cost(next + 1, &child, need), Move::Mid(r))?;
            }
        }
        if can_start && can_open(l, &n) {
            let child = with(open, after_open(l, n.first));
            consider(self.cost(next + 1, &child, need), Move::Open)?;
        }
        // Skipping costs no stage, so it is compared without the `+ 1`.
        let skip = self.cost(next + 1, open, need)?;
        if skip < best.0 {
            best = (skip, Move::Skip);
        }
        self.memo.insert(key, best);
        Some(best.0)
    }

    /// Replays the memoised decisions from the start state into pipelines.
    fn rebuild(&self, k: usize) -> Vec<Members> {
        let mut open: Vec<(u32, Members)> = Vec::new();
        let mut closed: Vec<Members> = Vec::new();
        let mut need = k;
        for next in 0..self.usable.len() {
            if need == 0 {
                break;
            }
            let mut residuals: Vec<u32> = open.iter().map(|(r, _)| *r).collect();
            residuals.sort_unstable();
            let key = State {
                next: next as u8,
                need: need as u8,
                open: residuals.iter().map(|&r| super::to_u16(r)).collect(),
            };
            // Every state on the optimal path was solved, hence memoised.
            let Some(&(_, mv)) = self.memo.get(&key) else {
                break;
            };
            let i = self.usable[next];
            let n = &self.nodes[i];
            match mv {
                Move::Skip => {}
                Move::Solo => {
                    closed.push(vec![(i, Role::Solo)]);
                    need -= 1;
                }
                Move::Open => open.push((after_open(self.l, n.first), vec![(i, Role::First)])),
                Move::Close(r) => {
                    if let Some(p) = open.iter().position(|(x, _)| *x == r) {
                        let (_, mut members) = open.remove(p);
                        members.push((i, Role::Last));
                        closed.push(members);
                        need -= 1;
                    }
                }
                Move::Mid(r) => {
                    if let Some(slot) = open.iter_mut().find(|(x, _)| *x == r) {
                        slot.0 = after_mid(r, n.mid);
                        slot.1.push((i, Role::Mid));
                    }
                }
            }
        }
        closed
    }
}

/// `open` (sorted) with one `r` removed.
fn without(open: &[u32], r: u32) -> Vec<u32> {
    let mut v = open.to_vec();
    if let Some(p) = v.iter().position(|&x| x == r) {
        v.remove(p);
    }
    v
}

/// `open` (sorted) with `r` inserted in order.
fn with(open: &[u32], r: u32) -> Vec<u32> {
    let mut v = open.to_vec();
    let p = v.partition_point(|&x| x < r);
    v.insert(p, r);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sixteen nodes of all-different sizes, each a third to a half of a
    /// deep model: the worst shape for the program's state space.
    fn worst_case() -> (u32, Vec<Node>) {
        let l = u32::from(u16::MAX);
        let nodes = (0..16u32)
            .map(|i| {
                let mid = l * (60 - 2 * i) / 100;
                let mut key = [0u8; 32];
                key[0] = i as u8;
                Node {
                    key,
                    first: mid - 1,
                    mid,
                    last: mid - 1,
                    solo: mid - 2,
                    speed: 1.0,
                }
            })
            .collect();
        (l, nodes)
    }

    #[test]
    fn the_budget_bounds_the_worst_case_and_greedy_stands_in() {
        let (l, nodes) = worst_case();
        let usable = usable(&nodes);
        let mut dp = Dp::new(l, &nodes, &usable);
        assert!(dp.solve(1).is_some(), "one pipeline is found within budget");
        for k in 2..=16 {
            let _ = dp.solve(k);
        }
        assert!(dp.exhausted);
        assert!(dp.memo.len() <= DP_STATE_BUDGET + DP_MAX_NODES);
        // Once exhausted, no more answers, not even ones it gave before.
        assert!(dp.solve(1).is_none());
        // The fallback still forms pipelines: 16 nodes of 30–60 % of the
        // model make 2- and 3-stage pipelines.
        let chosen = choose(l, &nodes);
        assert!(chosen.len() >= 5, "{}", chosen.len());
        let mut seen: Vec<usize> = chosen.iter().flatten().map(|&(i, _)| i).collect();
        let before = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), before);
    }
}
