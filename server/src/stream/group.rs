//! Consumer groups: members, generations and the sticky assignment, pure (no clock of its own,
//! no engine). The committed offsets live beside them in `core` because they are durable.
//!
//! # The protocol (Kafka's, simplified to one round trip)
//! - JOIN adds a member: the group moves to a new generation and the partitions are
//!   reassigned at once (the sticky assignment below). A member already in the group that
//!   joins again changes nothing: it gets the current generation and its partitions. That is
//!   what a member does when HEARTBEAT (or COMMIT) tells it a rebalance happened.
//! - LEAVE, an eviction (no heartbeat, consume or commit within the member's session timeout)
//!   and a partition count that grew also move the group to a new generation.
//! - A member's commits carry the generation it joined; an older one is refused (fencing),
//!   and so is a member the group no longer has.
//!
//! # The sticky assignment
//! Each member ends with ⌊P/M⌋ or ⌈P/M⌉ partitions. Members keep the partitions they had, up
//! to their share (the ones with more than ⌈P/M⌉ give up their highest-numbered partitions;
//! the ⌈P/M⌉ shares go first to the members that already hold that many); the partitions
//! left over go, lowest first, to the members below their share, in name order. So a member
//! joining takes partitions only from those above the new share, and a member leaving only
//! hands its own partitions out: as few move as can.

use std::collections::BTreeMap;

/// A member of a group.
#[derive(Clone, Debug, Default)]
pub struct Member {
    pub session_ms: u64,
    pub last_seen_ms: u64,
    /// Assigned partitions, ascending.
    pub partitions: Vec<u32>,
    /// Where the member's next CONSUME reads in each of its partitions (absent: from the
    /// committed offset, or the reset policy).
    pub positions: BTreeMap<u32, u64>,
    /// The partition the next CONSUME starts with (round robin across calls).
    pub next_index: usize,
    /// CONSUME ... BLOCK calls of this member parked now: a member waiting for records is
    /// alive (Kafka's consumer heartbeats while it polls), so it is not evicted meanwhile.
    pub waiting: u32,
}

/// Reassigns `partitions` partitions among `members`, keeping what each holds as far as the
/// shares allow (see the module doc). A partition moved to another member loses its position
/// there (the new owner starts from the committed offset).
pub fn assign(members: &mut BTreeMap<Vec<u8>, Member>, partitions: u32) {
    if members.is_empty() {
        return;
    }
    let count = members.len() as u32;
    let base = partitions / count;
    let mut extra = partitions % count;
    let mut taken = vec![false; partitions as usize];
    // Shares: the ⌈P/M⌉ ones first to the members that hold more than ⌊P/M⌋ now (most first).
    let mut order: Vec<(Vec<u8>, usize)> = members
        .iter()
        .map(|(name, m)| {
            let valid = m.partitions.iter().filter(|&&p| p < partitions).count();
            (name.clone(), valid)
        })
        .collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut shares: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
    for (name, held) in &order {
        let share = if extra > 0 && *held as u32 > base {
            extra -= 1;
            base + 1
        } else {
            base
        };
        shares.insert(name.clone(), share);
    }
    for share in shares.values_mut() {
        if extra > 0 && *share == base {
            *share += 1;
            extra -= 1;
        }
    }
    // Keep what each holds, up to its share (lowest partitions kept).
    for (name, member) in members.iter_mut() {
        let share = shares[name] as usize;
        let mut kept: Vec<u32> = Vec::new();
        for &p in &member.partitions {
            if p < partitions && !taken[p as usize] && kept.len() < share {
                taken[p as usize] = true;
                kept.push(p);
            }
        }
        member.positions.retain(|p, _| kept.contains(p));
        member.partitions = kept;
    }
    // Hand out the rest, lowest first, to members below their share, in name order.
    let mut free = (0..partitions).filter(|&p| !taken[p as usize]);
    for (name, member) in members.iter_mut() {
        let share = shares[name] as usize;
        while member.partitions.len() < share {
            match free.next() {
                Some(p) => member.partitions.push(p),
                None => break,
            }
        }
        member.partitions.sort_unstable();
        member.next_index = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(names: &[&str]) -> BTreeMap<Vec<u8>, Member> {
        names
            .iter()
            .map(|n| (n.as_bytes().to_vec(), Member::default()))
            .collect()
    }

    fn owners(members: &BTreeMap<Vec<u8>, Member>, partitions: u32) -> Vec<String> {
        let mut owner = vec![String::new(); partitions as usize];
        for (name, m) in members {
            for &p in &m.partitions {
                assert!(owner[p as usize].is_empty(), "partition {p} assigned twice");
                owner[p as usize] = String::from_utf8(name.clone()).unwrap();
            }
        }
        owner
    }

    fn assert_balanced(members: &BTreeMap<Vec<u8>, Member>, partitions: u32) {
        let owner = owners(members, partitions);
        assert!(
            owner.iter().all(|o| !o.is_empty()),
            "every partition owned: {owner:?}"
        );
        let sizes: Vec<usize> = members.values().map(|m| m.partitions.len()).collect();
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(max - min <= 1, "balanced: {sizes:?}");
    }

    #[test]
    fn a_joining_member_takes_partitions_only_from_the_others_surplus() {
        let mut members = group(&["a"]);
        assign(&mut members, 10);
        assert_eq!(
            members[&b"a".to_vec()].partitions,
            (0..10).collect::<Vec<_>>()
        );
        members.insert(b"b".to_vec(), Member::default());
        assign(&mut members, 10);
        assert_balanced(&members, 10);
        assert_eq!(members[&b"a".to_vec()].partitions, vec![0, 1, 2, 3, 4]);
        let before = owners(&members, 10);
        members.insert(b"c".to_vec(), Member::default());
        assign(&mut members, 10);
        assert_balanced(&members, 10);
        let after = owners(&members, 10);
        let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
        // 10 over 3 is 4/3/3: c takes 3, all from a and b's surplus (the minimum).
        assert_eq!(moved, 3, "{before:?} -> {after:?}");
        assert!(after
            .iter()
            .zip(&before)
            .all(|(new, old)| new == old || new == "c"));
    }

    #[test]
    fn a_leaving_member_hands_out_only_its_own_partitions() {
        let mut members = group(&["a", "b", "c", "d"]);
        assign(&mut members, 12);
        assert_balanced(&members, 12);
        let before = owners(&members, 12);
        members.remove(b"b".as_slice());
        assign(&mut members, 12);
        assert_balanced(&members, 12);
        let after = owners(&members, 12);
        for p in 0..12 {
            if before[p] != "b" {
                assert_eq!(before[p], after[p], "partition {p} moved needlessly");
            }
        }
    }

    #[test]
    fn more_members_than_partitions_leaves_some_idle_and_growth_spreads_new_ones() {
        let mut members = group(&["a", "b", "c"]);
        assign(&mut members, 2);
        assert_eq!(
            members.values().filter(|m| m.partitions.is_empty()).count(),
            1
        );
        owners(&members, 2);
        let before = owners(&members, 2);
        assign(&mut members, 6);
        assert_balanced(&members, 6);
        let after = owners(&members, 6);
        assert_eq!(before[..], after[..2], "existing partitions stay put");
    }
}
