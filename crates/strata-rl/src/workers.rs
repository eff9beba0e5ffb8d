//! Worker selection for rollouts (Echo-2's third idea): given the workers
//! that announce capacity, a target throughput and a staleness budget, the
//! cheapest workers that generate fast enough, and what that means for a
//! training step. Pure arithmetic over what the caller passes in.
//!
//! # The model
//!
//! A policy version needs `D` completion tokens
//! ([`RolloutDemand::tokens_per_step`]: completions × `max_tokens`, the
//! worst case). At a throughput of `R` tokens/s they take `g = D / R`
//! seconds to generate. The trainer takes `t` seconds
//! ([`RolloutDemand::train_step_secs`]) to train on them. With a staleness
//! budget `S` (how many policy versions a rollout may lag):
//!
//! - `S = 0` (synchronous): generation and training alternate, so a step
//!   takes `g + t`. A step of `P` seconds needs `R ≥ D / (P − t)`.
//! - `S ≥ 1`: the next version's rollouts are generated while the trainer
//!   trains, so a step takes `max(g, t)` and a step of `P ≥ t` seconds needs
//!   only `R ≥ D / P`. That is the throughput staleness saves
//!   ([`RolloutDemand::required_tokens_per_sec`]).
//!
//! A larger `S` does not lower the steady-state throughput further: the
//! trainer still consumes `D` tokens a step. What it widens is how long one
//! completion may take: a rollout of version `v` may be trained on up to
//! `S` steps later. So the *window* one completion must fit in is `g`
//! for `S = 0` and `S · max(g, t)` for `S ≥ 1`, with `g` taken at the target
//! (or at everything offered, if that is less).
//!
//! # The rule
//!
//! Prices are per token and the `D` tokens are fixed, so cost depends only
//! on who generates which tokens; time is the constraint (generation must
//! fit `D / T`). Hence, as for a fractional knapsack:
//!
//! 1. An offer is usable only if it announces a positive finite throughput,
//!    at least one slot, and one completion on it fits the window: at full
//!    load a sequence runs at `tokens_per_sec / slots`, so a completion
//!    takes `max_tokens · slots / tokens_per_sec` seconds; a node slower
//!    than that is a straggler the step would wait for. Offers that fail are
//!    listed in [`Selection::ignored`] with the reason.
//! 2. Usable offers are taken in increasing price (ties: higher throughput
//!    first, then id), each at its full throughput, until the target is met.
//! 3. Every worker taken but the last is kept busy the whole generation
//!    window; the last (the dearest taken) gets only what the cheaper ones
//!    cannot do, and idles the rest of the window, which costs nothing as
//!    prices are per token. Splitting in proportion to throughput instead
//!    would hand most of the work to a fast, dear last worker; this split
//!    is never dearer than that one, on any set that meets the target.
//! 4. If all usable offers together fall short, all are taken at full
//!    throughput and [`Selection::unmet`] says by how much: the trainer can
//!    still run, slower.
//!
//! Not modelled: the time to spread a new policy to the workers, workers
//! that leave mid-step, completions that end before `max_tokens` (the cost
//! is an upper bound), and whole-completion rounding of the shares.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;

use crate::RlError;

/// What one worker offers, filled by the caller from its capacity
/// announcement.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerOffer {
    /// The worker's name (e.g. its node key in hex); unique among offers.
    pub id: String,
    /// Price per generated token, in token base units.
    pub price_per_token: u64,
    /// Completion tokens per second it generates in total with `slots`
    /// sequences running. A capacity announcement's `tokens_per_sec` is one
    /// sequence's speed, so `tokens_per_sec × slots` is an upper bound
    /// (batched decoding does not scale linearly): prefer a measured batched
    /// rate when there is one.
    pub tokens_per_sec: f64,
    /// Sequences it can run for this job (an announcement's `max_concurrent`
    /// minus `active`).
    pub slots: u32,
}

/// What one policy version asks of the workers, and how the trainer runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RolloutDemand {
    /// Completions per policy version (prompts × group size).
    pub completions: u32,
    /// Most tokens one completion generates.
    pub max_tokens: u32,
    /// Staleness budget: how many policy versions a rollout may lag
    /// (0: synchronous).
    pub staleness: u32,
    /// Seconds the trainer takes for one step on a version's rollouts.
    pub train_step_secs: f64,
}

impl RolloutDemand {
    /// Completion tokens per policy version: `completions × max_tokens`.
    pub fn tokens_per_step(&self) -> u64 {
        u64::from(self.completions) * u64::from(self.max_tokens)
    }

    /// The throughput that gives a step of `step_secs` seconds under the
    /// model in the module doc: `D / (step_secs − t)` when synchronous,
    /// `D / step_secs` with a staleness budget. Refused when no throughput
    /// can: a synchronous step not longer than training, an overlapped one
    /// shorter than training.
    pub fn required_tokens_per_sec(&self, step_secs: f64) -> Result<f64, RlError> {
        self.check()?;
        let t = self.train_step_secs;
        let gen_secs = if self.staleness == 0 {
            step_secs - t
        } else if step_secs >= t {
            step_secs
        } else {
            0.0
        };
        if !(step_secs.is_finite() && gen_secs > 0.0) {
            return Err(RlError::StepTooShort {
                step_secs: format!("{step_secs}"),
                train_step_secs: format!("{t}"),
                staleness: self.staleness,
            });
        }
        Ok(self.tokens_per_step() as f64 / gen_secs)
    }

    /// Seconds a step takes when rollouts are generated at `tokens_per_sec`:
    /// generation plus training when synchronous, the longer of the two
    /// with a staleness budget.
    pub fn step_secs(&self, tokens_per_sec: f64) -> f64 {
        let gen = self.tokens_per_step() as f64 / tokens_per_sec;
        if self.staleness == 0 {
            gen + self.train_step_secs
        } else {
            gen.max(self.train_step_secs)
        }
    }

    /// Seconds one completion may take when a version's rollouts are
    /// generated at `tokens_per_sec`: the generation time when synchronous,
    /// `staleness` steps otherwise.
    pub fn completion_window_secs(&self, tokens_per_sec: f64) -> f64 {
        let gen = self.tokens_per_step() as f64 / tokens_per_sec;
        if self.staleness == 0 {
            gen
        } else {
            f64::from(self.staleness) * gen.max(self.train_step_secs)
        }
    }

    fn check(&self) -> Result<(), RlError> {
        if self.completions == 0 || self.max_tokens == 0 {
            return Err(RlError::BadDemand {
                what: "a step of no completions or no tokens",
            });
        }
        if !(self.train_step_secs.is_finite() && self.train_step_secs >= 0.0) {
            return Err(RlError::BadDemand {
                what: "a training step time that is negative or not finite",
            });
        }
        Ok(())
    }
}

/// One worker taken, and the work it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// The offer's id.
    pub id: String,
    /// Its price per token.
    pub price_per_token: u64,
    /// The throughput it offered.
    pub offered_tokens_per_sec: f64,
    /// The throughput asked of it (its offer, but for the last one taken).
    pub tokens_per_sec: f64,
    /// Its share of a step's tokens, in `(0, 1]`.
    pub share: f64,
    /// Tokens it generates a step.
    pub tokens_per_step: f64,
    /// What those tokens cost, in token base units.
    pub cost_per_step: f64,
}

/// Why an offer was left out.
#[derive(Debug, Clone, PartialEq)]
pub enum IgnoredWhy {
    /// Its throughput is zero, negative or not a finite number.
    NoThroughput,
    /// It has no free slot.
    NoSlots,
    /// One completion on it would not fit the window.
    TooSlow {
        /// Seconds one completion takes on it at full load.
        completion_secs: f64,
        /// Seconds one completion may take.
        window_secs: f64,
    },
}

/// An offer left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Ignored {
    /// The offer's id.
    pub id: String,
    /// Why.
    pub why: IgnoredWhy,
}

/// The workers chosen for a rollout job, and what the choice implies.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The throughput asked for, tokens/s.
    pub target_tokens_per_sec: f64,
    /// The demand it was chosen for.
    pub demand: RolloutDemand,
    /// Workers taken, cheapest first.
    pub chosen: Vec<Chosen>,
    /// Throughput planned: the target, or everything usable if less.
    pub tokens_per_sec: f64,
    /// What the workers taken could do at full throughput.
    pub capacity_tokens_per_sec: f64,
    /// Cost of a step's tokens, in token base units (an upper bound:
    /// completions may end before `max_tokens`).
    pub cost_per_step: f64,
    /// Seconds to generate a step's rollouts at the planned throughput.
    pub generation_secs: f64,
    /// Seconds a step is expected to take ([`RolloutDemand::step_secs`]).
    pub step_secs_expected: f64,
    /// Seconds one completion may take ([`RolloutDemand::completion_window_secs`]
    /// at the throughput the usability rule used).
    pub window_secs: f64,
    /// Tokens/s short of the target when the usable offers fall short.
    pub unmet: Option<f64>,
    /// Offers left out, in the order given.
    pub ignored: Vec<Ignored>,
}

/// The cheapest workers that meet `target_tokens_per_sec` for `demand`, by
/// the rule in the module doc. Refused: no offers, a target that is not a
/// positive finite number, an empty demand or a bad training time, two
/// offers with one id, or no usable offer at all. An unreachable target is
/// not refused: see [`Selection::unmet`].
pub fn select(
    offers: &[WorkerOffer],
    target_tokens_per_sec: f64,
    demand: &RolloutDemand,
) -> Result<Selection, RlError> {
    if offers.is_empty() {
        return Err(RlError::NoOffers);
    }
    let target = target_tokens_per_sec;
    if !(target.is_finite() && target > 0.0) {
        return Err(RlError::BadTarget {
            target: format!("{target}"),
        });
    }
    demand.check()?;
    let mut seen = HashSet::new();
    if let Some(dup) = offers.iter().find(|o| !seen.insert(o.id.as_str())) {
        return Err(RlError::DuplicateWorker { id: dup.id.clone() });
    }

    let mut ignored = Vec::new();
    let mut valid = Vec::new();
    for o in offers {
        if !(o.tokens_per_sec.is_finite() && o.tokens_per_sec > 0.0) {
            ignored.push((o, IgnoredWhy::NoThroughput));
        } else if o.slots == 0 {
            ignored.push((o, IgnoredWhy::NoSlots));
        } else {
            valid.push(o);
        }
    }
    let offered: f64 = valid.iter().map(|o| o.tokens_per_sec).sum();
    let window_secs = demand.completion_window_secs(target.min(offered));
    let max_tokens = f64::from(demand.max_tokens);
    let mut usable = Vec::new();
    for o in valid {
        let completion_secs = max_tokens * f64::from(o.slots) / o.tokens_per_sec;
        if completion_secs > window_secs {
            ignored.push((
                o,
                IgnoredWhy::TooSlow {
                    completion_secs,
                    window_secs,
                },
            ));
        } else {
            usable.push(o);
        }
    }
    // Keep the caller's order among the ignored.
    ignored.sort_by_key(|(o, _)| offers.iter().position(|x| x.id == o.id));
    let ignored: Vec<Ignored> = ignored
        .into_iter()
        .map(|(o, why)| Ignored {
            id: o.id.clone(),
            why,
        })
        .collect();
    if usable.is_empty() {
        return Err(RlError::NoUsableWorkers {
            offered: offers.len(),
            why: ignored
                .iter()
                .map(|i| format!("{}: {}", i.id, i.why))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    usable.sort_by(|a, b| price_order(a, b));

    // Stop when what is left is a rounding error of the target.
    let enough = target * (1.0 - 1e-12);
    let mut planned = 0.0;
    let mut capacity = 0.0;
    let mut taken = Vec::new();
    for o in usable {
        if planned >= enough {
            break;
        }
        let asked = o.tokens_per_sec.min(target - planned);
        planned += asked;
        capacity += o.tokens_per_sec;
        taken.push((o, asked));
    }
    let unmet = (planned < enough).then_some(target - planned);
    let d = demand.tokens_per_step() as f64;
    let chosen: Vec<Chosen> = taken
        .into_iter()
        .map(|(o, asked)| {
            let share = asked / planned;
            let tokens = d * share;
            Chosen {
                id: o.id.clone(),
                price_per_token: o.price_per_token,
                offered_tokens_per_sec: o.tokens_per_sec,
                tokens_per_sec: asked,
                share,
                tokens_per_step: tokens,
                cost_per_step: o.price_per_token as f64 * tokens,
            }
        })
        .collect();
    Ok(Selection {
        target_tokens_per_sec: target,
        demand: *demand,
        cost_per_step: chosen.iter().map(|c| c.cost_per_step).sum(),
        chosen,
        tokens_per_sec: planned,
        capacity_tokens_per_sec: capacity,
        generation_secs: d / planned,
        step_secs_expected: demand.step_secs(planned),
        window_secs,
        unmet,
        ignored,
    })
}

/// Increasing price, then decreasing throughput, then id.
fn price_order(a: &WorkerOffer, b: &WorkerOffer) -> Ordering {
    a.price_per_token
        .cmp(&b.price_per_token)
        .then(b.tokens_per_sec.total_cmp(&a.tokens_per_sec))
        .then(a.id.cmp(&b.id))
}

impl fmt::Display for IgnoredWhy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoThroughput => f.write_str("no throughput announced"),
            Self::NoSlots => f.write_str("no free slot"),
            Self::TooSlow {
                completion_secs,
                window_secs,
            } => write!(
                f,
                "one completion takes {completion_secs:.1} s, the window is {window_secs:.1} s"
            ),
        }
    }
}

impl Selection {
    /// The choice as a small table: the workers in price order with what
    /// each is asked, then throughput against the target, the step time and
    /// the cost (the same text as `Display`).
    pub fn explain(&self) -> String {
        self.to_string()
    }
}

/// Shows the choice it makes: workers in the order taken (cheapest first),
/// each one's offered and asked throughput, share, tokens and cost a step;
/// then planned against target, the step time the staleness budget gives,
/// and the offers left out with why.
impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.demand;
        writeln!(
            f,
            "rollout workers: target {:.1} tok/s, {} tokens/step ({} completions x {} tokens), staleness {}",
            self.target_tokens_per_sec,
            d.tokens_per_step(),
            d.completions,
            d.max_tokens,
            d.staleness
        )?;
        writeln!(
            f,
            "taken cheapest first (ties: faster, then id); the last taken fills only what the cheaper cannot"
        )?;
        let w = self
            .chosen
            .iter()
            .map(|c| c.id.chars().count())
            .max()
            .unwrap_or(0)
            .max(6);
        writeln!(
            f,
            "  # {:<w$} {:>10} {:>11} {:>11} {:>7} {:>12} {:>14}",
            "worker",
            "price/tok",
            "offer tok/s",
            "asked tok/s",
            "share",
            "tokens/step",
            "cost/step"
        )?;
        for (i, c) in self.chosen.iter().enumerate() {
            writeln!(
                f,
                "{:>3} {:<w$} {:>10} {:>11.1} {:>11.1} {:>6.1}% {:>12.0} {:>14.0}",
                i + 1,
                c.id,
                c.price_per_token,
                c.offered_tokens_per_sec,
                c.tokens_per_sec,
                c.share * 100.0,
                c.tokens_per_step,
                c.cost_per_step
            )?;
        }
        let met = match self.unmet {
            None => "met".to_string(),
            Some(u) => format!("UNMET by {u:.1} tok/s: the trainer runs slower"),
        };
        writeln!(
            f,
            "throughput {:.1} tok/s of {:.1} offered by these; target {:.1}: {met}",
            self.tokens_per_sec, self.capacity_tokens_per_sec, self.target_tokens_per_sec
        )?;
        let how = if d.staleness == 0 {
            "generation + training"
        } else {
            "max(generation, training), overlapped"
        };
        writeln!(
            f,
            "step {:.1} s = {how} ({:.1} s, {:.1} s); a completion may take {:.1} s",
            self.step_secs_expected, self.generation_secs, d.train_step_secs, self.window_secs
        )?;
        write!(f, "cost {:.0} per step", self.cost_per_step)?;
        for i in &self.ignored {
            write!(f, "\nignored {}: {}", i.id, i.why)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offer(id: &str, price: u64, tps: f64, slots: u32) -> WorkerOffer {
        WorkerOffer {
            id: id.to_string(),
            price_per_token: price,
            tokens_per_sec: tps,
            slots,
        }
    }

    /// 100 completions of 100 tokens: 10 000 tokens a step; training 10 s.
    fn demand(staleness: u32) -> RolloutDemand {
        RolloutDemand {
            completions: 100,
            max_tokens: 100,
            staleness,
            train_step_secs: 10.0,
        }
    }

    fn ids(s: &Selection) -> Vec<&str> {
        s.chosen.iter().map(|c| c.id.as_str()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn cheapest_wins_and_the_last_fills_the_rest() {
        let offers = [
            offer("dear", 5, 1000.0, 1),
            offer("cheap", 1, 600.0, 1),
            offer("mid", 2, 600.0, 1),
        ];
        let s = select(&offers, 1000.0, &demand(0)).unwrap();
        assert_eq!(ids(&s), ["cheap", "mid"]);
        // cheap at 600 for the whole window, mid asked 400 of its 600.
        assert!(close(s.chosen[0].tokens_per_sec, 600.0));
        assert!(close(s.chosen[1].tokens_per_sec, 400.0));
        assert!(close(s.tokens_per_sec, 1000.0));
        assert!(close(s.capacity_tokens_per_sec, 1200.0));
        // 6000 tokens at 1 + 4000 at 2.
        assert!(close(s.cost_per_step, 14_000.0));
        assert!(close(s.chosen[0].share, 0.6));
        assert!(close(s.generation_secs, 10.0));
        assert!(close(s.step_secs_expected, 20.0));
        assert_eq!(s.unmet, None);
        assert!(s.ignored.is_empty());
    }

    #[test]
    fn the_last_split_is_cheaper_than_a_proportional_one() {
        // Proportional over {a, b} would give b 1000/1090 of the work at 2;
        // {a, c} proportional is cheaper still; the rule asks b for 10 tok/s.
        let offers = [
            offer("a", 1, 90.0, 1),
            offer("b", 2, 1000.0, 1),
            offer("c", 3, 10.0, 1),
        ];
        let d = RolloutDemand {
            completions: 10,
            max_tokens: 100,
            staleness: 1,
            train_step_secs: 1.0,
        };
        let s = select(&offers, 100.0, &d).unwrap();
        assert_eq!(ids(&s), ["a", "b"]);
        // 900 tokens at 1 + 100 at 2.
        assert!(close(s.cost_per_step, 1100.0));
        let proportional_ac = 1000.0 * (90.0 * 1.0 + 10.0 * 3.0) / 100.0;
        assert!(s.cost_per_step < proportional_ac);
    }

    #[test]
    fn ties_break_by_throughput_then_id_whatever_the_input_order() {
        let mut offers = vec![
            offer("b", 1, 500.0, 1),
            offer("a", 1, 500.0, 1),
            offer("c", 1, 800.0, 1),
            offer("z", 0, 100.0, 1),
        ];
        let want = ["z", "c", "a"];
        let s = select(&offers, 1200.0, &demand(1)).unwrap();
        assert_eq!(ids(&s), want);
        offers.reverse();
        let r = select(&offers, 1200.0, &demand(1)).unwrap();
        assert_eq!(ids(&r), want);
        assert_eq!(s.chosen, r.chosen);
        assert_eq!(s.to_string(), r.to_string());
    }

    #[test]
    fn an_unreachable_target_takes_everything_and_says_by_how_much() {
        let offers = [offer("a", 1, 300.0, 1), offer("b", 2, 200.0, 1)];
        let s = select(&offers, 1000.0, &demand(0)).unwrap();
        assert_eq!(ids(&s), ["a", "b"]);
        assert!(close(s.unmet.unwrap(), 500.0));
        assert!(close(s.tokens_per_sec, 500.0));
        // 10 000 tokens at 500 tok/s, then 10 s of training.
        assert!(close(s.generation_secs, 20.0));
        assert!(close(s.step_secs_expected, 30.0));
        assert!(close(s.chosen[0].share, 0.6));
        assert!(s.explain().contains("UNMET by 500.0"));
    }

    #[test]
    fn staleness_lowers_the_needed_throughput_and_so_the_cost() {
        let offers = [
            offer("cheap", 1, 600.0, 1),
            offer("mid", 2, 600.0, 1),
            offer("dear", 3, 2000.0, 1),
        ];
        // A 20 s step: synchronous needs 10 000 / (20 − 10) = 1000 tok/s,
        // overlapped 10 000 / 20 = 500.
        let sync = demand(0);
        let stale = demand(2);
        let t_sync = sync.required_tokens_per_sec(20.0).unwrap();
        let t_stale = stale.required_tokens_per_sec(20.0).unwrap();
        assert!(close(t_sync, 1000.0));
        assert!(close(t_stale, 500.0));
        let s0 = select(&offers, t_sync, &sync).unwrap();
        let s2 = select(&offers, t_stale, &stale).unwrap();
        assert_eq!(ids(&s0), ["cheap", "mid"]);
        assert_eq!(ids(&s2), ["cheap"]);
        assert!(close(s0.cost_per_step, 14_000.0));
        assert!(close(s2.cost_per_step, 10_000.0));
        // Both give the 20 s step asked for.
        assert!(close(s0.step_secs_expected, 20.0));
        assert!(close(s2.step_secs_expected, 20.0));
    }

    #[test]
    fn staleness_lets_a_slow_cheap_worker_in() {
        // 8 slots at 80 tok/s: 10 tok/s a sequence, 10 s a completion. At
        // 2000 tok/s a synchronous step generates in 5 s: too slow for it.
        let offers = [offer("slow", 1, 80.0, 8), offer("fast", 4, 2000.0, 1)];
        let s0 = select(&offers, 2000.0, &demand(0)).unwrap();
        assert_eq!(ids(&s0), ["fast"]);
        assert_eq!(
            s0.ignored,
            [Ignored {
                id: "slow".into(),
                why: IgnoredWhy::TooSlow {
                    completion_secs: 10.0,
                    window_secs: 5.0
                }
            }]
        );
        // Overlapped, it may take a training step (10 s).
        let s1 = select(&offers, 2000.0, &demand(1)).unwrap();
        assert_eq!(ids(&s1), ["slow", "fast"]);
        assert!(s1.ignored.is_empty());
        assert!(s1.cost_per_step < s0.cost_per_step);
    }

    #[test]
    fn offers_without_throughput_or_slots_are_ignored_and_said() {
        let offers = [
            offer("nan", 0, f64::NAN, 4),
            offer("zero", 0, 0.0, 4),
            offer("inf", 0, f64::INFINITY, 4),
            offer("full", 0, 500.0, 0),
            offer("ok", 3, 500.0, 1),
        ];
        let s = select(&offers, 400.0, &demand(1)).unwrap();
        assert_eq!(ids(&s), ["ok"]);
        let why: Vec<_> = s.ignored.iter().map(|i| (i.id.as_str(), &i.why)).collect();
        assert_eq!(
            why,
            [
                ("nan", &IgnoredWhy::NoThroughput),
                ("zero", &IgnoredWhy::NoThroughput),
                ("inf", &IgnoredWhy::NoThroughput),
                ("full", &IgnoredWhy::NoSlots),
            ]
        );
        assert!(s.explain().contains("ignored nan: no throughput announced"));
    }

    #[test]
    fn refusals() {
        let ok = [offer("a", 1, 100.0, 1)];
        assert_eq!(select(&[], 1.0, &demand(0)), Err(RlError::NoOffers));
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                select(&ok, t, &demand(0)),
                Err(RlError::BadTarget { .. })
            ));
        }
        let mut empty = demand(0);
        empty.completions = 0;
        assert!(matches!(
            select(&ok, 1.0, &empty),
            Err(RlError::BadDemand { .. })
        ));
        let mut bad_t = demand(0);
        bad_t.train_step_secs = f64::NAN;
        assert!(matches!(
            select(&ok, 1.0, &bad_t),
            Err(RlError::BadDemand { .. })
        ));
        let dup = [offer("a", 1, 100.0, 1), offer("a", 2, 100.0, 1)];
        assert_eq!(
            select(&dup, 1.0, &demand(0)),
            Err(RlError::DuplicateWorker { id: "a".into() })
        );
        let none = [offer("x", 1, 0.0, 1), offer("y", 1, 10.0, 0)];
        let e = select(&none, 1.0, &demand(0)).unwrap_err();
        assert!(matches!(e, RlError::NoUsableWorkers { offered: 2, .. }));
        assert!(e.to_string().contains("x: no throughput announced"));
        // A synchronous step no longer than training, or an overlapped one
        // shorter than it, has no throughput that gives it.
        assert!(matches!(
            demand(0).required_tokens_per_sec(10.0),
            Err(RlError::StepTooShort { .. })
        ));
        assert!(matches!(
            demand(3).required_tokens_per_sec(9.0),
            Err(RlError::StepTooShort { .. })
        ));
        assert!(close(
            demand(3).required_tokens_per_sec(10.0).unwrap(),
            1000.0
        ));
    }

    #[test]
    fn the_table_shows_the_choice() {
        let offers = [
            offer("node-c", 3, 900.0, 4),
            offer("node-a", 1, 500.0, 4),
            offer("node-b", 2, 400.0, 4),
            offer("node-d", 1, f64::NAN, 4),
        ];
        let s = select(&offers, 1200.0, &demand(1)).unwrap();
        let text = s.explain();
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[0].contains("target 1200.0 tok/s"), "{text}");
        assert!(rows[3].contains("node-a") && rows[3].trim_start().starts_with('1'));
        assert!(rows[4].contains("node-b"));
        assert!(rows[5].contains("node-c") && rows[5].contains("300.0"));
        assert!(text.contains("target 1200.0: met"));
        assert!(text.contains("cost 18333 per step"), "{text}");
        assert!(text.contains("ignored node-d"));
    }

    fn offers_strategy() -> impl Strategy<Value = Vec<WorkerOffer>> {
        prop::collection::vec((0u64..6, 1.0f64..2000.0, 1u32..4), 1..10).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (p, tps, slots))| offer(&format!("w{i}"), p, tps, slots))
                .collect()
        })
    }

    proptest! {
        /// Whenever the usable offers sum to the target, the choice meets it;
        /// no strict prefix of it in price order would; every usable offer
        /// cheaper (in price order) than the last taken is taken.
        #[test]
        fn meets_the_target_with_no_superfluous_worker(
            offers in offers_strategy(),
            target in 1.0f64..8000.0,
            staleness in 0u32..4,
        ) {
            let d = RolloutDemand { completions: 64, max_tokens: 32, staleness, train_step_secs: 1.0 };
            let s = match select(&offers, target, &d) {
                Ok(s) => s,
                Err(RlError::NoUsableWorkers { .. }) => return Ok(()),
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            };
            let ignored: HashSet<&str> = s.ignored.iter().map(|i| i.id.as_str()).collect();
            let mut usable: Vec<&WorkerOffer> =
                offers.iter().filter(|o| !ignored.contains(o.id.as_str())).collect();
            usable.sort_by(|a, b| price_order(a, b));
            let all: f64 = usable.iter().map(|o| o.tokens_per_sec).sum();
            // The choice is a prefix of the usable offers in price order.
            let n = s.chosen.len();
            prop_assert!(n >= 1);
            for (c, o) in s.chosen.iter().zip(&usable) {
                prop_assert_eq!(&c.id, &o.id);
            }
            let cap: f64 = s.chosen.iter().map(|c| c.offered_tokens_per_sec).sum();
            if all >= target {
                prop_assert!(cap >= target * (1.0 - 1e-9), "cap {} target {}", cap, target);
                prop_assert!(s.unmet.is_none());
                prop_assert!(close(s.tokens_per_sec, target));
                let prefix: f64 = s.chosen[..n - 1].iter().map(|c| c.offered_tokens_per_sec).sum();
                prop_assert!(prefix < target, "prefix {} already meets {}", prefix, target);
            } else {
                prop_assert_eq!(n, usable.len());
                prop_assert!(s.unmet.is_some());
            }
            let shares: f64 = s.chosen.iter().map(|c| c.share).sum();
            prop_assert!(close(shares, 1.0));
            for c in &s.chosen[..n - 1] {
                prop_assert!(close(c.tokens_per_sec, c.offered_tokens_per_sec));
            }
        }

        /// No subset of the usable offers that meets the target, its work
        /// split in proportion to throughput, is cheaper than the choice.
        #[test]
        fn no_proportional_subset_is_cheaper(
            offers in offers_strategy(),
            target in 1.0f64..8000.0,
        ) {
            let d = RolloutDemand { completions: 64, max_tokens: 32, staleness: 1, train_step_secs: 1.0 };
            let Ok(s) = select(&offers, target, &d) else { return Ok(()) };
            if s.unmet.is_some() {
                return Ok(());
            }
            let ignored: HashSet<&str> = s.ignored.iter().map(|i| i.id.as_str()).collect();
            let usable: Vec<&WorkerOffer> =
                offers.iter().filter(|o| !ignored.contains(o.id.as_str())).collect();
            let tokens = d.tokens_per_step() as f64;
            for mask in 1u32..(1 << usable.len()) {
                let set: Vec<_> = usable.iter().enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0).map(|(_, o)| *o).collect();
                let r: f64 = set.iter().map(|o| o.tokens_per_sec).sum();
                if r < target {
                    continue;
                }
                let cost: f64 = set.iter()
                    .map(|o| o.price_per_token as f64 * tokens * o.tokens_per_sec / r).sum();
                prop_assert!(s.cost_per_step <= cost * (1.0 + 1e-9) + 1e-6,
                    "choice {} dearer than {:?} at {}", s.cost_per_step, mask, cost);
            }
        }
    }
}
