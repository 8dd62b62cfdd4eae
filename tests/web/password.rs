//! Password-protected prefixes (Basic and the login page's cookie), runtime changes
//! through the CLI, and rules from the config file.

use super::{admin, http, put_typed, set_rule, start};
use crate::harness::{ACCESS_KEY, Cold, SECRET_KEY};
use serde_json::json;

fn hdr<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn login(c: &reqwest::Client, base: &str, to: &str, password: &str) -> reqwest::Response {
    c.post(format!("{base}/_strata/login")).form(&[("to", to), ("password", password)]).send().await.unwrap()
}

/// The `name=value` part of a Set-Cookie header.
fn cookie_pair(r: &reqwest::Response) -> String {
    hdr(r, "set-cookie").split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn password_prefix_with_basic_and_login_cookie() {
    let h = start(Cold::Fs, "").await;
    let c = http(&h);
    let base = format!("http://{}", h.addr);
    for b in ["pics", "other"] {
        h.bucket(b).await;
        set_rule(&h, b, "", json!({ "access": "public-read" })).await;
        set_rule(&h, b, "albums/", json!({ "access": "password", "password": "open sesame" })).await;
        put_typed(&h, b, "albums/1.jpg", b"one", Some("image/jpeg"), None).await;
    }
    put_typed(&h, "pics", "front.jpg", b"front", Some("image/jpeg"), None).await;
    let photo = format!("{base}/pics/albums/1.jpg");
    assert_eq!(c.get(format!("{base}/pics/front.jpg")).send().await.unwrap().status(), 200, "outside the prefix");

    // Without a password: a Basic challenge for tools, the login page for browsers.
    let r = c.get(&photo).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(hdr(&r, "www-authenticate").starts_with("Basic realm=\"pics/albums/\""));
    let r = c.get(&photo).header("accept", "text/html,*/*").send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "cache-control")), (401, "private, no-store"));
    let page = r.text().await.unwrap();
    let r = c.get(&photo).header("sec-fetch-dest", "image").send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "www-authenticate")), (401, ""), "no password dialog over a page");
    assert!(page.contains("<form id=\"login\"") && page.contains("value=\"/pics/albums/1.jpg\""), "{page}");

    // HTTP Basic.
    let r = c.get(&photo).basic_auth("anyone", Some("open sesame")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "cache-control")), (200, "private, no-store"));
    assert_eq!(c.get(&photo).basic_auth("anyone", Some("open")).send().await.unwrap().status(), 401);
    // S3 keys are not gallery passwords.
    assert_eq!(c.get(&photo).basic_auth(ACCESS_KEY, Some(SECRET_KEY)).send().await.unwrap().status(), 401);

    // The login form: a wrong password shows the page again, the right one sets a cookie.
    let r = login(&c, &base, "/pics/albums/1.jpg", "wrong").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Wrong password"));
    let r = login(&c, &base, "/pics/albums/1.jpg", "open sesame").await;
    assert_eq!((r.status().as_u16(), hdr(&r, "location")), (303, "/pics/albums/1.jpg"));
    let set = hdr(&r, "set-cookie").to_owned();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/pics/albums/", "Max-Age=43200"] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    let pics_cookie = cookie_pair(&r);
    let r = c.get(&photo).header("cookie", &pics_cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"one");

    // A cookie for another bucket does not open this one, under either name.
    let other = cookie_pair(&login(&c, &base, "/other/albums/1.jpg", "open sesame").await);
    let other_value = other.split_once('=').unwrap().1;
    let pics_name = pics_cookie.split_once('=').unwrap().0;
    for forged in [other.clone(), format!("{pics_name}={other_value}")] {
        assert_eq!(c.get(&photo).header("cookie", forged.as_str()).send().await.unwrap().status(), 401, "{forged}");
    }
    let tampered = pics_cookie.replacen('.', "9.", 1);
    assert_eq!(
        c.get(&photo).header("cookie", tampered.as_str()).send().await.unwrap().status(),
        401,
        "extended expiry"
    );

    // A new password logs everyone out.
    set_rule(&h, "pics", "albums/", json!({ "password": "new one" })).await;
    assert_eq!(c.get(&photo).header("cookie", &pics_cookie).send().await.unwrap().status(), 401);
    assert_eq!(c.get(&photo).basic_auth("x", Some("new one")).send().await.unwrap().status(), 200);

    // No open redirects, no logins for what no password guards.
    for to in ["//evil.example/x", "https://evil.example/", "\\\\evil"] {
        assert_eq!(login(&c, &base, to, "new one").await.status(), 400, "{to}");
    }
    assert_eq!(login(&c, &base, "/pics/front.jpg", "x").await.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_change_at_runtime_through_the_cli() {
    let h = start(Cold::Fs, "").await;
    let c = http(&h);
    h.bucket("pics").await;
    put_typed(&h, "pics", "k.txt", b"text", None, None).await;
    let url = format!("http://{}/pics/k.txt", h.addr);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .args(["--endpoint", &format!("http://{}", h.addr), "--data-dir"])
            .arg(h.cfg.data_dir())
            .env("STRATA_ACCESS_KEY", ACCESS_KEY)
            .env("STRATA_SECRET_KEY", SECRET_KEY)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(c.get(&url).send().await.unwrap().status(), 403);
    cli(&["access", "set", "pics", "--access", "public-read", "--cache-control", "public, max-age=5"]);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), hdr(&r, "cache-control")),
        (200, "public, max-age=5"),
        "applies without a restart"
    );
    let shown: serde_json::Value = serde_json::from_str(&cli(&["access", "show"])).unwrap();
    let rule = shown["rules"].as_array().unwrap().iter().find(|r| r["bucket"] == "pics").unwrap().clone();
    assert_eq!((rule["access"].as_str(), rule["runtime"].as_bool()), (Some("public-read"), Some(true)));
    assert_eq!(shown["serve"]["pics"], "proxy");
    // Runtime rules live in the catalog: they survive a restart.
    let mut h = h;
    h.restart(None).await;
    let url = format!("http://{}/pics/k.txt", h.addr);
    assert_eq!(http(&h).get(&url).send().await.unwrap().status(), 200);
    let (s, v) = admin(&h, reqwest::Method::DELETE, "access", &[("bucket", "pics"), ("prefix", "")], None).await;
    assert_eq!((s.as_u16(), v["cleared"].as_bool()), (200, Some(true)));
    assert_eq!(http(&h).get(&url).send().await.unwrap().status(), 403, "back to the config's (private)");
    let (s, _) = admin(
        &h,
        reqwest::Method::POST,
        "access",
        &[("bucket", "pics"), ("prefix", "x/")],
        Some(json!({ "serve": "redirect" })),
    )
    .await;
    assert_eq!(s, 400, "the serving mode is per bucket");
    let (s, _) =
        admin(&h, reqwest::Method::POST, "access", &[("bucket", "pics")], Some(json!({ "access": "everyone" }))).await;
    assert_eq!(s, 400, "an unknown mode is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_from_the_config_file() {
    let extra = r#"
[buckets.site]
backend = "local"
access = "public-read"
cache_control = "immutable"
[[buckets.site.rules]]
prefix = "members/"
access = "password"
password = "club"
[[buckets.site.rules]]
prefix = "links/"
access = "signed"
"#;
    let h = start(Cold::Fs, extra).await;
    let c = http(&h);
    for k in ["index.html", "members/list.html", "links/file.zip"] {
        put_typed(&h, "site", k, b"<p>hi</p>", None, None).await;
    }
    let base = format!("http://{}/site", h.addr);
    let r = c.get(format!("{base}/index.html")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "content-type")), (200, "text/html"));
    assert_eq!(hdr(&r, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(c.get(format!("{base}/members/list.html")).send().await.unwrap().status(), 401);
    let r = c.get(format!("{base}/members/list.html")).basic_auth("u", Some("club")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), hdr(&r, "cache-control")),
        (200, "private, no-store"),
        "a rule cannot make guarded content public"
    );
    assert_eq!(c.get(format!("{base}/links/file.zip")).send().await.unwrap().status(), 403);
}
