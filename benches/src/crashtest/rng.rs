//! A seeded random number generator (splitmix64), so every choice the harness makes follows
//! from its seed. No dependency: the stream must not change when a crate is upgraded.

/// splitmix64's state.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// An independent stream for one part of the run (`stream` names the part, `index` numbers
    /// it: cycle, writer), so adding a writer does not change what the others do.
    pub fn derive(seed: u64, stream: u64, index: u64) -> Rng {
        Rng::new(crate::mix(
            crate::mix(seed ^ stream.rotate_left(32)) ^ index,
        ))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::mix(self.state.wrapping_sub(0x9e37_79b9_7f4a_7c15))
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        // Multiply-shift: unbiased enough for test choices, no division.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "between({low}, {high})");
        low + self.below(high - low + 1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An index chosen by `weights` (not all zero).
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut pick = self.below(total);
        for (index, weight) in weights.iter().enumerate() {
            if pick < *weight {
                return index;
            }
            pick -= weight;
        }
        unreachable!("pick < total")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let a: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(42);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(42);
        assert_eq!(a, (0..8).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(
            Rng::derive(1, 2, 3).next_u64(),
            Rng::derive(1, 2, 4).next_u64()
        );
    }

    #[test]
    fn ranges_hold() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            assert!(r.below(5) < 5);
            assert!((3..=9).contains(&r.between(3, 9)));
            assert_eq!(r.weighted(&[0, 3, 0]), 1);
        }
    }
}
