//! The leader's side: one snapshot made when a follower first needs one and shared by every
//! follower that does, shipped to each on a thread and a connection of its own.
//!
//! A snapshot (`Prepared`) is the engine's files linked into `cluster/snapshot-out/<n>/` by
//! `Engine::snapshot_into`, the offer (point, names, lengths, CRC-32s) and a compaction pin at
//! its index, so that after installing it a follower is fed from the engine's log from the
//! next index on. It is offered only once the commit index reached its index (the core
//! asserts that a snapshot holds committed entries only). Dropping the last handle deletes
//! the links and releases the pin: the raft thread drops its handle when no transfer runs
//! and every follower matches past the snapshot, when a newer one replaces it, or when the
//! node stops leading.
//!
//! The shipper dials the follower's cluster port (the snapshot hello, then `Offer`), reads
//! where the follower's staged copy stops (`Resume`), sends the rest in chunks of
//! `CHUNK_BYTES` at no more than the rate asked (`--snapshot-rate-mb`: bulk bytes on a
//! connection of their own never queue in front of the peer connection's heartbeats), then
//! `Done`, and waits for `Staged` (the follower checked every file) or `Refused`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flin_engine::Engine;

use super::{
    encode_hello, read_frame, write_chunk, write_frame, Frame, Offer, OfferedFile, CHUNK_BYTES,
    CHUNK_HEADER_BYTES,
};

const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// A write of one chunk, or the follower's answer to the offer, taking longer than this ends
/// the transfer (it resumes on the next attempt).
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the follower may take to check the files after the last chunk (it reads them
/// all once), beyond a second per 100 MB.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// A snapshot linked aside for shipping (see the module doc). Dropping it deletes its files.
pub struct Prepared {
    dir: PathBuf,
    pub offer: Offer,
    /// How long the making took: linking the files (the engine's rotation, seal and links,
    /// under its compaction lock), then reading each for its CRC-32.
    pub linked_in: std::time::Duration,
    pub checksummed_in: std::time::Duration,
    _pin: flin_engine::Pin,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The snapshot shared by the leader's shippers, made by the first that needs one.
pub struct Outbox {
    root: PathBuf,
    current: Mutex<Option<Arc<Prepared>>>,
    made: AtomicU64,
}

impl Outbox {
    /// Snapshots go under `cluster_dir/snapshot-out/`.
    pub fn new(cluster_dir: &Path) -> Outbox {
        Outbox {
            root: cluster_dir.join(super::install::OUTGOING_DIR),
            current: Mutex::new(None),
            made: AtomicU64::new(0),
        }
    }

    /// The current snapshot if it serves a follower that needs entries from `from_index` on
    /// (it holds the state through `from_index - 1` or later), else a new one, which
    /// replaces it.
    pub fn get_or_make(&self, engine: &Engine, from_index: u64) -> Result<Arc<Prepared>, String> {
        let mut current = self.current.lock().expect("outbox lock");
        if let Some(prepared) = &*current {
            if prepared.offer.index + 1 >= from_index {
                return Ok(prepared.clone());
            }
        }
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let prepared = Arc::new(prepare(engine, &self.root.join(n.to_string()))?);
        *current = Some(prepared.clone());
        Ok(prepared)
    }

    /// The current snapshot's index, if there is one.
    pub fn index(&self) -> Option<u64> {
        let current = self.current.lock().expect("outbox lock");
        current.as_ref().map(|prepared| prepared.offer.index)
    }

    /// Drops the outbox's handle on the current snapshot (its files go once no shipper
    /// holds it either).
    pub fn release(&self) {
        self.current.lock().expect("outbox lock").take();
    }
}

/// Links the engine's snapshot into `dir` and reads each file's CRC-32.
fn prepare(engine: &Engine, dir: &Path) -> Result<Prepared, String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("clearing {}: {e}", dir.display()))?;
    }
    // Taken before the files are listed: the entry at the snapshot's index (whose term the
    // follower's next append names) and everything after it stay in the log.
    let started = std::time::Instant::now();
    let pin = engine.pin(engine.last_seq());
    let files = engine
        .snapshot_into(dir)
        .map_err(|e| format!("cannot link a snapshot of the engine: {e}"))?;
    pin.advance(files.seq);
    let linked = std::time::Instant::now();
    let mut prepared = Prepared {
        dir: dir.to_path_buf(),
        offer: Offer {
            index: files.seq,
            term: files.term,
            files: Vec::with_capacity(files.files.len()),
        },
        linked_in: linked - started,
        checksummed_in: std::time::Duration::ZERO,
        _pin: pin,
    };
    for file in &files.files {
        let path = dir.join(&file.name);
        let crc = super::file_crc(&path, file.len)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        prepared.offer.files.push(OfferedFile {
            name: file.name.clone(),
            len: file.len,
            crc,
        });
    }
    prepared.checksummed_in = linked.elapsed();
    Ok(prepared)
}

/// Ships `prepared` to the follower at `addr` (its cluster port): see the module doc. Returns
/// the point the follower staged. `rate_bytes_per_second` 0: no limit. `sent_bytes` counts
/// the chunk bytes sent.
pub fn ship(
    leader: u64,
    addr: SocketAddr,
    prepared: &Prepared,
    rate_bytes_per_second: u64,
    stop: &AtomicBool,
    sent_bytes: &AtomicU64,
) -> Result<(u64, u64), String> {
    let mut stream = TcpStream::connect_timeout(&addr, DIAL_TIMEOUT)
        .map_err(|e| format!("cannot dial {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_read_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&encode_hello(leader))
        .and_then(|()| write_frame(&mut stream, &Frame::Offer(prepared.offer.clone())))
        .map_err(|e| format!("sending the offer: {e}"))?;
    let (first, mut offset) = match read_frame(&mut stream)? {
        Frame::Resume { file, offset } => (file as usize, offset),
        Frame::Refused(why) => return Err(format!("the follower refused: {why}")),
        other => return Err(format!("the follower answered the offer with {other:?}")),
    };
    let files = &prepared.offer.files;
    if first > files.len() || files.get(first).is_some_and(|f| offset > f.len) {
        return Err(format!(
            "the follower asked to resume at file {first} offset {offset}"
        ));
    }
    let started = Instant::now();
    let mut sent = 0u64;
    let mut chunk = vec![0u8; CHUNK_HEADER_BYTES + CHUNK_BYTES];
    for (number, offered) in files.iter().enumerate().skip(first) {
        let path = prepared.dir.join(&offered.name);
        let mut file =
            std::fs::File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| format!("seeking {}: {e}", path.display()))?;
        while offset < offered.len {
            if stop.load(Ordering::Acquire) {
                return Err("stopped (this node no longer leads, or stops)".into());
            }
            let len = CHUNK_BYTES.min((offered.len - offset) as usize);
            let framed = &mut chunk[..CHUNK_HEADER_BYTES + len];
            file.read_exact(&mut framed[CHUNK_HEADER_BYTES..])
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            write_chunk(&mut stream, number as u32, offset, framed)
                .map_err(|e| format!("sending {} at {offset}: {e}", offered.name))?;
            offset += len as u64;
            sent += len as u64;
            sent_bytes.fetch_add(len as u64, Ordering::Relaxed);
            pace(started, sent, rate_bytes_per_second);
        }
        offset = 0;
    }
    write_frame(&mut stream, &Frame::Done).map_err(|e| format!("sending done: {e}"))?;
    let verify = VERIFY_TIMEOUT + Duration::from_secs(prepared.offer.bytes() / 100_000_000);
    stream
        .set_read_timeout(Some(verify))
        .map_err(|e| e.to_string())?;
    match read_frame(&mut stream)? {
        Frame::Staged { index, term }
            if (index, term) == (prepared.offer.index, prepared.offer.term) =>
        {
            Ok((index, term))
        }
        Frame::Refused(why) => Err(format!("the follower refused: {why}")),
        other => Err(format!("the follower answered the transfer with {other:?}")),
    }
}

/// Sleeps until `sent` bytes since `started` are within the rate.
fn pace(started: Instant, sent: u64, rate_bytes_per_second: u64) {
    if rate_bytes_per_second == 0 {
        return;
    }
    let due = Duration::from_secs_f64(sent as f64 / rate_bytes_per_second as f64);
    if let Some(early) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(early);
    }
}

#[cfg(test)]
mod tests {
    use super::super::stage::Staging;
    use super::*;
    use flin_engine::{Config, Namespace};
    use std::net::TcpListener;

    fn engine(dir: &Path) -> Engine {
        let engine = Engine::open(
            Config::directory(dir)
                .segment_bytes(8192)
                .background_compaction(false)
                .logger(Arc::new(|_, _: &str| {})),
        )
        .unwrap();
        super::super::put_keys(&engine, 2_000, "value", 100);
        engine
    }

    /// The point a side of a transfer says was staged, or why not.
    type Staged = Result<(u64, u64), String>;

    /// One transfer over loopback, the follower's side on a thread.
    fn transfer(
        prepared: &Prepared,
        staging: &Arc<Staging>,
        stop: &AtomicBool,
        sent: &AtomicU64,
    ) -> (Staged, Staged) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = {
            let staging = staging.clone();
            std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                staging.receive(stream)
            })
        };
        let shipped = ship(1, addr, prepared, 0, stop, sent);
        (shipped, receiver.join().unwrap())
    }

    /// A transfer cut short resumes from the staged files (the second one sends only what is
    /// missing), and the staged copy is byte for byte the leader's.
    #[test]
    fn a_transfer_cut_short_resumes_where_the_staged_files_stop() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir.path().join("leader"));
        let outbox = Outbox::new(&dir.path().join("cluster-leader"));
        let prepared = outbox.get_or_make(&engine, 1).unwrap();
        assert_eq!(prepared.offer.index, engine.last_seq());
        assert!(prepared.offer.files.len() > 4);
        let staging = Arc::new(Staging::new(&dir.path().join("cluster-follower")));

        // First attempt: stopped after the first chunk.
        let stop = AtomicBool::new(false);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = {
            let staging = staging.clone();
            std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                staging.receive(stream)
            })
        };
        let sent = AtomicU64::new(0);
        let stopper = std::thread::scope(|scope| {
            scope.spawn(|| {
                while sent.load(Ordering::Relaxed) == 0 {
                    std::thread::yield_now();
                }
                stop.store(true, Ordering::Release);
            });
            // A slow rate: the stop lands before the end.
            ship(1, addr, &prepared, 100_000, &stop, &sent)
        });
        assert!(stopper.is_err());
        assert!(receiver.join().unwrap().is_err());
        assert_eq!(staging.verified(), None);
        let first = sent.load(Ordering::Relaxed);
        assert!(first > 0 && first < prepared.offer.bytes());

        // Second attempt: only the rest is sent.
        let staged: u64 = std::fs::read_dir(super::super::stage::files_dir(staging.dir()))
            .unwrap()
            .map(|file| file.unwrap().metadata().unwrap().len())
            .sum();
        assert!(staged > 0);
        let sent = AtomicU64::new(0);
        let (shipped, received) = transfer(&prepared, &staging, &AtomicBool::new(false), &sent);
        assert_eq!(
            sent.load(Ordering::Relaxed),
            prepared.offer.bytes() - staged
        );
        let point = (prepared.offer.index, prepared.offer.term);
        assert_eq!(shipped, Ok(point));
        assert_eq!(received, Ok(point));
        assert_eq!(staging.verified(), Some(point));
        for file in &prepared.offer.files {
            let staged =
                std::fs::read(super::super::stage::files_dir(staging.dir()).join(&file.name))
                    .unwrap();
            let linked = std::fs::read(prepared.dir.join(&file.name)).unwrap();
            assert_eq!(staged, linked[..file.len as usize], "{}", file.name);
        }
        // A third offer of the same snapshot finds everything staged: nothing is sent.
        let sent = AtomicU64::new(0);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = {
            let staging = staging.clone();
            std::thread::spawn(move || staging.receive(listener.accept().unwrap().0))
        };
        assert_eq!(
            ship(1, addr, &prepared, 0, &AtomicBool::new(false), &sent),
            Ok(point)
        );
        assert_eq!(receiver.join().unwrap(), Ok(point));
        assert_eq!(sent.load(Ordering::Relaxed), 0);
    }

    /// Bytes that arrive different from what the offer's CRC-32 says (here the leader's
    /// linked file changed after the offer was made) are caught by the follower's check after
    /// the last byte: refused, and the file deleted to be sent again.
    #[test]
    fn bytes_that_differ_from_the_offer_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir.path().join("leader"));
        let outbox = Outbox::new(&dir.path().join("cluster-leader"));
        let prepared = outbox.get_or_make(&engine, 1).unwrap();
        let victim = prepared.offer.files.last().unwrap();
        let path = prepared.dir.join(&victim.name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[victim.len as usize / 2] ^= 0x10;
        // A new file under the link's name, so the engine's own file stays as it was.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let staging = Arc::new(Staging::new(&dir.path().join("cluster-follower")));
        let (shipped, received) = transfer(
            &prepared,
            &staging,
            &AtomicBool::new(false),
            &AtomicU64::new(0),
        );
        let why = received.unwrap_err();
        assert!(why.contains("CRC") && why.contains(&victim.name), "{why}");
        assert!(shipped.unwrap_err().contains("refused"));
        assert_eq!(staging.verified(), None);
        assert!(!super::super::stage::files_dir(staging.dir())
            .join(&victim.name)
            .exists());
    }

    /// The snapshot's files outlive later compactions, and go when its last handle does.
    #[test]
    fn a_snapshot_s_links_go_with_its_last_handle() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&dir.path().join("leader"));
        let outbox = Outbox::new(&dir.path().join("cluster"));
        let prepared = outbox.get_or_make(&engine, 1).unwrap();
        let again = outbox.get_or_make(&engine, prepared.offer.index).unwrap();
        assert!(Arc::ptr_eq(&prepared, &again), "shared while it serves");
        for key in 0..2_000u32 {
            engine
                .put(Namespace::Kv, format!("k{key}").as_bytes(), b"new", 0)
                .unwrap();
        }
        engine.compact(0.0).unwrap();
        for file in &prepared.offer.files {
            let path = prepared.dir.join(&file.name);
            assert_eq!(super::super::file_crc(&path, file.len).unwrap(), file.crc);
        }
        let linked = prepared.dir.clone();
        drop((again, prepared));
        assert!(linked.exists(), "the outbox still holds it");
        outbox.release();
        assert!(!linked.exists());
    }
}
