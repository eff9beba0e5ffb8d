//! Cheating modes, for the local testnet only: a node that runs one of these
//! serves tasks dishonestly, exactly as a real cheater would, so that people
//! and tests can watch the verification network audit, challenge and slash
//! it. `strata-node` refuses them unless the chain is a local one.
//!
//! | mode | what the node does | what catches it |
//! |---|---|---|
//! | `skip-layers` | every odd layer passes its input through (half the work) | a re-run of any skipped layer |
//! | `truncated-model` | runs only the first half of the layers (a smaller model) | a re-run of any later layer |
//! | `noise` | adds ±10 % to every value a layer outputs (sloppy, cheaper arithmetic) | a re-run of any layer |
//! | `junk-tokens` | samples hot with another seed, claims the client's sampling | the sampling re-check |
//! | `wrong-root` | signs a commitment root that is not its work's | the openings' Merkle proofs |
//! | `withhold` | never answers opening requests | the opening deadline |

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use strata_engine::LayerTamper;
use strata_wire::Sampling;

/// A cheating mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cheat {
    /// Every odd layer passes its input through.
    SkipLayers,
    /// Only the first half of the layers run.
    TruncatedModel,
    /// ±10 % on every value of every layer's output.
    Noise,
    /// Tokens sampled with other settings than the receipt claims.
    JunkTokens,
    /// A commitment root that is not the work's.
    WrongRoot,
    /// Opening requests go unanswered.
    Withhold,
}

impl Cheat {
    /// Every mode, in the order `strata-testnet up --cheaters N` assigns them.
    pub const ALL: [Cheat; 6] = [
        Cheat::SkipLayers,
        Cheat::TruncatedModel,
        Cheat::Noise,
        Cheat::JunkTokens,
        Cheat::WrongRoot,
        Cheat::Withhold,
    ];

    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Cheat::SkipLayers => "skip-layers",
            Cheat::TruncatedModel => "truncated-model",
            Cheat::Noise => "noise",
            Cheat::JunkTokens => "junk-tokens",
            Cheat::WrongRoot => "wrong-root",
            Cheat::Withhold => "withhold",
        }
    }

    /// The layer tampering this mode applies, for a model of `n_layers`.
    pub fn tamper(self, n_layers: usize) -> Option<Arc<dyn LayerTamper>> {
        match self {
            Cheat::SkipLayers => Some(Arc::new(PassThrough {
                skip: (0..n_layers).map(|l| l % 2 == 1).collect(),
            })),
            Cheat::TruncatedModel => Some(Arc::new(PassThrough {
                skip: (0..n_layers).map(|l| l >= n_layers / 2).collect(),
            })),
            Cheat::Noise => Some(Arc::new(Noise)),
            _ => None,
        }
    }

    /// The sampling this mode really uses when the client asked for `asked`.
    pub fn sampling(self, asked: Sampling) -> Sampling {
        match self {
            Cheat::JunkTokens => Sampling {
                temperature: 2.0,
                top_p: 1.0,
                top_k: 0,
                seed: asked.seed ^ 0x5eed_cafe,
            },
            _ => asked,
        }
    }
}

impl fmt::Display for Cheat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cheat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cheat::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Cheat::ALL.iter().map(|c| c.name()).collect();
                format!("unknown cheating mode {s:?} (one of {})", names.join(", "))
            })
    }
}

/// Whether cheating may run against the chain at `rpc_url`: only a local
/// one (loopback), never a public cluster, and never off-chain (where
/// nobody audits, so there would be nothing to watch).
pub fn allowed_on(rpc_url: Option<&str>) -> bool {
    let Some(url) = rpc_url else {
        return false;
    };
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Layers marked in `skip` output their input unchanged.
#[derive(Debug)]
struct PassThrough {
    skip: Vec<bool>,
}

impl LayerTamper for PassThrough {
    fn tamper(&self, layer: usize, input: &[f32], output: &mut [f32]) {
        if self.skip.get(layer).copied().unwrap_or(false) {
            output.copy_from_slice(input);
        }
    }
}

/// Adds ±10 % of each value's magnitude, the sign drawn from the value's own
/// bits: deterministic, so the cheater can replay it when opening. (The
/// largest value of a row is at least its rms, so a row's deviation is at
/// least 0.1, twice the verifiers' tolerance.)
#[derive(Debug)]
struct Noise;

impl LayerTamper for Noise {
    fn tamper(&self, layer: usize, _input: &[f32], output: &mut [f32]) {
        for v in output.iter_mut() {
            let bits = v.to_bits() ^ (layer as u32).wrapping_mul(0x9e37_79b9);
            let sign = if bits.count_ones().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
            *v += sign * 0.1 * v.abs().max(1e-3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_modes_are_named() {
        for c in Cheat::ALL {
            assert_eq!(c.name().parse::<Cheat>(), Ok(c));
        }
        let err = "lazy".parse::<Cheat>().unwrap_err();
        assert!(err.contains("skip-layers") && err.contains("lazy"), "{err}");
    }

    #[test]
    fn cheating_is_refused_off_loopback() {
        assert!(allowed_on(Some("http://127.0.0.1:8899")));
        assert!(allowed_on(Some("http://localhost:8899/")));
        assert!(!allowed_on(Some("https://api.devnet.solana.com")));
        assert!(!allowed_on(Some("http://127.0.0.1.evil.example:8899")));
        assert!(!allowed_on(Some("http://10.0.0.5:8899")));
        assert!(!allowed_on(None));
    }

    #[test]
    fn tampering_is_deterministic() {
        let t = Cheat::Noise.tamper(30).unwrap();
        let input = vec![0.5f32; 8];
        let (mut a, mut b) = (
            vec![1.0f32, -2.0, 3.5, 0.0, 7.0, -0.1, 2.2, 9.0],
            vec![0f32; 8],
        );
        b.copy_from_slice(&a);
        t.tamper(3, &input, &mut a);
        t.tamper(3, &input, &mut b);
        assert_eq!(a, b);
        let skip = Cheat::SkipLayers.tamper(30).unwrap();
        let mut out = vec![9.0f32; 8];
        skip.tamper(2, &input, &mut out);
        assert_eq!(out, vec![9.0; 8], "even layers run");
        skip.tamper(3, &input, &mut out);
        assert_eq!(out, input, "odd layers pass through");
    }
}
