//! Test helpers shared by the core's unit tests.

/// A small deterministic generator (xorshift64*) for garbage-input tests:
/// fixed seeds make a failure reproducible without a dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub(crate) fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// `valid` with a few bytes flipped, truncated or extended: garbage that
    /// still gets past the first checks of a parser.
    pub(crate) fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut out = valid.to_vec();
        match self.below(3) {
            0 => out.truncate(self.below(valid.len() + 1)),
            1 => {
                for _ in 0..1 + self.below(4) {
                    if !out.is_empty() {
                        let i = self.below(out.len());
                        out[i] = self.next_u64() as u8;
                    }
                }
            }
            _ => {
                let extra = self.bytes(16);
                out.extend_from_slice(&extra);
            }
        }
        out
    }
}
