//! The catalog conformance suite: every test runs against SQLite and PostgreSQL.
//!
//! PostgreSQL comes from `STRATA_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test makes and drops its own
//! database. `scripts/test` starts a server when none answers.

use super::*;
use std::collections::BTreeMap;

struct Db {
    catalog: Catalog,
    url: String,
    drop_pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    Db { catalog: Catalog::connect(&url).await.expect("sqlite catalog"), url, drop_pg: None, _dir: Some(dir) }
}

async fn postgres() -> Db {
    use sqlx::Connection;
    let admin = std::env::var("STRATA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {admin} ({e}); run scripts/test, which starts one, or set STRATA_TEST_POSTGRES")
    });
    let name = format!("strata_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).expect("URL has a database");
    let url = format!("{base}/{name}");
    let catalog = Catalog::connect(&url).await.expect("postgres catalog");
    Db { catalog, url, drop_pg: Some((admin, name)), _dir: None }
}

impl Db {
    async fn finish(self) {
        self.catalog.close().await;
        if let Some((admin, name)) = self.drop_pg {
            use sqlx::Connection;
            let mut conn = sqlx::AnyConnection::connect(&admin).await.expect("admin connection");
            sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut conn).await.expect("drop");
        }
    }
}

fn obj(bucket: &str, key: &str, size: u64) -> ObjectRecord {
    ObjectRecord {
        bucket: bucket.into(),
        key: key.into(),
        size,
        etag: format!("etag-{key}"),
        last_modified_ms: 1_700_000_000_000,
        backend: "local".into(),
        headers: ObjectHeaders { content_type: Some("image/png".into()), ..Default::default() },
        user_meta: BTreeMap::from([("owner".into(), "ann".into())]),
        ..Default::default()
    }
}

fn bucket(name: &str) -> BucketRecord {
    BucketRecord { name: name.into(), backend: "local".into(), prefix: format!("{name}/"), created_ms: 1 }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test] async fn $name() { let db = super::sqlite().await; super::$name(&db.catalog).await; db.finish().await; })*
        }
        mod on_postgres {
            $(#[tokio::test] async fn $name() { let db = super::postgres().await; super::$name(&db.catalog).await; db.finish().await; })*
        }
    };
}

conformance!(
    access_rules_round_trip,
    buckets_lifecycle,
    objects_round_trip,
    listing_delimiter_and_markers,
    listing_is_bytewise,
    uploads_and_parts,
    journal_order_and_completion,
    journal_failures_lag_and_repair,
    journaled_writes_of_one_key_form_one_order,
);

fn write(entries: &[NewEntry]) -> JournalWrite<'static> {
    JournalWrite { node: "n1", entries: entries.to_vec(), upload: None, check: &|_| Ok(()) }
}

/// Issue 15: journaled writes of one key, racing on separate connections, form one order.
/// Only the first sees no unfinished entry and may write its store inline; every later one
/// queues; the row is the write whose entry is last. A failed precondition changes nothing,
/// and a row refreshed from its store never replaces a newer write.
async fn journaled_writes_of_one_key_form_one_order(c: &Catalog) {
    c.create_bucket(&bucket("jo")).await.unwrap();
    let racers = (0..24).map(|i| {
        let c = c.clone();
        tokio::spawn(async move {
            let o = ObjectRecord { etag: format!("v{i}"), staging: Some(format!("s{i}")), ..obj("jo", "k", 10) };
            let e = put_entry("a", &o.etag, o.staging.as_deref(), EntryState::Uploading);
            let j = c.put_object_journaled(&o, write(&[e])).await.unwrap();
            (j.seqs[0], j.entries[0].state, o.etag)
        })
    });
    let mut done: Vec<_> = futures::future::join_all(racers).await.into_iter().map(Result::unwrap).collect();
    done.sort_by_key(|d| d.0);
    let inline: Vec<_> = done.iter().filter(|d| d.1 == EntryState::Uploading).collect();
    assert_eq!(inline.len(), 1, "exactly one racer found the store free: {done:?}");
    assert_eq!(inline[0].0, done[0].0, "and it is the first in the key's order");
    let row = c.get_object("jo", "k").await.unwrap().unwrap();
    assert_eq!(row.etag, done[23].2, "the row is the last write in the key's order");
    let refused = |_: Option<&ObjectRecord>| Err(Error::new(ErrorKind::PreconditionFailed, "no"));
    let o = ObjectRecord { etag: "late".into(), ..obj("jo", "k", 10) };
    let w = JournalWrite { check: &refused, ..write(&[put_entry("a", "late", None, EntryState::Pending)]) };
    let e = c.put_object_journaled(&o, w).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PreconditionFailed);
    assert_eq!(c.get_object("jo", "k").await.unwrap().unwrap().etag, row.etag, "a refused write changes nothing");
    assert_eq!(c.journal_lag().await.unwrap()[0].entries, 24, "and adds no entry");
    let stale = ObjectRecord { etag: "older".into(), ..row.clone() };
    assert!(!c.replace_object_if(&stale, &o).await.unwrap(), "a refresh of an older row is refused");
    assert!(c.replace_object_if(&row, &o).await.unwrap());
    assert_eq!(c.get_object("jo", "k").await.unwrap().unwrap().etag, "late");
}

fn put_entry(store: &str, etag: &str, staging: Option<&str>, state: EntryState) -> NewEntry {
    NewEntry {
        store: store.into(),
        op: JournalOp::Put,
        etag: etag.into(),
        size: 10,
        staging: staging.map(str::to_owned),
        state,
    }
}

/// The journal's SQL: entries per key and store in order, closing them updates `behind`
/// and frees the staging file only with the last one, deletes queue behind puts.
async fn journal_order_and_completion(c: &Catalog) {
    c.create_bucket(&bucket("jb")).await.unwrap();
    let mut o = ObjectRecord { staging: Some("s1".into()), behind: vec!["a".into(), "b".into()], ..obj("jb", "k", 10) };
    o.etag = "e1".into();
    let entries = [
        put_entry("a", "e1", Some("s1"), EntryState::Uploading),
        put_entry("b", "e1", Some("s1"), EntryState::Pending),
    ];
    let seqs = c.put_object_journaled(&o, write(&entries)).await.unwrap().seqs;
    assert_eq!(seqs.len(), 2);
    assert_eq!(c.get_object("jb", "k").await.unwrap().unwrap().behind, ["a", "b"]);
    let mut stores = c.journal_stores("jb", "k").await.unwrap();
    stores.sort();
    assert_eq!(stores, ["a", "b"]);
    // A delete of the key queues behind both puts; only the first entry per store is ready.
    let del = NewEntry {
        op: JournalOp::Delete,
        etag: String::new(),
        staging: None,
        ..put_entry("b", "", None, EntryState::Pending)
    };
    let j = c.delete_object_journaled("jb", "k", write(&[del])).await.unwrap();
    let (gone, dseq) = (j.old, j.seqs);
    assert_eq!(gone.map(|g| g.etag).as_deref(), Some("e1"));
    assert!(dseq[0] > seqs[1]);
    let ready = c.journal_ready("n1", i64::MAX, 10).await.unwrap();
    assert_eq!(
        ready.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [seqs[1]],
        "uploading and queued entries are not ready"
    );
    assert!(c.journal_ready("n2", i64::MAX, 10).await.unwrap().is_empty(), "another node's entries are not ours");
    assert!(c.journal_claim(seqs[1]).await.unwrap());
    assert!(!c.journal_claim(seqs[1]).await.unwrap(), "a claimed entry is not claimed twice");
    // Re-create the row as the version the entries wrote, then close them one by one.
    c.put_object(&o).await.unwrap();
    let [a, b] = [&ready[0], &ready[0]].map(|e| e.clone());
    let a = JournalEntry { seq: seqs[0], store: "a".into(), ..a };
    let freed = c.journal_done_many(&[a]).await.unwrap();
    assert_eq!(freed, [false], "entry b still needs the staging file");
    let row = c.get_object("jb", "k").await.unwrap().unwrap();
    assert_eq!((row.behind.clone(), row.staging.clone()), (vec!["b".to_owned()], Some("s1".to_owned())));
    assert!(c.staging_in_use("n1").await.unwrap().contains("s1"));
    assert_eq!(c.journal_done_many(&[b]).await.unwrap(), [true]);
    let row = c.get_object("jb", "k").await.unwrap().unwrap();
    assert!(row.behind.is_empty() && row.staging.is_none(), "{row:?}");
    let ready = c.journal_ready("n1", i64::MAX, 10).await.unwrap();
    assert_eq!(ready.iter().map(|e| (e.seq, e.op)).collect::<Vec<_>>(), [(dseq[0], JournalOp::Delete)]);
    assert!(
        matches!(c.delete_bucket("jb").await, Err(e) if e.kind() == ErrorKind::BucketNotEmpty),
        "pending work keeps the bucket"
    );
}

/// Failures keep their error, `uploading` entries come back when unclaimed and at restart,
/// stuck ones on request, and the lag, stuck list and scrub repairs read back on both databases.
async fn journal_failures_lag_and_repair(c: &Catalog) {
    c.create_bucket(&bucket("jf")).await.unwrap();
    let o = ObjectRecord { staging: Some("s2".into()), behind: vec!["a".into()], ..obj("jf", "k", 10) };
    let e = put_entry("a", &o.etag, Some("s2"), EntryState::Pending);
    let seq = c.put_object_journaled(&o, write(&[e])).await.unwrap().seqs[0];
    c.journal_failed(seq, "store a is down", 5_000, false).await.unwrap();
    assert!(c.journal_ready("n1", 4_999, 10).await.unwrap().is_empty(), "not before its backoff");
    let ready = c.journal_ready("n1", 5_000, 10).await.unwrap();
    assert_eq!((ready[0].attempts, ready[0].last_error.as_deref()), (1, Some("store a is down")));
    let lag = c.journal_lag().await.unwrap();
    assert_eq!((lag[0].store.as_str(), lag[0].entries, lag[0].bytes, lag[0].stuck), ("a", 1, 10, 0));
    assert_eq!(lag[0].last_error.as_deref(), Some("store a is down"));
    assert!(c.journal_claim(seq).await.unwrap());
    assert!(c.journal_ready("n1", i64::MAX, 10).await.unwrap().is_empty(), "a claimed entry is not handed out");
    c.journal_unclaim(seq).await.unwrap();
    assert_eq!(c.journal_ready("n1", 5_000, 10).await.unwrap().len(), 1, "unclaimed, it is due again");
    assert!(c.journal_claim(seq).await.unwrap());
    assert_eq!(c.journal_recover("n1", false).await.unwrap(), 1, "uploading goes back to pending");
    c.journal_unclaim(seq).await.unwrap();
    assert_eq!(c.journal_ready("n1", 5_000, 10).await.unwrap().len(), 1, "unclaiming a pending entry changes nothing");
    c.journal_failed(seq, "staging file missing", 0, true).await.unwrap();
    assert_eq!(c.journal_stuck(10).await.unwrap()[0].seq, seq);
    assert!(c.journal_ready("n1", i64::MAX, 10).await.unwrap().is_empty(), "stuck entries wait for the operator");
    assert_eq!(c.journal_recover("n1", true).await.unwrap(), 1);
    assert_eq!(c.journal_ready("n1", i64::MAX, 10).await.unwrap().len(), 1);
    // The scrub: a clean row on a store that lost it gets one repair entry, once.
    let clean = obj("jf", "clean", 20);
    c.put_object(&clean).await.unwrap();
    assert!(c.journal_repair(&clean, "b", "n1").await.unwrap());
    assert!(!c.journal_repair(&clean, "b", "n1").await.unwrap(), "already queued");
    assert_eq!(c.get_object("jf", "clean").await.unwrap().unwrap().behind, ["b"]);
    let stale = ObjectRecord { etag: "other".into(), ..clean.clone() };
    assert!(!c.journal_repair(&stale, "c", "n1").await.unwrap(), "a row that changed is not repaired");
}

async fn buckets_lifecycle(c: &Catalog) {
    c.create_bucket(&bucket("alpha")).await.unwrap();
    assert_eq!(c.create_bucket(&bucket("alpha")).await.unwrap_err().kind(), ErrorKind::BucketExists);
    c.create_bucket(&bucket("beta")).await.unwrap();
    let names: Vec<_> = c.list_buckets().await.unwrap().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["alpha", "beta"]);
    c.put_object(&obj("alpha", "k", 1)).await.unwrap();
    assert_eq!(c.delete_bucket("alpha").await.unwrap_err().kind(), ErrorKind::BucketNotEmpty);
    c.delete_object("alpha", "k").await.unwrap();
    c.delete_bucket("alpha").await.unwrap();
    assert_eq!(c.delete_bucket("alpha").await.unwrap_err().kind(), ErrorKind::BucketNotFound);
    assert!(c.get_bucket("alpha").await.unwrap().is_none());
    let mut moved = bucket("beta");
    moved.backend = "s3".into();
    c.ensure_bucket(&moved).await.unwrap();
    assert_eq!(c.get_bucket("beta").await.unwrap().unwrap().backend, "s3");
}

async fn objects_round_trip(c: &Catalog) {
    let o = obj("b", "photos/cat.png", 5 << 30);
    c.put_object(&o).await.unwrap();
    assert_eq!(c.get_object("b", "photos/cat.png").await.unwrap(), Some(o.clone()));
    let mut newer = o.clone();
    newer.size = 7;
    newer.etag = "new".into();
    newer.headers.cache_control = Some("max-age=60".into());
    c.put_object(&newer).await.unwrap();
    assert_eq!(c.get_object("b", "photos/cat.png").await.unwrap(), Some(newer.clone()));
    assert!(!c.insert_object_if_absent(&o).await.unwrap());
    assert_eq!(c.get_object("b", "photos/cat.png").await.unwrap(), Some(newer));
    assert!(c.delete_object("b", "photos/cat.png").await.unwrap());
    assert!(!c.delete_object("b", "photos/cat.png").await.unwrap());
    assert!(c.get_object("b", "photos/cat.png").await.unwrap().is_none());
    assert!(c.insert_object_if_absent(&o).await.unwrap());
}

async fn listing_delimiter_and_markers(c: &Catalog) {
    for k in ["a/1", "a/2", "a/b/3", "b", "c/1", "c/2", "d"] {
        c.put_object(&obj("x", k, 1)).await.unwrap();
    }
    let q = |prefix: &str, delim: Option<&str>, after: Option<&str>, max| ListQuery {
        prefix: prefix.into(),
        delimiter: delim.map(Into::into),
        after: after.map(Into::into),
        max_keys: max,
    };
    let keys = |p: &ListPage| p.objects.iter().map(|o| o.key.clone()).collect::<Vec<_>>();
    let all = c.list("x", &q("", None, None, 1000)).await.unwrap();
    assert_eq!(keys(&all), ["a/1", "a/2", "a/b/3", "b", "c/1", "c/2", "d"]);
    assert!(!all.truncated);
    let top = c.list("x", &q("", Some("/"), None, 1000)).await.unwrap();
    assert_eq!(keys(&top), ["b", "d"]);
    assert_eq!(top.common_prefixes, ["a/", "c/"]);
    let p1 = c.list("x", &q("", Some("/"), None, 2)).await.unwrap();
    assert_eq!((keys(&p1), p1.common_prefixes.clone()), (vec!["b".to_owned()], vec!["a/".to_owned()]));
    assert!(p1.truncated);
    assert_eq!(p1.next_marker.as_deref(), Some("b"));
    let p2 = c.list("x", &q("", Some("/"), p1.next_marker.as_deref(), 2)).await.unwrap();
    assert_eq!((keys(&p2), p2.common_prefixes.clone()), (vec!["d".to_owned()], vec!["c/".to_owned()]));
    assert!(!p2.truncated);
    let after_cp = c.list("x", &q("", Some("/"), Some("a/"), 10)).await.unwrap();
    assert_eq!(after_cp.common_prefixes, ["c/"]);
    let sub = c.list("x", &q("a/", Some("/"), None, 10)).await.unwrap();
    assert_eq!(
        (keys(&sub), sub.common_prefixes.clone()),
        (vec!["a/1".to_owned(), "a/2".to_owned()], vec!["a/b/".to_owned()])
    );
    let none = c.list("x", &q("zzz", None, None, 10)).await.unwrap();
    assert!(none.objects.is_empty() && !none.truncated);
    let zero = c.list("x", &q("", None, None, 0)).await.unwrap();
    assert!(zero.objects.is_empty() && !zero.truncated);
    // Paging one key at a time visits every key exactly once.
    let (mut seen, mut marker) = (Vec::new(), None::<String>);
    loop {
        let p = c.list("x", &q("", None, marker.as_deref(), 1)).await.unwrap();
        seen.extend(keys(&p));
        if !p.truncated {
            break;
        }
        marker = p.next_marker;
    }
    assert_eq!(seen, keys(&all));
}

async fn listing_is_bytewise(c: &Catalog) {
    for k in ["B", "a", "Z", "é", "~", "a b", "a-b", "a/b", "ä"] {
        c.put_object(&obj("u", k, 1)).await.unwrap();
    }
    let page = c.list("u", &ListQuery { max_keys: 100, ..Default::default() }).await.unwrap();
    let got: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    let mut want = got.clone();
    want.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(got, want);
}

async fn uploads_and_parts(c: &Catalog) {
    let up = |id: &str, key: &str| UploadRecord {
        upload_id: id.into(),
        bucket: "m".into(),
        key: key.into(),
        created_ms: 5,
        headers: ObjectHeaders::default(),
        user_meta: BTreeMap::new(),
    };
    c.create_upload(&up("u2", "k1")).await.unwrap();
    c.create_upload(&up("u1", "k1")).await.unwrap();
    c.create_upload(&up("u3", "k2")).await.unwrap();
    let ids = |v: Vec<UploadRecord>| v.into_iter().map(|u| u.upload_id).collect::<Vec<_>>();
    assert_eq!(ids(c.list_uploads("m", "", "", "", 10).await.unwrap()), ["u1", "u2", "u3"]);
    assert_eq!(ids(c.list_uploads("m", "", "k1", "u1", 10).await.unwrap()), ["u2", "u3"]);
    assert_eq!(ids(c.list_uploads("m", "k2", "", "", 10).await.unwrap()), ["u3"]);
    for n in [3u32, 1, 2] {
        let p = PartRecord {
            upload_id: "u1".into(),
            part_number: n,
            size: 10,
            etag: format!("e{n}"),
            last_modified_ms: 9,
            checksum: None,
        };
        c.put_part(&p).await.unwrap();
    }
    let sum = Checksum { algorithm: "CRC32".into(), value: "AAAAAA==".into(), composite: false };
    let again = PartRecord {
        upload_id: "u1".into(),
        part_number: 2,
        size: 20,
        etag: "e2b".into(),
        last_modified_ms: 9,
        checksum: Some(sum.clone()),
    };
    c.put_part(&again).await.unwrap();
    let parts = c.list_parts("u1", 0, 100).await.unwrap();
    assert_eq!(parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(parts[1], again);
    assert_eq!(c.list_parts("u1", 1, 1).await.unwrap()[0].part_number, 2);
    c.create_bucket(&bucket("mmm")).await.unwrap();
    c.create_upload(&UploadRecord { bucket: "mmm".into(), ..up("u9", "k") }).await.unwrap();
    assert_eq!(c.delete_bucket("mmm").await.unwrap_err().kind(), ErrorKind::BucketNotEmpty);
    let details = ObjectDetails {
        parts: vec![PartInfo { size: 30, checksum: Some(sum.clone()) }, PartInfo { size: 10, checksum: None }],
        upload_id: Some("u1".into()),
        checksum: Some(Checksum { value: "BBBBBB==-2".into(), composite: true, ..sum }),
    };
    c.complete_upload("u1", &ObjectRecord { details: details.clone(), ..obj("m", "k1", 40) }).await.unwrap();
    assert!(c.get_upload("u1").await.unwrap().is_none());
    assert!(c.list_parts("u1", 0, 100).await.unwrap().is_empty());
    let done = c.get_object("m", "k1").await.unwrap().unwrap();
    assert_eq!((done.size, &done.details), (40, &details), "parts, upload and checksum read back");
    assert_eq!(c.complete_upload("u1", &obj("m", "k1", 1)).await.unwrap_err().kind(), ErrorKind::UploadNotFound);
    assert!(c.delete_upload("u2").await.unwrap());
    assert!(!c.delete_upload("u2").await.unwrap());
}

#[tokio::test]
async fn reopening_keeps_data_and_reapplies_no_migration() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/dir/c.db").display());
    let c = Catalog::connect(&url).await.unwrap();
    c.create_bucket(&bucket("kept")).await.unwrap();
    c.close().await;
    let c = Catalog::connect(&url).await.unwrap();
    c.ping().await.unwrap();
    assert_eq!(c.list_buckets().await.unwrap(), vec![bucket("kept")]);
}

/// Runtime access rules: upsert replaces every field, NULLs read back as `None`, delete
/// reports whether a row was there.
async fn access_rules_round_trip(c: &Catalog) {
    let r = AccessRow {
        bucket: "pics".into(),
        prefix: "albums/".into(),
        access: Some("password".into()),
        password_hash: Some("$argon2id$x".into()),
        cache_control: None,
        serve: None,
        updated_ms: 5,
    };
    c.put_access_rule(&r).await.unwrap();
    let top = AccessRow {
        prefix: String::new(),
        access: None,
        password_hash: None,
        serve: Some("redirect".into()),
        ..r.clone()
    };
    c.put_access_rule(&top).await.unwrap();
    assert_eq!(c.access_rules().await.unwrap(), vec![top.clone(), r.clone()]);
    let changed = AccessRow { access: Some("public-read".into()), password_hash: None, updated_ms: 6, ..r.clone() };
    c.put_access_rule(&changed).await.unwrap();
    assert_eq!(c.access_rules().await.unwrap(), vec![top, changed]);
    assert!(c.delete_access_rule("pics", "albums/").await.unwrap());
    assert!(!c.delete_access_rule("pics", "albums/").await.unwrap());
    assert_eq!(c.access_rules().await.unwrap().len(), 1);
}

/// Issue 15: two nodes on one PostgreSQL catalog. Rows node 1 cached are forgotten once
/// node 2 changes them (objects and buckets, through the triggers and the change feed),
/// however the change was made; node 1 reads its own writes at once.
#[tokio::test]
async fn the_change_feed_forgets_rows_another_node_changed() {
    let db = postgres().await;
    let (one, two) = (&db.catalog, Catalog::connect(&db.url).await.unwrap());
    let mut feed = ChangeFeed::start(one.clone(), &db.url, std::time::Duration::from_millis(100)).await.unwrap();
    one.create_bucket(&bucket("feed")).await.unwrap();
    one.put_object(&obj("feed", "k", 1)).await.unwrap();
    assert_eq!(one.get_object("feed", "k").await.unwrap().unwrap().size, 1, "its own write");
    two.put_object(&obj("feed", "k", 2)).await.unwrap();
    assert_eq!(one.get_object("feed", "k").await.unwrap().unwrap().size, 1, "cached until the feed says");
    assert!(feed.poll().await.unwrap() >= 1);
    assert_eq!(one.get_object("feed", "k").await.unwrap().unwrap().size, 2, "forgotten, then read again");
    let j = two.delete_object_journaled("feed", "k", write(&[])).await.unwrap();
    assert!(j.old.is_some());
    feed.poll().await.unwrap();
    assert!(one.get_object("feed", "k").await.unwrap().is_none(), "a delete on node 2");
    assert!(one.get_bucket("feed").await.unwrap().is_some());
    two.delete_bucket("feed").await.unwrap();
    feed.poll().await.unwrap();
    assert!(one.get_bucket("feed").await.unwrap().is_none(), "a bucket row too");
    assert_eq!(feed.poll().await.unwrap(), 0, "each change is read once");
    two.close().await;
    db.finish().await;
}
