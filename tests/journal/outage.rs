//! Issue 4, outage test with Garage as the cold store: a Garage of its own (so stopping it
//! disturbs no other test) is frozen with SIGSTOP under mixed load, and writes keep being
//! acknowledged from the journal. After SIGCONT and the drain, every object in Garage must
//! equal the acknowledged state. The figures (writes during the outage, drain time, lost)
//! are printed for the record.

use crate::harness::{ACCESS_KEY, OwnGarage, SECRET_KEY};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
use aws_sdk_s3::primitives::ByteStream;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata::config::{Config, Overrides};

type Model = Arc<Mutex<HashMap<String, (Option<Vec<u8>>, Vec<Option<Vec<u8>>>)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garage_frozen_under_load_loses_nothing() {
    let g = OwnGarage::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndefault_backend = \"g\"\n[credentials]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\
         [journal]\nretry_min = \"100ms\"\nretry_max = \"1s\"\nstore_timeout = \"2s\"\n\
         [failover]\nlatency_budget = \"1s\"\ncooldown = \"500ms\"\n\
         [backends.g]\ntype = \"s3\"\nendpoint = \"{}\"\nregion = \"{}\"\nbucket = \"{}\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\n\
         [buckets.load]\nbackend = \"g\"\n",
        g.env["ENDPOINT"], g.env["REGION"], g.env["BUCKET"], g.env["ACCESS_KEY"], g.env["SECRET_KEY"]
    );
    let overrides = Overrides { data_dir: Some(dir.path().join("data")), listen: None };
    let cfg = Config::parse(&toml).unwrap().resolve(&overrides, &|_| None).unwrap();
    cfg.validate().unwrap();
    let running = strata::server::start(&cfg).await.unwrap();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(format!("http://{}", running.local_addr()))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "t"))
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .build();
    let c = Client::from_conf(conf);

    let model: Model = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (during, frozen) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (c, model, stop, during, frozen) = (c.clone(), model.clone(), stop.clone(), during.clone(), frozen.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::from_entropy();
            let mut n = 0u64;
            while !stop.load(SeqCst) {
                n += 1;
                let key = format!("w{t}/k{}", rng.gen_range(0..8));
                let next =
                    (!rng.gen_bool(0.2)).then(|| format!("{key} v{n} ").repeat(rng.gen_range(1..3000)).into_bytes());
                model.lock().unwrap().entry(key.clone()).or_default().1.push(next.clone());
                let ok = match &next {
                    Some(b) => {
                        c.put_object().bucket("load").key(&key).body(ByteStream::from(b.clone())).send().await.is_ok()
                    }
                    None => c.delete_object().bucket("load").key(&key).send().await.is_ok(),
                };
                if ok {
                    let mut m = model.lock().unwrap();
                    let e = m.get_mut(&key).unwrap();
                    (e.0, e.1) = (next, Vec::new());
                    if frozen.load(SeqCst) {
                        during.fetch_add(1, SeqCst);
                    }
                }
            }
        }));
    }
    let reads = Arc::new(AtomicU64::new(0));
    for _ in 0..2 {
        let (c, stop, reads) = (c.clone(), stop.clone(), reads.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::from_entropy();
            while !stop.load(SeqCst) {
                let key = format!("w{}/k{}", rng.gen_range(0..4), rng.gen_range(0..8));
                if c.get_object().bucket("load").key(&key).send().await.is_ok() {
                    reads.fetch_add(1, SeqCst);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    g.signal("-STOP");
    frozen.store(true, SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    frozen.store(false, SeqCst);
    g.signal("-CONT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let drain = Instant::now();
    let catalog = running.catalog().clone();
    loop {
        if catalog.journal_lag().await.unwrap().iter().all(|l| l.entries == 0) {
            break;
        }
        assert!(drain.elapsed() < Duration::from_secs(120), "no drain: {:?}", catalog.journal_lag().await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain_s = drain.elapsed().as_secs_f64();
    let gc = g.client();
    let model = model.lock().unwrap().clone();
    for (key, (acked, maybe)) in &model {
        let got = match gc.get_object().bucket(&g.env["BUCKET"]).key(format!("load/{key}")).send().await {
            Ok(r) => Some(r.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(_) => None,
        };
        assert!(maybe.is_empty(), "{key}: every write was answered once Garage came back");
        assert!(
            got == *acked,
            "{key}: Garage holds {:?} bytes, the acknowledged state is {:?}",
            got.map(|b| b.len()),
            acked.as_ref().map(Vec::len)
        );
    }
    let during = during.load(SeqCst);
    assert!(during > 0, "no write was acknowledged while Garage was frozen");
    eprintln!(
        "outage test: {during} writes acknowledged during a 6 s SIGSTOP of Garage, {} keys checked in Garage, \
         {} reads served, drain {drain_s:.2} s, lost 0",
        model.len(),
        reads.load(SeqCst)
    );
    running.stop().await.unwrap();
}
