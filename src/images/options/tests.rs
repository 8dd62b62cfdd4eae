use super::*;
use proptest::prelude::*;

fn cfg() -> ImagesConfig {
    let mut c = ImagesConfig::default();
    c.presets
        .insert("thumb".into(), Preset { width: Some(200), height: Some(200), fit: Fit::Cover, ..Default::default() });
    c
}

fn keys() -> LinkKeys {
    LinkKeys::new(vec![("k2".into(), b"second-secret-0123456789".to_vec()), ("k1".into(), b"first".to_vec())])
}

#[test]
fn words_in_any_order_have_one_canonical_form() {
    let a = Options::parse("webp,w400,q70,cover,h300,dpr1.5", 4096).unwrap();
    let b = Options::parse("dpr1.5,h300,cover,q70,w400,webp", 4096).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.canonical(), "w400,h300,cover,webp,q70,dpr1.5");
    assert_eq!(Options::parse("w10", 4096).unwrap().canonical(), "w10,inside,auto");
}

#[test]
fn bad_lists_are_refused_with_the_word() {
    for (text, needle) in [
        ("w0", "w0"),
        ("w4097", "w4097"),
        ("w040", "w040"),
        ("w400,w300", "twice"),
        ("cover,fill", "twice"),
        ("q101", "q101"),
        ("dpr5", "dpr5"),
        ("dpr1.0", "dpr1.0"),
        ("dpr1.55", "dpr1.55"),
        ("blur", "blur"),
        ("", "not an option"),
        ("w400,", "not an option"),
        ("W400", "W400"),
    ] {
        match Options::parse(text, 4096) {
            Err(Refusal::Invalid(m)) => assert!(m.contains(needle), "{text}: {m}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn presets_need_no_signature_and_lists_do() {
    let (c, k) = (cfg(), keys());
    let ask = |q: &str| Asked::from_query(q).unwrap().unwrap();
    let thumb = ask("im=thumb").authorize(&c, &k, ("b", "k.jpg"), 0).unwrap();
    assert_eq!((thumb.width, thumb.fit), (Some(200), Fit::Cover));
    assert_eq!(ask("im=w400").authorize(&c, &k, ("b", "k.jpg"), 0), Err(Refusal::Unsigned));
    let opts = Options::parse("w400,webp", 4096).unwrap();
    let q = sign(&k, "b", "k.jpg", &opts, None).unwrap();
    assert!(q.starts_with("im=w400,inside,webp&ik=k2&is="), "{q}");
    assert_eq!(ask(&q).authorize(&c, &k, ("b", "k.jpg"), 0), Ok(opts.clone()));
    // The same list in another order carries the same signature.
    let sig = q.rsplit("is=").next().unwrap();
    assert!(ask(&format!("im=webp,w400&ik=k2&is={sig}")).authorize(&c, &k, ("b", "k.jpg"), 0).is_ok());
    // Another object, another size, a foreign key: refused.
    assert_eq!(ask(&q).authorize(&c, &k, ("b", "other.jpg"), 0), Err(Refusal::Unsigned));
    let wider = q.replace("w400", "w800");
    assert_eq!(ask(&wider).authorize(&c, &k, ("b", "k.jpg"), 0), Err(Refusal::Unsigned));
    let foreign = LinkKeys::new(vec![("k2".into(), b"not-the-secret".to_vec())]);
    assert_eq!(ask(&q).authorize(&c, &foreign, ("b", "k.jpg"), 0), Err(Refusal::Unsigned));
    // Expiry: 410 once due, and the expiry itself is signed.
    let q = sign(&k, "b", "k.jpg", &opts, Some(1000)).unwrap();
    assert!(ask(&q).authorize(&c, &k, ("b", "k.jpg"), 999).is_ok());
    assert_eq!(ask(&q).authorize(&c, &k, ("b", "k.jpg"), 1000), Err(Refusal::Expired));
    let later = q.replace("ie=1000", "ie=9999");
    assert_eq!(ask(&later).authorize(&c, &k, ("b", "k.jpg"), 1000), Err(Refusal::Unsigned));
}

#[test]
fn queries_without_im_ask_for_nothing() {
    assert_eq!(Asked::from_query("se=1&sk=a&ss=b"), Ok(None));
    assert!(Asked::from_query("im=a&im=b").is_err());
    assert!(Asked::from_query("is=abc").is_err());
    assert!(Asked::from_query(&format!("im={}", "w".repeat(300))).is_err());
}

#[test]
fn resolve_applies_accept_and_dpr() {
    let c = cfg();
    let o = Options::parse("w400,h300,dpr2", 4096).unwrap();
    let r = o.resolve(Some("image/avif,image/webp,*/*;q=0.8"), &c);
    assert_eq!((r.width, r.height, r.format, r.quality, r.varies), (Some(800), Some(600), Format::Webp, 80, true));
    assert_eq!(r.tag(), "w800,h600,inside,webp,q80");
    assert_eq!(o.resolve(Some("image/webp;q=0, */*"), &c).format, Format::Jpeg);
    assert_eq!(o.resolve(None, &c).format, Format::Jpeg);
    // AVIF only by name: `auto` never picks it, whatever `Accept` says.
    let avif = Options::parse("w400,avif", 4096).unwrap().resolve(Some("image/avif"), &c);
    assert_eq!((avif.format, avif.varies, avif.content_type()), (Format::Avif, false, "image/avif"));
    let big = Options::parse("w4000,dpr4,png", 4096).unwrap().resolve(None, &c);
    assert_eq!((big.width, big.format, big.varies), (Some(4096), Format::Png, false));
}

fn arb_options() -> impl Strategy<Value = Options> {
    (
        proptest::option::of(1u32..=4096),
        proptest::option::of(1u32..=4096),
        0usize..4,
        0usize..5,
        proptest::option::of(1u8..=100),
        10u8..=40,
        any::<bool>(),
    )
        .prop_map(|(width, height, fit, format, quality, dpr_tenths, keep_metadata)| Options {
            width,
            height,
            fit: Fit::ALL[fit].0,
            format: [Format::Jpeg, Format::Png, Format::Webp, Format::Avif, Format::Auto][format],
            quality,
            dpr_tenths,
            keep_metadata,
        })
}

proptest! {
    #[test]
    fn canonical_text_parses_back_to_the_same_options(o in arb_options()) {
        let text = o.canonical();
        prop_assert_eq!(Options::parse(&text, 4096), Ok(o));
    }

    #[test]
    fn shuffled_words_parse_to_the_same_options(o in arb_options(), seed in any::<u64>()) {
        let mut words: Vec<String> = o.canonical().split(',').map(str::to_owned).collect();
        let n = words.len();
        for i in 0..n {
            words.swap(i, (seed.rotate_left(i as u32 * 7) as usize) % n);
        }
        prop_assert_eq!(Options::parse(&words.join(","), 4096), Ok(o));
    }

    #[test]
    fn any_text_is_refused_or_round_trips(text in "[a-z0-9.,]{0,40}") {
        if let Ok(o) = Options::parse(&text, 4096) {
            prop_assert_eq!(Options::parse(&o.canonical(), 4096), Ok(o));
        }
    }

    #[test]
    fn any_query_never_panics_and_a_flipped_signature_fails(q in ".{0,120}", flip in 0usize..22) {
        let _ = Asked::from_query(&q).map(|a| a.map(|a| a.authorize(&cfg(), &keys(), ("b", "k"), 0)));
        let opts = Options::parse("w400,webp", 4096).unwrap();
        let signed = sign(&keys(), "b", "k", &opts, None).unwrap();
        let (head, sig) = signed.rsplit_once("is=").unwrap();
        let mut sig = sig.as_bytes().to_vec();
        sig[flip] = if sig[flip] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{head}is={}", String::from_utf8(sig).unwrap());
        let a = Asked::from_query(&tampered).unwrap().unwrap();
        prop_assert_eq!(a.authorize(&cfg(), &keys(), ("b", "k"), 0), Err(Refusal::Unsigned));
    }
}
