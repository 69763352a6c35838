//! The mix of a run: which operations the simulated terminals send, with what weights
//! (`--mix enrol=4,purchase=70,refund=8,redeem=8,retry=10`).

use std::str::FromStr;

use anyhow::{bail, Context as _};
use rand::rngs::SmallRng;
use rand::Rng as _;

/// What one simulated request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Enrol,
    Purchase,
    Refund,
    Redeem,
    /// The member's previous request again, same `Idempotency-Key`, same body: the answer must
    /// be the original one.
    Retry,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [
        OpKind::Enrol,
        OpKind::Purchase,
        OpKind::Refund,
        OpKind::Redeem,
        OpKind::Retry,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            OpKind::Enrol => "enrol",
            OpKind::Purchase => "purchase",
            OpKind::Refund => "refund",
            OpKind::Redeem => "redeem",
            OpKind::Retry => "retry",
        }
    }
}

/// Relative weights of the operations, e.g. `enrol=4,purchase=70,refund=8,redeem=8,retry=10`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(OpKind, u32)>,
    total: u32,
}

/// The default mix: mostly purchases, some returns and redemptions, one request in ten a
/// retry (a terminal that timed out and resent), a trickle of new members.
pub const DEFAULT_MIX: &str = "enrol=4,purchase=70,refund=8,redeem=8,retry=10";

impl FromStr for Mix {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut weights = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .with_context(|| format!("mix entry `{part}` is not <operation>=<weight>"))?;
            let kind = OpKind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .with_context(|| {
                    format!("unknown operation `{name}` in the mix: expected enrol, purchase, refund, redeem or retry")
                })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("weight of `{name}` must be a whole number"))?;
            if weights.iter().any(|(k, _)| *k == kind) {
                bail!("operation `{name}` appears twice in the mix");
            }
            weights.push((kind, weight));
        }
        let total = weights
            .iter()
            .try_fold(0u32, |sum, (_, w)| sum.checked_add(*w))
            .context("mix weights are too large")?;
        if total == 0 {
            bail!("the mix `{s}` has no operation with a positive weight");
        }
        Ok(Mix { weights, total })
    }
}

impl Mix {
    pub fn pick(&self, rng: &mut SmallRng) -> OpKind {
        let mut roll = rng.random_range(0..self.total);
        for (kind, weight) in &self.weights {
            if roll < *weight {
                return *kind;
            }
            roll -= weight;
        }
        // Unreachable: roll < total = sum of the weights.
        OpKind::Purchase
    }

    pub fn weight(&self, kind: OpKind) -> u32 {
        self.weights
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, w)| *w)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    #[test]
    fn mixes_parse_and_pick_by_weight() {
        let mix: Mix = DEFAULT_MIX.parse().unwrap();
        assert_eq!(mix.weight(OpKind::Purchase), 70);
        assert_eq!(mix.weight(OpKind::Retry), 10);
        let only: Mix = "purchase=1".parse().unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        assert!((0..1000).all(|_| only.pick(&mut rng) == OpKind::Purchase));

        let mut counts = [0u32; 5];
        for _ in 0..100_000 {
            let kind = mix.pick(&mut rng);
            counts[OpKind::ALL.iter().position(|k| *k == kind).unwrap()] += 1;
        }
        // Purchases are 70% of the mix: 70_000 ± 1%.
        assert!((69_000..71_000).contains(&counts[1]), "{counts:?}");
    }

    #[test]
    fn bad_mixes_are_refused_with_the_reason() {
        let error = |s: &str| s.parse::<Mix>().unwrap_err().to_string();
        assert!(error("purchase=1,dance=2").contains("unknown operation `dance`"));
        assert!(error("purchase").contains("not <operation>=<weight>"));
        assert!(error("purchase=x").contains("whole number"));
        assert!(error("purchase=0").contains("no operation with a positive weight"));
        assert!(error("purchase=1,purchase=2").contains("twice"));
    }
}
