use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn resolved(text: &str) -> Result<Config> {
    let c = Config::parse(text)?.resolve(&Overrides::default(), &no_env)?;
    c.validate()?;
    Ok(c)
}

#[test]
fn empty_config_gets_embedded_defaults() {
    let c = resolved("").expect("defaults are valid");
    assert_eq!(c.listen, Some(DEFAULT_LISTEN.parse().unwrap()));
    assert_eq!(c.region, "us-east-1");
    assert!(c.catalog.as_deref().unwrap().starts_with("sqlite://./strata-data/catalog.db"));
    assert!(matches!(c.backends.get("local"), Some(BackendConfig::Fs(_))));
}

#[test]
fn full_example_parses() {
    let text = r#"
        listen = "0.0.0.0:9000"
        data_dir = "/var/lib/strata"
        region = "eu-west-1"
        catalog = "postgres://strata@db/strata"
        default_backend = "s3-main"
        [credentials]
        access_key = "AKIAEXAMPLE"
        secret_key = "secretsecret"
        [limits]
        max_connections = 10
        header_read_timeout = "5s"
        max_object_size = "1GiB"
        [backends.s3-main]
        type = "s3"
        endpoint = "http://127.0.0.1:3900"
        bucket = "media"
        prefix = "strata/"
        access_key = "GK1"
        secret_key = "s"
        [backends.disk]
        type = "fs"
        root = "/srv/cold"
        [buckets.photos]
        backend = "s3-main"
        prefix = ""
    "#;
    let c = resolved(text).expect("valid");
    assert_eq!(c.limits.max_object_size, ByteSize(1 << 30));
    assert_eq!(c.limits.header_read_timeout.0, Duration::from_secs(5));
    assert_eq!(c.bucket_prefix("photos"), "");
    assert_eq!(c.bucket_prefix("other"), "other/");
}

#[test]
fn unknown_field_is_named() {
    let err = Config::parse("listne = \"x\"").unwrap_err().to_string();
    assert!(err.contains("listne"), "{err}");
    let err = Config::parse("[backends.a]\ntype = \"fs\"\nroot = \"/x\"\nroto = 1").unwrap_err().to_string();
    assert!(err.contains("roto"), "{err}");
    let err = Config::parse("[limits]\nmax_object_size = \"12 parsecs\"").unwrap_err().to_string();
    assert!(err.contains("max_object_size") || err.contains("parsecs"), "{err}");
}

#[test]
fn bad_references_are_named() {
    let err = resolved("[buckets.photos]\nbackend = \"nope\"").unwrap_err().to_string();
    assert!(err.contains("buckets.photos.backend"), "{err}");
    let err = resolved("[buckets.Bad_Name]\nbackend = \"local\"").unwrap_err().to_string();
    assert!(err.contains("Bad_Name"), "{err}");
    let err = resolved("[buckets.aaa]\nbackend = \"local\"\nprefix = \"\"\n[buckets.bbb]\nbackend = \"local\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("overlaps"), "{err}");
    let err = resolved("[images]\nstore = \"nope\"").unwrap_err().to_string();
    assert!(err.contains("images.store") && err.contains("nope"), "{err}");
    let ok = resolved("[images]\nstore = \"local\"").unwrap();
    assert_eq!(ok.images.store.as_deref(), Some("local"));
}

#[test]
fn env_overrides_secrets() {
    let env = |k: &str| match k {
        "STRATA_ACCESS_KEY" => Some("envkey".to_owned()),
        "STRATA_SECRET_KEY" => Some("envsecret".to_owned()),
        "STRATA_BACKEND_S3_MAIN_SECRET_KEY" => Some("fromenv".to_owned()),
        _ => None,
    };
    let text = "[backends.s3-main]\ntype = \"s3\"\nbucket = \"b\"\naccess_key = \"a\"\nsecret_key = \"file\"";
    let c = Config::parse(text).unwrap().resolve(&Overrides::default(), &env).unwrap();
    assert_eq!(c.credentials.as_ref().unwrap().access_key, "envkey");
    match &c.backends["s3-main"] {
        BackendConfig::S3(s) => assert_eq!(s.secret_key.as_deref(), Some("fromenv")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn overrides_win_over_file() {
    let o = Overrides { data_dir: Some("/tmp/x".into()), listen: Some("127.0.0.1:1".parse().unwrap()) };
    let c = Config::parse("listen = \"127.0.0.1:2\"").unwrap().resolve(&o, &no_env).unwrap();
    assert_eq!(c.listen.unwrap().port(), 1);
    assert_eq!(c.data_dir(), Path::new("/tmp/x"));
}

#[test]
fn documented_example_is_valid() {
    let doc = include_str!("../../docs/configuration.md");
    let start = doc.find("## Complete example").unwrap();
    let body = &doc[start..];
    let toml = body.split("```toml\n").nth(1).unwrap().split("```").next().unwrap();
    let c = Config::parse(toml).unwrap().resolve(&Overrides::default(), &no_env).unwrap();
    c.validate().unwrap();
    assert_eq!(c.hot.max_size.0, 500 << 30);
    assert_eq!(c.buckets["photos"].fill, Some(FillMode::StoreAndForward));
    assert!(!c.buckets["avatars"].hot);
}

#[test]
fn hot_defaults_and_checks() {
    let c = Config::parse("").unwrap().resolve(&Overrides::default(), &no_env).unwrap();
    c.validate().unwrap();
    assert!(c.hot.enabled);
    assert_eq!((c.hot.chunk_size.0, c.hot.policy, c.hot.fill), (8 << 20, EvictionKind::S3Fifo, FillMode::Stream));
    assert_eq!(c.hot_dir(), Path::new("./strata-data/hot"));
    for (text, field) in [
        ("[hot]\nchunk_size = \"1KiB\"", "hot.chunk_size"),
        ("[hot]\nmax_size = \"8MiB\"", "hot.max_size"),
        ("[hot]\nfill_concurrency = 0", "hot.fill_concurrency"),
    ] {
        let c = Config::parse(text).unwrap().resolve(&Overrides::default(), &no_env).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(field), "{text}: {e}");
    }
    assert!(Config::parse("[hot]\npolicy = \"mru\"").unwrap_err().to_string().contains("policy"));
    assert!(Config::parse("[hot]\nsize = \"1GiB\"").is_err(), "unknown fields are errors");
}

#[test]
fn bucket_stores_and_write_settings() {
    let two = "[backends.b2]\ntype = \"fs\"\nroot = \"/b2\"\n";
    let c = resolved(&format!("{two}[buckets.rep]\nstores = [\"local\", \"b2\"]\nwrite_mode = \"back\"")).unwrap();
    let b = &c.buckets["rep"];
    assert_eq!((b.backend.as_str(), b.stores.len(), b.write_mode), ("local", 2, WriteMode::Back));
    let c = resolved("[buckets.one]\nbackend = \"local\"").unwrap();
    assert_eq!(c.buckets["one"].stores, ["local"]);
    let cases = [
        ("[buckets.xx1]\nwrite_mode = \"through\"", "give `backend` or `stores`"),
        ("[buckets.xx1]\nbackend = \"local\"\nstores = [\"b2\"]", "not both"),
        ("[buckets.xx1]\nstores = [\"local\", \"local\"]", "named twice"),
        ("[buckets.xx1]\nstores = [\"local\", \"b2\"]\nmin_durable = 3", "min_durable"),
        ("[buckets.xx1]\nbackend = \"local\"\nstrict = true\nwrite_mode = \"back\"", "strict"),
        ("[buckets.xx1]\nbackend = \"local\"\nwrite_mode = \"sideways\"", "sideways"),
        ("[journal]\nuploads = 0", "journal.uploads"),
        ("[journal]\nmax_size = \"1GiB\"", "journal.max_size"),
        ("[journal]\nmax_size = \"lots\"", "lots"),
        ("[failover]\nfailures = 0", "failover.failures"),
    ];
    for (text, want) in cases {
        let err = resolved(&format!("{two}{text}")).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn web_section_and_access_rules() {
    let ok = r#"
[web]
domains = ["media.example.com"]
hosts = { "cdn.example.com" = "pics" }
base_url = "https://media.example.com"
link_keys = [{ id = "k2", secret = "0123456789abcdef" }]
access_log = "logs/access.log"
access_log_format = "json"
[buckets.pics]
backend = "local"
access = "public-read"
serve = "redirect"
[[buckets.pics.rules]]
prefix = "albums/"
access = "password"
password = "pw"
"#;
    let c = resolved(ok).unwrap();
    assert_eq!(c.web.access_log.as_deref(), Some(c.data_dir().join("logs/access.log").as_path()));
    assert_eq!(c.buckets["pics"].access_rules().len(), 2);
    assert_eq!(c.buckets["pics"].serve, ServeMode::Redirect);
    // A real argon2id hash, made here rather than by `policy` (config sits below it).
    let salt = argon2::password_hash::SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let phc = argon2::PasswordHasher::hash_password(&argon2::Argon2::default(), b"pw", &salt).unwrap().to_string();
    resolved(&format!("[buckets.pics]\nbackend = \"local\"\naccess = \"password\"\npassword = \"{phc}\"")).unwrap();
    let cases = [
        ("[web]\ndomains = [\"http://x.com\"]", "web.domains"),
        ("[web]\nbase_url = \"media.example.com\"", "web.base_url"),
        ("[web]\nlink_keys = [{ id = \"k1\", secret = \"short\" }]", "at least 16 bytes"),
        ("[web]\nlink_keys = [{ id = \"bad id\", secret = \"0123456789abcdef\" }]", "web.link_keys"),
        ("[web]\nredirect_ttl = \"30d\"", "web.redirect_ttl"),
        ("[web]\naccess_log_format = \"xml\"", "xml"),
        ("[buckets.pics]\nbackend = \"local\"\naccess = \"password\"", "has no password"),
        ("[buckets.pics]\nbackend = \"local\"\naccess = \"everyone\"", "everyone"),
        (
            "[buckets.pics]\nbackend = \"local\"\naccess = \"password\"\npassword = \"$argon2id$nonsense\"",
            "does not parse",
        ),
        ("[buckets.pics]\nbackend = \"local\"\nserve = \"teleport\"", "teleport"),
        (
            "[buckets.pics]\nbackend = \"local\"\n[[buckets.pics.rules]]\nprefix = \"a/\"\n[[buckets.pics.rules]]\nprefix = \"a/\"",
            "twice",
        ),
        (
            "[buckets.pics]\nbackend = \"local\"\naccess = \"public-read\"\n[[buckets.pics.rules]]\nprefix = \"\"",
            "repeats",
        ),
    ];
    for (text, want) in cases {
        let err = resolved(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn tls_settings_fit_together() {
    let c =
        resolved("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nplain_listen = \"127.0.0.1:8080\"\nplain = \"serve\"\n")
            .unwrap();
    assert!(c.tls.enabled());
    assert_eq!(c.tls.pairs()[0].cert, c.data_dir().join("c.pem"), "relative paths are under data_dir");
    assert_eq!(c.tls.plain, PlainMode::Serve);
    assert_eq!(c.limits.h2_max_streams, 256);
    let cases = [
        ("[tls]\ncert = \"c.pem\"", "tls.key"),
        ("[tls]\nkey = \"k.pem\"", "tls.cert"),
        ("[tls]\nplain_listen = \"127.0.0.1:8080\"", "tls.cert"),
        ("[[tls.sni]]\ncert = \"a\"\nkey = \"b\"", "tls.cert"),
        ("[tls]\ncert = \"c\"\nkey = \"k\"\nplain = \"teleport\"", "teleport"),
        ("[tls]\ncertificate = \"c\"", "certificate"),
    ];
    for (text, want) in cases {
        let err = resolved(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}
