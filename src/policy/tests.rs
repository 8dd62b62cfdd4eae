use super::*;
use crate::config::Overrides;

async fn policy(toml: &str) -> (Policy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let o = Overrides { data_dir: Some(dir.path().to_owned()), listen: None };
    let cfg = Config::parse(toml).unwrap().resolve(&o, &|_| None).unwrap();
    cfg.validate().unwrap();
    let catalog = Catalog::connect(cfg.catalog.as_deref().unwrap()).await.unwrap();
    let links = LinkKeys::new(vec![("k".into(), b"0123456789abcdef".to_vec())]);
    let plans = Plans::from_config(&cfg);
    (Policy::load(&cfg, &plans, catalog, links).await.unwrap(), dir)
}

const CONFIG: &str = r#"
[buckets.pics]
backend = "local"
access = "public-read"
cache_control = "immutable"
[[buckets.pics.rules]]
prefix = "albums/"
access = "password"
password = "open sesame"
[[buckets.pics.rules]]
prefix = "albums/shared/"
cache_control = "public, max-age=60"
[[buckets.pics.rules]]
prefix = "links/"
access = "signed"
"#;

#[tokio::test]
async fn longest_prefix_decides_each_field() {
    let (p, _d) = policy(CONFIG).await;
    let d = p.decide("pics", "cat.jpg");
    assert_eq!((d.access, d.scope.as_str()), (AccessMode::PublicRead, ""));
    assert_eq!(d.cache_control.as_deref(), Some("public, max-age=31536000, immutable"));
    let d = p.decide("pics", "albums/shared/x.jpg");
    assert_eq!((d.access, d.scope.as_str()), (AccessMode::Password, "albums/"), "access from the shorter rule");
    assert_eq!(d.cache_control.as_deref(), Some("public, max-age=60"));
    assert!(p.check_password(&d, "open sesame") && !p.check_password(&d, "open"));
    assert_eq!(p.decide("pics", "links/a").access, AccessMode::Signed);
    assert_eq!(p.decide("pics", "albumsX").access, AccessMode::PublicRead);
    assert_eq!(p.decide("other", "k").access, AccessMode::Private, "unknown buckets are private");
    assert_eq!(p.serve_mode("pics"), ServeMode::Proxy);
}

#[tokio::test]
async fn runtime_changes_override_and_clear() {
    let (p, _d) = policy(CONFIG).await;
    let change = RuleChange { access: Some(AccessMode::Private), ..Default::default() };
    p.change("pics", "", change).await.unwrap();
    assert_eq!(p.decide("pics", "cat.jpg").access, AccessMode::Private);
    assert_eq!(
        p.decide("pics", "cat.jpg").cache_control.as_deref(),
        Some("public, max-age=31536000, immutable"),
        "fields the change leaves out keep the config's value"
    );
    let pw = RuleChange { access: Some(AccessMode::Password), password: Some("new pw".into()), ..Default::default() };
    p.change("pics", "albums/", pw).await.unwrap();
    let d = p.decide("pics", "albums/a.jpg");
    assert!(p.check_password(&d, "new pw") && !p.check_password(&d, "open sesame"));
    p.change("fresh", "", RuleChange { serve: Some(ServeMode::Redirect), ..Default::default() }).await.unwrap();
    assert_eq!(p.serve_mode("fresh"), ServeMode::Redirect, "a bucket made through the API gets rules too");
    assert!(
        p.change("pics", "x/", RuleChange { serve: Some(ServeMode::Redirect), ..Default::default() }).await.is_err()
    );
    assert!(p.rules().iter().any(|r| r.bucket == "pics" && r.prefix == "albums/" && r.runtime));
    assert!(p.clear("pics", "").await.unwrap());
    assert_eq!(p.decide("pics", "cat.jpg").access, AccessMode::PublicRead);
    assert!(!p.clear("pics", "").await.unwrap());
}
