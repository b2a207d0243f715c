//! Expiry arithmetic, pure: relative and absolute amounts to absolute milliseconds, what a
//! write does to a key's TTL, EXPIRE's NX/XX/GT/LT conditions, and how TTL, PTTL, EXPIRETIME
//! and PEXPIRETIME present an expiry.

use super::core::{KvError, Result};

/// How an expiry argument is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryUnit {
    /// EX / EXPIRE: seconds from now.
    Seconds,
    /// PX / PEXPIRE: milliseconds from now.
    Milliseconds,
    /// EXAT / EXPIREAT: Unix time in seconds.
    UnixSeconds,
    /// PXAT / PEXPIREAT: Unix time in milliseconds.
    UnixMilliseconds,
}

impl ExpiryUnit {
    /// The absolute expiry in ms for `amount`, or `None` if it overflows (Redis then replies
    /// "invalid expire time"). The result may be in the past or negative.
    pub fn to_absolute_ms(self, amount: i64, now_ms: u64) -> Option<i64> {
        let now_ms = now_ms as i64;
        match self {
            ExpiryUnit::Seconds => amount.checked_mul(1000)?.checked_add(now_ms),
            ExpiryUnit::Milliseconds => amount.checked_add(now_ms),
            ExpiryUnit::UnixSeconds => amount.checked_mul(1000),
            ExpiryUnit::UnixMilliseconds => Some(amount),
        }
    }
}

/// The expiry the engine stores for an absolute time in ms: a time already past (negative
/// included) is stored as 0 ms, which has expired too. The engine keeps any u64 exactly, as
/// Redis keeps any positive i64 (`PEXPIREAT k 9223372036854770000`).
pub fn storable_expiry(absolute_ms: i64) -> u64 {
    absolute_ms.max(0) as u64
}

/// An expiry option of SET, GETEX, SETEX or PSETEX as given: its unit and its amount, not yet
/// checked (GETEX checks it only once the key is found, as Redis 7.2 does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryArg {
    pub unit: ExpiryUnit,
    /// `None`: the argument is not an integer.
    pub amount: Option<i64>,
    /// The command, for the error's text.
    pub command: &'static str,
}

impl ExpiryArg {
    /// The absolute expiry in ms the amount asks for (Redis's `getExpireMillisecondsOrReply`):
    /// a positive integer whose absolute time is positive and does not overflow.
    pub fn absolute_ms(&self, now_ms: u64) -> Result<i64> {
        let amount = self.amount.ok_or(KvError::NotInteger)?;
        let invalid = KvError::InvalidExpire {
            command: self.command,
        };
        if amount <= 0 {
            return Err(invalid);
        }
        self.unit
            .to_absolute_ms(amount, now_ms)
            .filter(|ms| *ms > 0)
            .ok_or(invalid)
    }
}

/// What a write does to the key's TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryChange {
    /// SET without options: the key loses its TTL.
    Clear,
    /// KEEPTTL (and GETEX without options).
    Keep,
    /// PERSIST (GETEX only).
    Persist,
    /// EX/PX/EXAT/PXAT: absolute ms, possibly already past.
    At(i64),
}

/// EXPIRE's NX/XX/GT/LT condition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireCondition {
    /// NX: only if the key has no TTL.
    pub nx: bool,
    /// XX: only if it has one.
    pub xx: bool,
    /// GT: only if the new expiry is later (no TTL counts as infinite).
    pub gt: bool,
    /// LT: only if the new expiry is earlier.
    pub lt: bool,
}

impl ExpireCondition {
    /// Refuses the combinations Redis refuses.
    pub fn check(self) -> Result<ExpireCondition> {
        if self.nx && (self.xx || self.gt || self.lt) {
            return Err(KvError::NxWithOtherCondition);
        }
        if self.gt && self.lt {
            return Err(KvError::GtWithLt);
        }
        Ok(self)
    }

    /// Whether the new expiry may replace `current_ms` (0 = none, which GT/LT treat as
    /// infinite).
    pub fn allows(self, current_ms: u64, new_ms: i64) -> bool {
        let has_ttl = current_ms != 0;
        !(self.nx && has_ttl
            || self.xx && !has_ttl
            || self.gt && (!has_ttl || new_ms <= current_ms as i64)
            || self.lt && has_ttl && new_ms >= current_ms as i64)
    }
}

/// A key's expiry as TTL and friends read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlReading {
    Missing,
    /// A live key without expiry.
    Persistent,
    /// A live key expiring at `expiry_ms`, read at `now_ms`.
    At {
        expiry_ms: u64,
        now_ms: u64,
    },
}

/// Which of the four commands presents the reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtlFormat {
    /// TTL: remaining seconds, rounded to the nearest.
    Seconds,
    /// PTTL: remaining milliseconds.
    Milliseconds,
    /// EXPIRETIME: Unix seconds, rounded to the nearest.
    UnixSeconds,
    /// PEXPIRETIME: Unix milliseconds.
    UnixMilliseconds,
}

impl TtlReading {
    /// Redis's reply: -2 missing, -1 no expiry, else the time in `format`.
    pub fn reply(self, format: TtlFormat) -> i64 {
        let (expiry, now) = match self {
            TtlReading::Missing => return -2,
            TtlReading::Persistent => return -1,
            TtlReading::At { expiry_ms, now_ms } => (expiry_ms, now_ms),
        };
        match format {
            TtlFormat::Seconds => ((expiry.saturating_sub(now) + 500) / 1000) as i64,
            TtlFormat::Milliseconds => expiry.saturating_sub(now) as i64,
            TtlFormat::UnixSeconds => ((expiry + 500) / 1000) as i64,
            TtlFormat::UnixMilliseconds => expiry as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_become_absolute_times_or_refusals() {
        let now = 1_000_000;
        let arg = |unit, amount| ExpiryArg {
            unit,
            amount: Some(amount),
            command: "set",
        };
        assert_eq!(
            arg(ExpiryUnit::Seconds, 5).absolute_ms(now).unwrap(),
            1_005_000
        );
        assert_eq!(
            arg(ExpiryUnit::UnixMilliseconds, 7)
                .absolute_ms(now)
                .unwrap(),
            7
        );
        for (unit, amount) in [
            (ExpiryUnit::Seconds, 0),
            (ExpiryUnit::Milliseconds, -1),
            (ExpiryUnit::Seconds, i64::MAX),
            (ExpiryUnit::UnixSeconds, i64::MAX / 999),
        ] {
            assert!(matches!(
                arg(unit, amount).absolute_ms(now),
                Err(KvError::InvalidExpire { command: "set" })
            ));
        }
        let not_a_number = ExpiryArg {
            unit: ExpiryUnit::Seconds,
            amount: None,
            command: "getex",
        };
        assert!(matches!(
            not_a_number.absolute_ms(now),
            Err(KvError::NotInteger)
        ));
        assert_eq!(storable_expiry(-5), 0);
        assert_eq!(storable_expiry(i64::MAX), i64::MAX as u64);
    }

    #[test]
    fn conditions_treat_no_ttl_as_infinite() {
        let gt = ExpireCondition {
            gt: true,
            ..Default::default()
        };
        let lt = ExpireCondition {
            lt: true,
            ..Default::default()
        };
        assert!(!gt.allows(0, 10));
        assert!(lt.allows(0, 10));
        assert!(gt.allows(5, 10) && !gt.allows(10, 10));
        assert!(lt.allows(15, 10) && !lt.allows(10, 10));
        let nx_xx = ExpireCondition {
            nx: true,
            xx: true,
            ..Default::default()
        };
        assert!(matches!(nx_xx.check(), Err(KvError::NxWithOtherCondition)));
        let gt_lt = ExpireCondition {
            gt: true,
            lt: true,
            ..Default::default()
        };
        assert!(matches!(gt_lt.check(), Err(KvError::GtWithLt)));
    }

    #[test]
    fn readings_round_as_redis_does() {
        let at = TtlReading::At {
            expiry_ms: 10_499,
            now_ms: 1_000,
        };
        assert_eq!(at.reply(TtlFormat::Seconds), 9);
        assert_eq!(at.reply(TtlFormat::Milliseconds), 9_499);
        assert_eq!(at.reply(TtlFormat::UnixSeconds), 10);
        assert_eq!(at.reply(TtlFormat::UnixMilliseconds), 10_499);
        assert_eq!(TtlReading::Missing.reply(TtlFormat::Seconds), -2);
        assert_eq!(
            TtlReading::Persistent.reply(TtlFormat::UnixMilliseconds),
            -1
        );
        // The largest expiry Redis keeps: EXPIRETIME rounds it up without overflowing.
        let far = TtlReading::At {
            expiry_ms: i64::MAX as u64,
            now_ms: 1_700_000_000_000,
        };
        assert_eq!(far.reply(TtlFormat::UnixSeconds), 9_223_372_036_854_776);
    }
}
