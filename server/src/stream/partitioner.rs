//! Which partition a record goes to: Kafka's default partitioner for keyed records (murmur2 of
//! the key, sign bit cleared, modulo the partition count), so a key lands on the partition a
//! Kafka producer would pick for the same topic size; keyless records go to one partition per
//! batch (Kafka's sticky partitioner), the next batch to the next partition.

/// Kafka's `Utils.murmur2`: MurmurHash2, 32-bit, seed `0x9747b28c`, with Java's signed
/// arithmetic (the same bits in wrapping `u32` arithmetic).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record among `partitions`: `toPositive(murmur2(key)) % n`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) as u32) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apache Kafka's `UtilsTest.testMurmur2` vectors: the Java implementation's results.
    #[test]
    fn murmur2_matches_kafkas_own_test_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    /// Partitions computed from the vectors above the way Kafka's `BuiltInPartitioner`
    /// computes them (`toPositive(murmur2) % n`), worked out by hand from the Java ints.
    #[test]
    fn keys_land_where_kafkas_partitioner_puts_them() {
        let cases: [(&[u8], u32, u32); 6] = [
            // (-973932308 & 0x7fffffff) = 1173551340
            (b"21", 3, 1_173_551_340 % 3),
            (b"21", 10, 1_173_551_340 % 10),
            // (-790332482 & 0x7fffffff) = 1357151166
            (b"foobar", 6, 1_357_151_166 % 6),
            // 479470107 is positive
            (b"abc", 4, 479_470_107 % 4),
            (b"abc", 7, 479_470_107 % 7),
            (b"abc", 1, 0),
        ];
        for (key, partitions, expected) in cases {
            assert_eq!(partition_for_key(key, partitions), expected);
        }
        assert_eq!(1_173_551_340u32, (-973_932_308i32 as u32) & 0x7fff_ffff);
    }
}
