//! [`Pipeline`]: queue many requests, send them in one write on one
//! connection, read the replies in order.
//!
//! ```no_run
//! use flin_net::client::{Client, Reply};
//!
//! let client = Client::connect("127.0.0.1:7380")?;
//! let mut pipeline = client.pipeline();
//! pipeline.kv().set("a", "1").incr("a").get("a");
//! let replies = pipeline.execute()?;
//! assert_eq!(replies[1].as_ref().ok(), Some(&Reply::Integer(2)));
//! # Ok::<(), flin_net::ClientError>(())
//! ```

use std::time::Duration;

use super::decode::{Reply, ReplyKind};
use super::error::{Error, Result, ServerError};
use super::kv::{duration_ms, SetOptions};
use super::{cluster, Client};
use crate::binary::{self, SetCondition};

/// A cluster node's refusals among one send's replies.
#[derive(Debug, Default)]
struct Refused {
    /// Replies that were `MOVED`, `CLUSTERDOWN` or `TRYAGAIN`: requests that did not run.
    count: usize,
    /// One of them was a `MOVED`.
    moved: bool,
    /// The node the pipeline went to.
    sent_to: Option<std::net::SocketAddr>,
}

/// Requests waiting to be sent together. Reusable: `execute` empties it and
/// keeps its buffer.
#[derive(Debug)]
pub struct Pipeline<'c> {
    client: &'c Client,
    /// Encoded frames; their request ids are filled in when sent.
    frames: Vec<u8>,
    /// How to decode each request's response, in order.
    kinds: Vec<ReplyKind>,
    /// The first request an encoder refused (over a limit); `execute`
    /// reports it and sends nothing.
    refused: Option<crate::Error>,
}

impl<'c> Pipeline<'c> {
    pub(crate) fn new(client: &'c Client) -> Pipeline<'c> {
        Pipeline {
            client,
            frames: Vec::new(),
            kinds: Vec::new(),
            refused: None,
        }
    }

    /// Key-value requests.
    pub fn kv(&mut self) -> KvPipeline<'_, 'c> {
        KvPipeline { pipeline: self }
    }

    /// Queues a PING.
    pub fn ping(&mut self, payload: &[u8]) -> &mut Self {
        self.push(ReplyKind::Pong, |out| binary::encode_ping(out, 0, payload));
        self
    }

    /// Queues a command by name (`["APPEND", "k", "v"]`): [`Reply::Command`].
    pub fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> &mut Self {
        self.push(ReplyKind::Command, |out| binary::encode_call(out, 0, args));
        self
    }

    /// Requests queued.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// True if nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Drops every queued request.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.kinds.clear();
        self.refused = None;
    }

    /// Sends every queued request in one write on one pooled connection
    /// and reads the replies, in request order, each checked against its
    /// request's id. One entry per request: its reply, or the server's
    /// error for that request alone (the others are unaffected, as in
    /// Redis). The pipeline is empty afterwards, whatever the outcome.
    ///
    /// The outer error is for the pipeline as a whole: a request refused
    /// before sending ([`Error::Request`]: nothing was sent), or a network
    /// or protocol failure midway, after which some requests may have been
    /// applied and none is resent. A client of a cluster resends a pipeline
    /// that a node refused as a whole before running any of it (a follower's
    /// `MOVED`s; `super::cluster`), within its retry budget; a pipeline
    /// refused in part returns those refusals as server errors, and later
    /// calls go to the leader a `MOVED` named. A pipeline whose replies pass the
    /// server's output buffer limit (256 MiB by default) is disconnected.
    pub fn execute(&mut self) -> Result<Vec<std::result::Result<Reply, ServerError>>> {
        let outcome = self.send_and_receive();
        self.clear();
        outcome
    }

    fn send_and_receive(&mut self) -> Result<Vec<std::result::Result<Reply, ServerError>>> {
        if let Some(error) = self.refused.take() {
            return Err(Error::Request(error));
        }
        if self.kinds.is_empty() {
            return Ok(Vec::new());
        }
        if !self.client.pool.is_cluster() {
            return self.send_once(false).map(|(replies, _)| replies);
        }
        // A cluster: a pipeline every node refused before running any of it (a follower's
        // MOVEDs, an election's CLUSTERDOWNs) is sent again as a whole; anything else is
        // returned as it came, since some of it ran (see `super::cluster`).
        let mut budget = cluster::Budget::start(self.client.pool.options.retry);
        loop {
            budget.attempt();
            let (replies, refused) = self.send_once(true)?;
            if refused.count < replies.len() {
                return Ok(replies);
            }
            if let Some(addr) = refused.sent_to {
                budget.note_tried(addr);
            }
            let last = replies
                .into_iter()
                .last()
                .and_then(|reply| reply.err())
                .expect("a refused pipeline has an error reply");
            self.client
                .wait_or_give_up(&mut budget, refused.moved, Error::Server(last))?;
        }
    }

    /// One send of the whole pipeline on one pooled connection. With `cluster`, the replies
    /// that are a node's refusals are counted and a `MOVED` routes the pool to the leader.
    fn send_once(
        &self,
        cluster: bool,
    ) -> Result<(Vec<std::result::Result<Reply, ServerError>>, Refused)> {
        let mut refused = Refused::default();
        let mut connection = self.client.checkout()?;
        if cluster {
            refused.sent_to = Some(connection.addr());
        }
        connection.queue_encoded(&self.frames);
        connection.flush()?;
        let mut replies = Vec::with_capacity(self.kinds.len());
        for kind in &self.kinds {
            let response = connection.receive()?;
            if cluster {
                if let Some(cluster::Answer::Refused(refusal)) = cluster::refusal(&response) {
                    refused.count += 1;
                    if let cluster::Refusal::Moved(leader) = refusal {
                        self.client.pool.set_leader(leader);
                        refused.moved = true;
                    }
                }
            }
            match kind.decode(&response) {
                Ok(reply) => replies.push(Ok(reply)),
                Err(Error::Server(error)) => replies.push(Err(error)),
                Err(error) => {
                    connection.mark_broken();
                    return Err(error);
                }
            }
        }
        Ok((replies, refused))
    }

    /// Encodes one request with a placeholder id (0), unless an earlier one
    /// was refused.
    fn push(&mut self, kind: ReplyKind, encode: impl FnOnce(&mut Vec<u8>) -> crate::Result<()>) {
        if self.refused.is_some() {
            return;
        }
        match encode(&mut self.frames) {
            Ok(()) => self.kinds.push(kind),
            Err(error) => self.refused = Some(error),
        }
    }
}

/// Key-value requests for a [`Pipeline`]: the methods of
/// [`super::Kv`], queued instead of sent. Each returns `&mut Self` so calls
/// chain; the reply of each is the [`Reply`] variant its doc names.
#[derive(Debug)]
pub struct KvPipeline<'p, 'c> {
    pipeline: &'p mut Pipeline<'c>,
}

impl KvPipeline<'_, '_> {
    /// GET: [`Reply::Value`].
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.pipeline.push(ReplyKind::Value, |out| {
            binary::encode_get(out, 0, key.as_ref())
        });
        self
    }

    /// SET: [`Reply::Done`].
    pub fn set(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Self {
        self.pipeline.push(ReplyKind::Done, |out| {
            let (key, value) = (key.as_ref(), value.as_ref());
            binary::encode_set(out, 0, key, value, None, SetCondition::Always)
        });
        self
    }

    /// SET with a TTL or condition: [`Reply::Stored`].
    pub fn set_with(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: SetOptions,
    ) -> &mut Self {
        self.pipeline.push(ReplyKind::Stored, |out| {
            let (key, value) = (key.as_ref(), value.as_ref());
            binary::encode_set(out, 0, key, value, options.ttl_ms(), options.condition)
        });
        self
    }

    /// DEL: [`Reply::Flag`].
    pub fn del(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.pipeline.push(ReplyKind::Flag, |out| {
            binary::encode_del(out, 0, key.as_ref())
        });
        self
    }

    /// EXISTS: [`Reply::Flag`].
    pub fn exists(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.pipeline.push(ReplyKind::Flag, |out| {
            binary::encode_exists(out, 0, key.as_ref())
        });
        self
    }

    /// INCR: [`Reply::Integer`].
    pub fn incr(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.pipeline.push(ReplyKind::Integer, |out| {
            binary::encode_incr(out, 0, key.as_ref())
        });
        self
    }

    /// INCRBY: [`Reply::Integer`].
    pub fn incr_by(&mut self, key: impl AsRef<[u8]>, delta: i64) -> &mut Self {
        self.pipeline.push(ReplyKind::Integer, |out| {
            binary::encode_incr_by(out, 0, key.as_ref(), delta)
        });
        self
    }

    /// EXPIRE: [`Reply::Flag`].
    pub fn expire(&mut self, key: impl AsRef<[u8]>, ttl: Duration) -> &mut Self {
        self.pipeline.push(ReplyKind::Flag, |out| {
            binary::encode_expire(out, 0, key.as_ref(), duration_ms(ttl))
        });
        self
    }

    /// TTL: [`Reply::Ttl`].
    pub fn ttl(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        self.pipeline.push(ReplyKind::Ttl, |out| {
            binary::encode_ttl(out, 0, key.as_ref())
        });
        self
    }

    /// MGET: [`Reply::Values`].
    pub fn mget<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> &mut Self {
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        self.pipeline
            .push(ReplyKind::Values, |out| binary::encode_mget(out, 0, &keys));
        self
    }

    /// MSET: [`Reply::Done`].
    pub fn mset<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, pairs: &[(K, V)]) -> &mut Self {
        let pairs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(key, value)| (key.as_ref(), value.as_ref()))
            .collect();
        self.pipeline
            .push(ReplyKind::Done, |out| binary::encode_mset(out, 0, &pairs));
        self
    }

    /// MDEL: [`Reply::Count`].
    pub fn mdel<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> &mut Self {
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        self.pipeline
            .push(ReplyKind::Count, |out| binary::encode_mdel(out, 0, &keys));
        self
    }

    /// One SCAN step: [`Reply::Page`].
    pub fn scan_page(&mut self, cursor: u64, count: u32, pattern: Option<&[u8]>) -> &mut Self {
        self.pipeline.push(ReplyKind::Page, |out| {
            binary::encode_scan(out, 0, cursor, count, pattern)
        });
        self
    }
}
