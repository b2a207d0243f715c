//! Key-value commands: [`Kv`], the group [`super::Client::kv`] returns.
//! Keys and values are byte strings (`&str`, `&[u8]`, `Vec<u8>` all work).

use std::collections::VecDeque;
use std::time::Duration;

use super::decode::{self, ScanPage, Ttl};
use super::error::Result;
use super::Client;
use crate::binary::{self, SetCondition};

/// Keys a SCAN page asks for when the caller does not say.
pub const DEFAULT_SCAN_COUNT: u32 = 100;

/// SET's options: a time to live and an NX/XX condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) condition: SetCondition,
}

impl Default for SetOptions {
    fn default() -> Self {
        SetOptions {
            ttl: None,
            condition: SetCondition::Always,
        }
    }
}

impl SetOptions {
    /// No TTL, no condition (a plain SET).
    pub fn new() -> SetOptions {
        SetOptions::default()
    }

    /// The key expires this long after the write (millisecond precision;
    /// the server refuses zero).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Write only if the key does not exist (Redis NX).
    pub fn if_absent(mut self) -> Self {
        self.condition = SetCondition::IfAbsent;
        self
    }

    /// Write only if the key exists (Redis XX).
    pub fn if_present(mut self) -> Self {
        self.condition = SetCondition::IfPresent;
        self
    }

    pub(crate) fn ttl_ms(&self) -> Option<u64> {
        self.ttl.map(duration_ms)
    }
}

/// Milliseconds of a duration, saturating at u64::MAX.
pub(crate) fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Key-value commands on a [`Client`]'s pool; each call uses one pooled
/// connection for one request and response.
#[derive(Debug, Clone, Copy)]
pub struct Kv<'c> {
    client: &'c Client,
}

impl<'c> Kv<'c> {
    pub(crate) fn new(client: &'c Client) -> Kv<'c> {
        Kv { client }
    }

    /// The value of `key`, `None` if there is no such key.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.client.call(
            |out, id| binary::encode_get(out, id, key.as_ref()),
            decode::value,
        )
    }

    /// Writes `key` (no TTL: an existing TTL is cleared, as Redis's SET).
    pub fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.client.call(
            |out, id| {
                let (key, value) = (key.as_ref(), value.as_ref());
                binary::encode_set(out, id, key, value, None, SetCondition::Always)
            },
            decode::done,
        )
    }

    /// Writes `key` with a TTL and/or a condition; false if the condition
    /// was not met (nothing written).
    pub fn set_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: SetOptions,
    ) -> Result<bool> {
        self.client.call(
            |out, id| {
                let (key, value) = (key.as_ref(), value.as_ref());
                binary::encode_set(out, id, key, value, options.ttl_ms(), options.condition)
            },
            decode::stored,
        )
    }

    /// Deletes `key`; true if it existed.
    pub fn del(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.client.call(
            |out, id| binary::encode_del(out, id, key.as_ref()),
            decode::flag,
        )
    }

    /// True if `key` exists.
    pub fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.client.call(
            |out, id| binary::encode_exists(out, id, key.as_ref()),
            decode::flag,
        )
    }

    /// Adds 1 to the integer at `key` (a missing key counts as 0); returns
    /// the new value.
    pub fn incr(&self, key: impl AsRef<[u8]>) -> Result<i64> {
        self.client.call(
            |out, id| binary::encode_incr(out, id, key.as_ref()),
            decode::integer,
        )
    }

    /// Adds `delta` to the integer at `key`; returns the new value.
    pub fn incr_by(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        self.client.call(
            |out, id| binary::encode_incr_by(out, id, key.as_ref(), delta),
            decode::integer,
        )
    }

    /// Makes `key` expire `ttl` from now; false if there is no such key.
    pub fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool> {
        self.client.call(
            |out, id| binary::encode_expire(out, id, key.as_ref(), duration_ms(ttl)),
            decode::flag,
        )
    }

    /// How long `key` has left.
    pub fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Ttl> {
        self.client.call(
            |out, id| binary::encode_ttl(out, id, key.as_ref()),
            decode::ttl,
        )
    }

    /// The values of `keys`, in order, `None` for missing ones.
    pub fn mget<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        self.client.call(
            |out, id| binary::encode_mget(out, id, &keys),
            decode::values,
        )
    }

    /// Writes every pair in one atomic batch (one log record: all or none
    /// survive a crash).
    pub fn mset<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, pairs: &[(K, V)]) -> Result<()> {
        let pairs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(key, value)| (key.as_ref(), value.as_ref()))
            .collect();
        self.client
            .call(|out, id| binary::encode_mset(out, id, &pairs), decode::done)
    }

    /// Deletes `keys`; returns how many existed.
    pub fn mdel<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64> {
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        self.client
            .call(|out, id| binary::encode_mdel(out, id, &keys), decode::count)
    }

    /// One SCAN step: about `count` keys from `cursor` (0 starts), those
    /// matching the glob `pattern` if one is given. Iteration is done when
    /// the returned cursor is 0. [`Kv::scan`] does the looping.
    pub fn scan_page(&self, cursor: u64, count: u32, pattern: Option<&[u8]>) -> Result<ScanPage> {
        self.client.call(
            |out, id| binary::encode_scan(out, id, cursor, count, pattern),
            decode::page,
        )
    }

    /// Every key (or, with [`Scan::pattern`], every matching key), fetched
    /// a page at a time as the iterator is consumed. Like Redis's SCAN: a
    /// key present for the whole iteration is returned; keys added or
    /// removed meanwhile may or may not be.
    pub fn scan(&self) -> Scan<'c> {
        Scan {
            kv: *self,
            pattern: None,
            count: DEFAULT_SCAN_COUNT,
            cursor: 0,
            page: VecDeque::new(),
            finished: false,
        }
    }
}

/// Iterator over keys, from [`Kv::scan`]. Stops after the first error
/// (which it yields).
#[derive(Debug)]
pub struct Scan<'c> {
    kv: Kv<'c>,
    pattern: Option<Vec<u8>>,
    count: u32,
    cursor: u64,
    page: VecDeque<Vec<u8>>,
    finished: bool,
}

impl Scan<'_> {
    /// Only keys matching this glob (`*`, `?`, `[a-z]`, `\` escapes).
    pub fn pattern(mut self, pattern: impl Into<Vec<u8>>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// Keys asked for per page (SCAN's COUNT hint; at least 1). Not named
    /// `count`, which is `Iterator::count`.
    pub fn page_size(mut self, count: u32) -> Self {
        self.count = count.max(1);
        self
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(key) = self.page.pop_front() {
                return Some(Ok(key));
            }
            if self.finished {
                return None;
            }
            match self
                .kv
                .scan_page(self.cursor, self.count, self.pattern.as_deref())
            {
                Ok(page) => {
                    self.cursor = page.cursor;
                    self.finished = page.cursor == 0;
                    self.page.extend(page.keys);
                }
                Err(error) => {
                    self.finished = true;
                    return Some(Err(error));
                }
            }
        }
    }
}
