//! A small, fast, seedable generator (SplitMix64) and the helpers the targets share.

/// SplitMix64: good enough statistically for input generation, and reproducible by seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Random bytes, biased towards the ones parsers care about.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        const SPECIAL: &[u8] = b"\0\n\r\t \"'\\/{}[]:,.$@#?%&=+-_~*!|<>()`^\x7f\xc3\xa9\xff";
        let n = self.below(max + 1);
        (0..n)
            .map(|_| match self.below(4) {
                0 => *self.pick(SPECIAL),
                1 => self.next_u64() as u8,
                _ => b'a' + self.below(26) as u8,
            })
            .collect()
    }

    /// A random string of up to `max` characters, with some non-ASCII and syntax.
    pub fn text(&mut self, max: usize) -> String {
        const CHARS: &[&str] = &[
            "a", "b", "z", "A", "0", "9", "-", "_", ".", "/", ":", "@", "?", "#", "%", "&", "=",
            "+", " ", "\\", "\"", "'", "$", "{", "}", "[", "]", ",", "é", "€", "😀", "\u{0}", "\n",
            "\u{202e}", "%2F", "%40", "%",
        ];
        let n = self.below(max + 1);
        (0..n).map(|_| *self.pick(CHARS)).collect()
    }

    /// An interesting integer.
    pub fn int(&mut self) -> i64 {
        match self.below(8) {
            0 => *self.pick(&[
                0,
                1,
                -1,
                i64::MAX,
                i64::MIN,
                i32::MAX as i64,
                1_700_000_000,
                4_102_444_800,
            ]),
            1 => self.next_u64() as i64,
            _ => self.below(2000) as i64 - 1000,
        }
    }

    /// A random JSON value, at most `depth` levels deep.
    pub fn json(&mut self, depth: usize) -> serde_json::Value {
        use serde_json::{Value, json};
        const KEYS: &[&str] = &[
            "id", "a", "b", "host", "items", "amount", "x-y", "0", "name", "", "é",
        ];
        match self.below(if depth == 0 { 6 } else { 9 }) {
            0 => Value::Null,
            1 => Value::Bool(self.one_in(2)),
            2 => json!(self.int()),
            3 => match self.below(4) {
                0 => json!(u64::MAX),
                1 => json!(1e300),
                2 => json!(-0.0),
                _ => json!(self.int() as f64 / 7.0),
            },
            4 | 5 => Value::String(self.text(12)),
            6 | 7 => {
                let n = self.below(5);
                let mut m = serde_json::Map::new();
                for _ in 0..n {
                    let k = if self.one_in(4) {
                        self.text(6)
                    } else {
                        self.pick(KEYS).to_string()
                    };
                    m.insert(k, self.json(depth - 1));
                }
                Value::Object(m)
            }
            _ => Value::Array((0..self.below(5)).map(|_| self.json(depth - 1)).collect()),
        }
    }

    /// Apply 1-3 byte-level mutations.
    pub fn mutate_bytes(&mut self, data: &mut Vec<u8>) {
        for _ in 0..1 + self.below(3) {
            let len = data.len();
            match self.below(6) {
                0 if len > 0 => {
                    let i = self.below(len);
                    data[i] = self.next_u64() as u8;
                }
                1 if len > 0 => {
                    let i = self.below(len);
                    let n = self.below(8).min(len - i);
                    data.drain(i..i + n);
                }
                2 => {
                    let i = self.below(len + 1);
                    let ins = self.bytes(8);
                    data.splice(i..i, ins);
                }
                3 if len > 0 => {
                    // Duplicate a chunk somewhere else.
                    let a = self.below(len);
                    let b = (a + 1 + self.below(32)).min(len);
                    let chunk = data[a..b].to_vec();
                    let at = self.below(len + 1);
                    data.splice(at..at, chunk);
                }
                4 if len > 0 => data.truncate(self.below(len)),
                _ => {
                    let i = self.below(len + 1);
                    let s = self.text(4);
                    data.splice(i..i, s.into_bytes());
                }
            }
        }
    }
}
