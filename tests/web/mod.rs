//! Media origin (issue 5): anonymous HTTP in three addressing styles, access modes set at
//! runtime, signed links, password logins, serving modes, the headers CDNs and browsers
//! expect, the access log, and the attacks on each.

pub(crate) mod browser;
mod password;
mod ready;

use crate::harness::{ACCESS_KEY, Cold, Harness, Opts, SECRET_KEY};
use aws_sdk_s3::primitives::ByteStream;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_fs { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Cold::Fs).await })* }
        mod on_garage { $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(super::Cold::Garage).await })* }
    };
}

both!(three_addressing_styles_and_private_by_default, http_semantics, signed_links, redirect_and_direct_modes);

/// A strata with virtual hosts under `media.test`, `cdn.test` mapped to bucket "pics",
/// and `extra` appended to its config.
pub(crate) async fn start(cold: Cold, extra: &str) -> Harness {
    let toml = format!("[web]\ndomains = [\"media.test\"]\nhosts = {{ \"cdn.test\" = \"pics\" }}\n{extra}");
    Harness::start_opts(cold, Opts { toml, wrap: None }).await
}

/// A plain HTTP client (no redirects followed, no cookies kept) that reaches strata under
/// any of the test host names.
pub(crate) fn http(h: &Harness) -> reqwest::Client {
    let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_gzip().no_brotli();
    for host in ["pics.media.test", "media.test", "cdn.test", "other.media.test"] {
        b = b.resolve(host, h.addr);
    }
    b.build().unwrap()
}

/// Calls the admin API: (status, JSON).
pub(crate) async fn admin(
    h: &Harness,
    method: reqwest::Method,
    route: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new()
        .request(method, format!("http://{}/_strata/{route}", h.addr))
        .basic_auth(ACCESS_KEY, Some(SECRET_KEY))
        .query(query);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sets the runtime rule of `bucket`/`prefix`.
pub(crate) async fn set_rule(h: &Harness, bucket: &str, prefix: &str, change: Value) {
    let (s, v) =
        admin(h, reqwest::Method::POST, "access", &[("bucket", bucket), ("prefix", prefix)], Some(change)).await;
    assert_eq!(s, 200, "{v}");
}

/// A signed link (path) from the admin API.
pub(crate) async fn sign(h: &Harness, bucket: &str, key: &str, extra: &[(&str, &str)]) -> String {
    let mut q = vec![("bucket", bucket), ("key", key)];
    q.extend_from_slice(extra);
    let (s, v) = admin(h, reqwest::Method::POST, "sign", &q, None).await;
    assert_eq!(s, 200, "{v}");
    v["url"].as_str().unwrap().to_owned()
}

pub(crate) async fn put_typed(
    h: &Harness,
    bucket: &str,
    key: &str,
    body: &[u8],
    ctype: Option<&str>,
    cc: Option<&str>,
) {
    let mut r = h.client.put_object().bucket(bucket).key(key).body(ByteStream::from(body.to_vec()));
    if let Some(t) = ctype {
        r = r.content_type(t);
    }
    if let Some(c) = cc {
        r = r.cache_control(c);
    }
    r.send().await.unwrap();
}

fn hdr<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Sends raw bytes on a fresh connection and returns the status line and head.
pub(crate) async fn raw(h: &Harness, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

async fn three_addressing_styles_and_private_by_default(cold: Cold) {
    let h = start(cold, "").await;
    let c = http(&h);
    h.bucket("pics").await;
    h.bucket("vault").await;
    put_typed(&h, "pics", "a/cat.jpg", b"meow", Some("image/jpeg"), None).await;
    put_typed(&h, "vault", "secret.txt", b"s3cr3t", None, None).await;
    let port = h.addr.port();
    let urls = [
        format!("http://{}/pics/a/cat.jpg", h.addr),
        format!("http://pics.media.test:{port}/a/cat.jpg"),
        format!("http://cdn.test:{port}/a/cat.jpg"),
    ];
    // Private is the default: anonymous readers get 403 in every style.
    for u in &urls {
        assert_eq!(c.get(u).send().await.unwrap().status(), 403, "{u}");
    }
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    for u in &urls {
        let r = c.get(u).send().await.unwrap();
        assert_eq!(r.status(), 200, "{u}");
        assert_eq!(hdr(&r, "content-type"), "image/jpeg");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"meow", "{u}");
        let r = c.head(u).send().await.unwrap();
        assert_eq!((r.status().as_u16(), hdr(&r, "content-length")), (200, "4"), "HEAD {u}");
    }
    let r = c.get(format!("http://{}/pics/a/missing.jpg", h.addr)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "cache-control")), (404, "no-store"), "a CDN must not keep a 404");
    // Private data: a missing key answers like a present one, so nothing leaks.
    for k in ["secret.txt", "nothing-here"] {
        assert_eq!(c.get(format!("http://{}/vault/{k}", h.addr)).send().await.unwrap().status(), 403, "{k}");
    }
    // Listings are never anonymous, public bucket or not, in either style.
    for u in [
        format!("http://{}/pics", h.addr),
        format!("http://{}/pics/?list-type=2", h.addr),
        format!("http://{}/vault?prefix=s", h.addr),
        format!("http://pics.media.test:{port}/"),
        format!("http://{}/", h.addr),
    ] {
        let r = c.get(&u).send().await.unwrap();
        assert_eq!(r.status(), 403, "{u}");
        assert!(!r.text().await.unwrap().contains("secret.txt"), "{u}");
    }
    // Anonymous writes stay refused, and S3 clients still work on the same port.
    let r = c.put(format!("http://{}/pics/a/new.jpg", h.addr)).body("x").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(h.get("vault", "secret.txt").await, b"s3cr3t");
    // Path traversal, in the raw request line that no client library would send: `..` is
    // a key's own text (S3 takes it, issue 14) and names no other bucket's object.
    for path in ["/pics/../vault/secret.txt", "/pics/a/%2e%2e/%2e%2e/vault/secret.txt", "/pics/a//cat.jpg"] {
        let head = raw(&h, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await;
        assert!(head.starts_with("HTTP/1.1 404") || head.starts_with("HTTP/1.1 403"), "{path}: {head}");
        assert!(!head.contains("s3cr3t"), "{path}: {head}");
    }
    let head = raw(&h, "GET /pics/%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "not UTF-8: {head}");
    // SigV4 presigned URLs keep working beside anonymous reads.
    let presigned = h
        .client
        .get_object()
        .bucket("vault")
        .key("secret.txt")
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let r = c.get(presigned.uri()).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.bytes().await.unwrap().to_vec()), (200, b"s3cr3t".to_vec()));
}

async fn http_semantics(cold: Cold) {
    let h = start(cold, "").await;
    let c = http(&h);
    h.bucket("pics").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read" })).await;
    set_rule(&h, "pics", "static/", json!({ "cache_control": "immutable" })).await;
    let audio: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    put_typed(&h, "pics", "song.mp3", &audio, None, None).await;
    put_typed(&h, "pics", "own-cc.jpg", b"jpeg", Some("image/jpeg"), Some("public, max-age=7")).await;
    let css = "body { color: red; margin: 0 auto; }\n".repeat(500);
    put_typed(&h, "pics", "static/site.css", css.as_bytes(), Some("text/css"), None).await;
    let base = format!("http://{}/pics", h.addr);

    let r = c.get(format!("{base}/song.mp3")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "content-type"), "audio/mpeg", "guessed from the extension");
    assert_eq!(hdr(&r, "accept-ranges"), "bytes");
    assert_eq!(hdr(&r, "cache-control"), "public, max-age=3600", "the public default");
    assert_eq!(hdr(&r, "x-cache"), "MISS");
    assert_eq!(hdr(&r, "vary"), "", "audio is never compressed, so nothing varies");
    let etag = hdr(&r, "etag").to_owned();
    let lm = hdr(&r, "last-modified").to_owned();
    assert!(etag.starts_with('"') && !lm.is_empty());
    assert_eq!(r.bytes().await.unwrap().len(), audio.len());
    let r = c.get(format!("{base}/song.mp3")).send().await.unwrap();
    assert_eq!(hdr(&r, "x-cache"), "HIT", "the second read comes from the hot tier");

    // Conditionals.
    let r = c.get(format!("{base}/song.mp3")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "etag")), (304, etag.as_str()));
    assert_eq!(hdr(&r, "cache-control"), "public, max-age=3600", "a 304 carries the caching headers");
    let r = c.get(format!("{base}/song.mp3")).header("if-modified-since", &lm).send().await.unwrap();
    assert_eq!(r.status(), 304);
    let r = c.get(format!("{base}/song.mp3")).header("if-none-match", "\"other\"").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("{base}/song.mp3")).header("if-match", "\"other\"").send().await.unwrap();
    assert_eq!(r.status(), 412);

    // Ranges.
    let r = c.get(format!("{base}/song.mp3")).header("range", "bytes=1000-1999").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(hdr(&r, "content-range"), "bytes 1000-1999/100000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &audio[1000..2000]);
    let r = c.get(format!("{base}/song.mp3")).header("range", "bytes=-10").send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &audio[99_990..]);
    let r = c.get(format!("{base}/song.mp3")).header("range", "bytes=100000-").send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "content-range")), (416, "bytes */100000"));
    let r = c.head(format!("{base}/song.mp3")).header("range", "bytes=0-9").send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "content-length")), (206, "10"));
    let r = c
        .get(format!("{base}/song.mp3"))
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "If-Range with another ETag gets the whole object");

    // Cache-Control: the object's own, a rule's, and never public for guarded content.
    let r = c.get(format!("{base}/own-cc.jpg")).send().await.unwrap();
    assert_eq!(hdr(&r, "cache-control"), "public, max-age=7");

    // Compression: only compressible types, only when asked, each coding its own ETag.
    let url = format!("{base}/static/site.css");
    let plain = c.get(&url).send().await.unwrap();
    assert_eq!(hdr(&plain, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!((hdr(&plain, "content-encoding"), hdr(&plain, "vary")), ("", "Accept-Encoding"));
    let plain_etag = hdr(&plain, "etag").to_owned();
    assert_eq!(plain.text().await.unwrap(), css);
    for (asked, coding) in [("gzip, deflate, br", "br"), ("gzip", "gzip")] {
        let r = c.get(&url).header("accept-encoding", asked).send().await.unwrap();
        assert_eq!((hdr(&r, "content-encoding"), hdr(&r, "vary")), (coding, "Accept-Encoding"), "{asked}");
        assert_eq!(hdr(&r, "content-length"), "", "a compressed body is chunked");
        let etag = hdr(&r, "etag").to_owned();
        assert_ne!(etag, plain_etag);
        let packed = r.bytes().await.unwrap();
        assert!(packed.len() < css.len() / 10, "{coding}: {} bytes", packed.len());
        assert_eq!(decompress(coding, &packed).await, css.as_bytes());
        let r = c.get(&url).header("accept-encoding", asked).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(r.status(), 304, "{coding} revalidates with its own ETag");
    }
    let r = c.get(&url).header("accept-encoding", "gzip").header("range", "bytes=0-3").send().await.unwrap();
    assert_eq!((r.status().as_u16(), hdr(&r, "content-encoding")), (206, ""), "ranges are served uncompressed");
    let r = c.get(format!("{base}/own-cc.jpg")).header("accept-encoding", "gzip, br").send().await.unwrap();
    assert_eq!((hdr(&r, "content-encoding"), hdr(&r, "vary")), ("", ""), "JPEG is not compressed");
}

async fn decompress(coding: &str, data: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    match coding {
        "br" => async_compression::tokio::bufread::BrotliDecoder::new(data).read_to_end(&mut out).await.unwrap(),
        _ => async_compression::tokio::bufread::GzipDecoder::new(data).read_to_end(&mut out).await.unwrap(),
    };
    out
}

async fn signed_links(cold: Cold) {
    let h = start(cold, "").await;
    let c = http(&h);
    h.bucket("pics").await;
    h.bucket("vault").await;
    set_rule(&h, "pics", "", json!({ "access": "signed" })).await;
    put_typed(&h, "pics", "a/b c.jpg", b"jpeg bytes", Some("image/jpeg"), Some("public, max-age=99")).await;
    put_typed(&h, "pics", "other.jpg", b"other", Some("image/jpeg"), None).await;
    put_typed(&h, "vault", "doc.pdf", b"%PDF", None, None).await;
    let base = format!("http://{}", h.addr);
    assert_eq!(c.get(format!("{base}/pics/a/b%20c.jpg")).send().await.unwrap().status(), 403, "no link, no access");

    let link = sign(&h, "pics", "a/b c.jpg", &[("expires", "10m")]).await;
    assert!(link.starts_with("/pics/a/b%20c.jpg?") && link.len() < 120, "{link}");
    let r = c.get(format!("{base}{link}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "cache-control"), "private, no-store", "guarded content is never cached publicly");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"jpeg bytes");
    // The same link in virtual-host style.
    let vh = link.strip_prefix("/pics").unwrap();
    let r = c.get(format!("http://pics.media.test:{}{vh}", h.addr.port())).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Tampering: every part of the token is covered.
    let sig = link.rsplit_once("ss=").unwrap().1;
    let mut flipped = sig.to_owned().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let tampered = [
        link.replace(sig, std::str::from_utf8(&flipped).unwrap()),
        link.replace("sk=k1", "sk=k2"),
        link.replace("se=", "se=9"),
        format!("{}?{}", "/pics/other.jpg", link.split_once('?').unwrap().1),
        format!("{}?{}", "/vault/doc.pdf", link.split_once('?').unwrap().1),
        link.replace(&format!("&ss={sig}"), ""),
    ];
    for t in &tampered {
        let r = c.get(format!("{base}{t}")).send().await.unwrap();
        assert_eq!(r.status(), 403, "{t}");
    }
    // Expired: 410, as nginx's secure_link.
    let short = sign(&h, "pics", "other.jpg", &[("expires", "1s")]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(c.get(format!("{base}{short}")).send().await.unwrap().status(), 410);
    // A link opens a private bucket too, and can force a download.
    let dl = sign(&h, "vault", "doc.pdf", &[("download", "Report 2026.pdf")]).await;
    let r = c.get(format!("{base}{dl}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        hdr(&r, "content-disposition"),
        "attachment; filename=\"Report 2026.pdf\"; filename*=UTF-8''Report%202026.pdf"
    );
    assert_eq!(hdr(&r, "content-type"), "application/pdf");
    // Bound to an address: only that client may use it.
    let bound = sign(&h, "pics", "other.jpg", &[("ip", "10.9.8.7")]).await;
    assert_eq!(c.get(format!("{base}{bound}")).send().await.unwrap().status(), 403);
    let mine = sign(&h, "pics", "other.jpg", &[("ip", "127.0.0.1")]).await;
    assert_eq!(c.get(format!("{base}{mine}")).send().await.unwrap().status(), 200);

    // `strata sign` with the server's data directory makes links the server accepts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["sign", "pics/a/b c.jpg", "--expires", "5m", "--download", "--data-dir"])
        .arg(h.cfg.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli_link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let r = c.get(format!("{base}{cli_link}")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{cli_link}");
    assert!(hdr(&r, "content-disposition").starts_with("attachment; filename=\"b c.jpg\""));
    let too_long = format!("pics/{}", "k".repeat(1100));
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["sign", &too_long, "--data-dir"])
        .arg(h.cfg.data_dir())
        .output()
        .unwrap();
    assert!(!bad.status.success() && !bad.stderr.is_empty(), "a key S3 refuses is refused with a message");
}

async fn redirect_and_direct_modes(cold: Cold) {
    let log = "access.log";
    let h = start(cold, &format!("access_log = \"{log}\"\naccess_log_format = \"json\"\n")).await;
    let c = http(&h);
    h.bucket("pics").await;
    h.bucket("vault").await;
    set_rule(&h, "pics", "", json!({ "access": "public-read", "serve": "redirect" })).await;
    set_rule(&h, "vault", "", json!({ "serve": "redirect" })).await;
    let body: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
    put_typed(&h, "pics", "v.mp4", &body, Some("video/mp4"), None).await;
    put_typed(&h, "vault", "x.bin", b"private", None, None).await;
    h.drained().await;
    let url = format!("http://{}/pics/v.mp4", h.addr);
    let r = c.get(&url).send().await.unwrap();
    // The access check happens in strata, before any redirect.
    assert_eq!(c.get(format!("http://{}/vault/x.bin", h.addr)).send().await.unwrap().status(), 403);
    match cold {
        Cold::Garage => {
            assert_eq!(r.status(), 302);
            assert_eq!(hdr(&r, "cache-control"), "private, no-store");
            let to = hdr(&r, "location").to_owned();
            assert!(to.contains("X-Amz-Signature=") && !to.contains(&h.addr.to_string()), "{to}");
            let got = reqwest::get(&to).await.unwrap();
            assert_eq!(got.status(), 200);
            assert_eq!(got.bytes().await.unwrap().as_ref(), &body[..], "the store serves the same bytes");
        }
        Cold::Fs => {
            // A disk store cannot presign: strata serves the bytes itself.
            assert_eq!(r.status(), 200);
            assert_eq!(r.bytes().await.unwrap().as_ref(), &body[..]);
        }
    }
    // Direct mode: the admin API hands out store URLs, only for buckets in that mode.
    let (s, _) = admin(&h, reqwest::Method::GET, "direct", &[("bucket", "pics"), ("key", "v.mp4")], None).await;
    assert_eq!(s, 409);
    set_rule(&h, "pics", "", json!({ "serve": "direct" })).await;
    let (s, v) = admin(&h, reqwest::Method::GET, "direct", &[("bucket", "pics"), ("key", "v.mp4")], None).await;
    match cold {
        Cold::Garage => {
            assert_eq!(s, 200, "{v}");
            let got = reqwest::get(v["url"].as_str().unwrap()).await.unwrap();
            assert_eq!(got.bytes().await.unwrap().as_ref(), &body[..]);
        }
        Cold::Fs => assert_eq!(s, 409, "{v}"),
    }
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200, "direct mode still proxies web reads");
    // The access log (a relative path lives in the data directory) has every request
    // with its cache status.
    let path = h.cfg.web.access_log.clone().unwrap();
    assert_eq!(path, h.cfg.data_dir().join(log));
    let mut lines = Vec::new();
    for _ in 0..50 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        lines = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect();
        if lines.iter().filter(|l| l["uri"] == "/pics/v.mp4").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mine: Vec<&Value> =
        lines.iter().filter(|l| l["uri"] == "/pics/v.mp4" && l["host"].as_str() == Some(&h.addr.to_string())).collect();
    assert_eq!(mine.len(), 2, "{lines:?}");
    let first = if cold == Cold::Garage { ("REDIRECT", 302, 0) } else { ("MISS", 200, body.len() as u64) };
    assert_eq!(
        (mine[0]["cache"].as_str().unwrap(), mine[0]["status"].as_u64().unwrap(), mine[0]["bytes"].as_u64().unwrap()),
        first
    );
    assert!(mine[1]["cache"] == "MISS" || mine[1]["cache"] == "HIT");
}
