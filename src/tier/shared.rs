//! The shared hot tier (`cluster.shared_hot`, `docs/design/cluster-cache.md`): a read
//! split into one piece per hot chunk, each piece from the near cache, from the chunk's
//! owner, or (when this node owns it, or the owner fails at any point) from this node's
//! own hot tier, within the same request; the owner's side of it; and warming only the
//! chunks this node owns.
//!
//! Which node owns a chunk is `cluster::Peers`'s (rendezvous hashing over the live
//! nodes). This module must not choose owners, and it must not serve a piece of any
//! version other than the row it was given: every source is keyed by the version.

use super::Tier;
use super::hot::{Hot, Version};
use super::read::version_of;
use crate::backend::ByteStream;
use crate::catalog::ObjectRecord;
use crate::cluster::{Peers, VersionRef};
use crate::config::FillMode;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::BucketPlan;
use futures::StreamExt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// What a piece needs to be read here instead of through its owner.
#[derive(Clone)]
struct Here {
    tier: Tier,
    b: Arc<BucketPlan>,
    rec: ObjectRecord,
    hot: Hot,
    mode: FillMode,
    v: Version,
    /// `v`'s 128-bit name, made once for every piece.
    vh: u128,
}

impl Here {
    async fn read(self, range: Range<u64>) -> Result<ByteStream> {
        let open = self.tier.opener(&self.b, &self.rec);
        self.hot.read(self.v, range, self.mode, open).await
    }
}

impl Tier {
    /// `range` of `rec` piece by piece, one piece per hot chunk, each from where
    /// [`Tier::open_piece`] finds it. The first piece is opened before the answer starts,
    /// the others as the client reads.
    pub(super) async fn read_hot_shared(
        &self,
        peers: Peers,
        b: &Arc<BucketPlan>,
        rec: &ObjectRecord,
        range: Range<u64>,
        (hot, mode): (&Hot, FillMode),
    ) -> Result<ByteStream> {
        let cs = hot.settings().chunk_size;
        let pieces: Vec<Range<u64>> = (range.start / cs..=(range.end - 1) / cs)
            .map(|i| (i * cs).max(range.start)..((i + 1) * cs).min(range.end))
            .collect();
        let v = version_of(rec);
        let vh = v.hash();
        let here = Here { tier: self.clone(), b: b.clone(), rec: rec.clone(), hot: hot.clone(), mode, v, vh };
        let open = move |piece: Range<u64>| {
            let (here, peers) = (here.clone(), peers.clone());
            async move { here.tier.clone().open_piece(peers, here, piece, cs).await }
        };
        let mut rest = pieces.into_iter();
        let Some(first) = rest.next() else { return Ok(futures::stream::empty().boxed()) };
        let first = open.clone()(first).await?;
        let later = futures::stream::iter(rest)
            .then(move |piece| open.clone()(piece))
            .map(|r| match r {
                Ok(s) => s,
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten();
        Ok(first.chain(later).boxed())
    }

    /// One piece (within chunk `piece.start / cs`): from the near cache, else from the
    /// chunk's owner (finished here if the owner fails part-way), else here.
    async fn open_piece(self, peers: Peers, here: Here, piece: Range<u64>, cs: u64) -> Result<ByteStream> {
        let (v, vh) = (&here.v, here.vh);
        let idx = piece.start / cs;
        let chunk = idx * cs..((idx + 1) * cs).min(v.size);
        if let Some(bytes) = self.inner.near.as_ref().and_then(|n| n.get(vh, idx)) {
            let part = bytes.slice((piece.start - chunk.start) as usize..(piece.end - chunk.start) as usize);
            return Ok(futures::stream::once(async move { Ok(part) }).boxed());
        }
        let named =
            VersionRef { bucket: &v.bucket, key: &v.key, etag: &v.etag, mtime_ms: v.mtime_ms, size: v.size, hash: vh };
        let Some((owner, s)) = peers.read_hot(&named, idx, piece.clone()).await else {
            return here.read(piece).await;
        };
        let s = match &self.inner.near {
            // A whole chunk is kept near once all of it has come.
            Some(_) if piece == chunk => self.keep_near(s, vh, idx, chunk.end - chunk.start),
            _ => s,
        };
        Ok(or_here(s, piece, (peers, owner), here))
    }

    /// Passes `s` (chunk `idx` of version `vh`, `len` bytes, from its owner) through, and
    /// keeps it in the near cache once all of it has come.
    fn keep_near(&self, s: ByteStream, vh: u128, idx: u64, len: u64) -> ByteStream {
        let tier = self.clone();
        let mut buf = bytes::BytesMut::new();
        s.map(move |r| {
            if let Ok(b) = &r {
                buf.extend_from_slice(b);
                if buf.len() as u64 == len
                    && let Some(near) = &tier.inner.near
                {
                    near.keep(vh, idx, buf.split().freeze());
                }
            }
            r
        })
        .boxed()
    }

    /// For a peer that found this node to own the chunks of `range`: that range of the
    /// version (bucket, key; ETag, modification time, size) through this node's hot tier
    /// only, and whether it held all of it already (a hit). `NotFound` when the catalog
    /// names another version now.
    pub async fn read_hot_here(
        &self,
        (bucket, key): (&str, &str),
        (etag, mtime_ms, size): (&str, i64, u64),
        range: Range<u64>,
    ) -> Result<(bool, ByteStream)> {
        let b = self.plan(bucket).await?;
        let Some((hot, mode)) = self.hot_for(&b) else {
            return Err(Error::new(ErrorKind::Conflict, format!("bucket {bucket} does not use the hot tier here")));
        };
        let rec = match self.inner.catalog.get_object(bucket, key).await? {
            Some(r) if r.etag == etag && r.last_modified_ms == mtime_ms && r.size == size && r.staging.is_none() => r,
            _ => return Err(Error::new(ErrorKind::NotFound, "the catalog names another version")),
        };
        let v = version_of(&rec);
        let hit = hot.holds(&v, range.clone());
        Ok((hit, hot.read(v, range, mode, self.opener(&b, &rec)).await?))
    }

    /// Warms the chunks of `rec` this node should hold: all of them, or with
    /// `cluster.shared_hot` those it owns. Returns the bytes fetched.
    pub(super) async fn warm_one(&self, hot: &Hot, b: &Arc<BucketPlan>, rec: &ObjectRecord) -> Result<u64> {
        let v = version_of(rec);
        let peers = match self.inner.peers.get() {
            Some(p) if self.inner.shared_hot => p,
            _ => return hot.warm(v, 0..rec.size, self.opener(b, rec)).await,
        };
        let (cs, vh) = (hot.settings().chunk_size, v.hash());
        let mut fetched = 0;
        for idx in 0..rec.size.div_ceil(cs) {
            if peers.owns(vh, idx).await {
                let chunk = idx * cs..((idx + 1) * cs).min(rec.size);
                fetched += hot.warm(v.clone(), chunk, self.opener(b, rec)).await?;
            }
        }
        Ok(fetched)
    }
}

/// `s`, a piece from its owner; when the owner fails or stalls (`cluster.peer_timeout`)
/// part-way, the owner is skipped and the rest of the piece is read `here`, so the client
/// sees no error.
fn or_here(s: ByteStream, piece: Range<u64>, (peers, owner): (Peers, String), here: Here) -> ByteStream {
    enum State {
        Owner(ByteStream, u64, Box<Here>),
        Here(ByteStream),
        Done,
    }
    let (end, wait): (u64, Duration) = (piece.end, peers.timeout());
    futures::stream::unfold(State::Owner(s, piece.start, Box::new(here)), move |state| {
        let (peers, owner) = (peers.clone(), owner.clone());
        async move {
            match state {
                State::Owner(mut s, pos, here) => {
                    let why = match tokio::time::timeout(wait, s.next()).await {
                        Ok(Some(Ok(b))) => {
                            let pos = pos + b.len() as u64;
                            return Some((Ok(b), State::Owner(s, pos, here)));
                        }
                        Ok(None) if pos >= end => return None,
                        Ok(None) => "ended early".to_owned(),
                        Ok(Some(Err(e))) => e.to_string(),
                        Err(_) => "stalled longer than cluster.peer_timeout".to_owned(),
                    };
                    peers.skip(&owner, &why);
                    ::metrics::counter!("strata_peer_hot_resumed_total").increment(1);
                    match here.read(pos..end).await {
                        Ok(mut h) => h.next().await.map(|item| (item, State::Here(h))),
                        Err(e) => Some((Err(e), State::Done)),
                    }
                }
                State::Here(mut h) => h.next().await.map(|item| (item, State::Here(h))),
                State::Done => None,
            }
        }
    })
    .boxed()
}
