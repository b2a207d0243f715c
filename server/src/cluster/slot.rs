//! Redis Cluster's hash slots: a key's slot is the CRC-16 (XMODEM) of the key, or of its hash
//! tag (the bytes between the first `{` and the next `}`, when not empty), modulo 16384. A Flin
//! cluster is one shard: the leader serves every slot; slots only tell Redis Cluster clients
//! which slot a redirect is for (`-MOVED <slot> <addr>`), and CLUSTER KEYSLOT answers them.

/// Redis Cluster's number of hash slots.
pub const SLOTS: u16 = 16384;

/// The slot of `key`, as Redis Cluster computes it (`keyHashSlot` in Redis's cluster.c).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS
}

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), bit by bit: a key's few bytes do not
/// call for a table.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What redis-server 7 (Debian's, `--cluster-enabled yes`) answered to `CLUSTER KEYSLOT`
    /// for each key, and the CRC-16/XMODEM check value.
    #[test]
    fn slots_match_redis() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b""), 0);
        // A hash tag: only what is between the first { and the next } counts...
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"{user1000}.following"), 3443);
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), 5061);
        // ...unless it is empty or unclosed: then the whole key.
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_slot(b"foo{bar"), 15278);
        assert_eq!(key_slot(b"{}"), 15257);
    }
}
