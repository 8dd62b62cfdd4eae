//! Password-protected prefixes: HTTP Basic, the login page, and its form's POST, which
//! sets a signed HttpOnly cookie scoped to the protected bucket and prefix.

use super::{Body, Web, text};
use crate::api::router::{LOGIN_PATH, Style, Target};
use crate::policy::{Decision, cookie};
use http::header::{self as h, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

/// Largest login form body read.
const MAX_FORM: usize = 8 << 10;

impl Web {
    /// Whether `req` carries the password of `d` (Basic) or a live cookie for its scope.
    pub(super) fn logged_in<B>(&self, req: &Request<B>, t: &Target, d: &Decision, now: i64) -> bool {
        let Some(secret) = &d.password else { return false };
        if let Some((_user, pass)) = crate::http::basic_auth(req.headers()) {
            // Any user name: a gallery has one shared password.
            return self.policy.check_password(d, &pass);
        }
        let name = cookie::name(&t.bucket, &d.scope);
        let generation = secret.generation();
        req.headers().get_all(h::COOKIE).iter().filter_map(|v| v.to_str().ok()).any(|header| {
            cookie::find(header, &name)
                .any(|v| cookie::verify(&self.policy.cookie_key(), v, &t.bucket, &d.scope, now, &generation))
        })
    }

    /// 401: the login page for a browser's page load, a bare 401 for a browser's
    /// subresource (a Basic challenge there would pop a password dialog over the page that
    /// embeds it), and a Basic challenge for every other client.
    pub(super) fn login_required<B>(
        &self,
        req: &Request<B>,
        t: &Target,
        d: &Decision,
        error: Option<&str>,
    ) -> Response<Body> {
        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
        let browser = header("sec-fetch-dest").is_some();
        let page = matches!(header("sec-fetch-dest"), Some("document" | "iframe" | "frame"))
            || header("accept").is_some_and(|a| a.contains("text/html"));
        let back = match req.uri().path_and_query() {
            Some(pq) if req.method() != http::Method::POST => pq.as_str().to_owned(),
            _ => String::new(),
        };
        let mut r = if page || error.is_some() {
            let mut r = Response::new(Body::from(login_page(&back, &t.bucket, &d.scope, error)));
            r.headers_mut().insert(h::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            r
        } else {
            let mut r = text(StatusCode::UNAUTHORIZED, "this object is password-protected");
            let realm = format!("Basic realm=\"{}/{}\", charset=\"UTF-8\"", t.bucket, d.scope.replace('"', ""));
            if let (false, Ok(v)) = (browser, HeaderValue::from_str(&realm)) {
                r.headers_mut().insert(h::WWW_AUTHENTICATE, v);
            }
            r
        };
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(h::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        r
    }

    /// The login form's POST: on the right password, a cookie and a 303 back to `to`.
    pub(super) async fn login<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let limited = http_body_util::Limited::new(body, MAX_FORM);
        let Ok(collected) = limited.collect().await else {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "the login form is too large");
        };
        let form = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
        let (mut to, mut password) = (String::new(), String::new());
        for (k, v) in crate::http::query::pairs(&form) {
            match k.as_ref() {
                "to" => to = v.into_owned(),
                "password" => password = v.into_owned(),
                _ => {}
            }
        }
        // Only a path on this host: never an open redirect.
        if !to.starts_with('/') || to.starts_with("//") || to.contains('\\') {
            return text(StatusCode::BAD_REQUEST, "bad request: the login form names no page to return to");
        }
        let path = to.split(['?', '#']).next().unwrap_or("/");
        let host = parts.headers.get(h::HOST).and_then(|v| v.to_str().ok()).or_else(|| parts.uri.host());
        let t = match self.router.target(host, path) {
            Ok(Some(t)) => t,
            _ => return text(StatusCode::BAD_REQUEST, "bad request: the login form names no object"),
        };
        let d = self.policy.decide(&t.bucket, &t.key);
        if d.access != crate::config::AccessMode::Password || d.password.is_none() {
            return text(StatusCode::BAD_REQUEST, "bad request: that object is not password-protected");
        }
        let req = Request::from_parts(parts, ());
        if !self.policy.check_password(&d, &password) {
            tracing::info!(bucket = %t.bucket, scope = %d.scope, "wrong password at the login form");
            let mut r = self.login_required(&req, &t, &d, Some("Wrong password."));
            r.extensions_mut().insert(crate::throttle::Failed);
            // Keep the page's return address.
            *r.body_mut() = Body::from(login_page(&to, &t.bucket, &d.scope, Some("Wrong password.")));
            return r;
        }
        self.logged_in_response(&req, &t, &d, &to)
    }

    fn logged_in_response(&self, req: &Request<()>, t: &Target, d: &Decision, to: &str) -> Response<Body> {
        let ttl = i64::try_from(self.s.load().login_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let expires = crate::clock::now_secs() + ttl;
        let generation = d.password.as_ref().map(|s| s.generation()).unwrap_or_default();
        let value = cookie::make(&self.policy.cookie_key(), &t.bucket, &d.scope, expires, &generation);
        let dir = &d.scope[..d.scope.rfind('/').map_or(0, |i| i + 1)];
        let path = match t.style {
            Style::Path => format!("/{}/{dir}", t.bucket),
            Style::Host => format!("/{dir}"),
        };
        let path = percent_encoding::utf8_percent_encode(&path, COOKIE_PATH).to_string();
        let https = req.headers().get("x-forwarded-proto").is_some_and(|v| v == "https")
            || self.s.load().base_url.as_deref().is_some_and(|u| u.starts_with("https://"));
        let set = ::cookie::Cookie::build((cookie::name(&t.bucket, &d.scope), value))
            .path(path)
            .max_age(::cookie::time::Duration::seconds(ttl))
            .http_only(true)
            .same_site(::cookie::SameSite::Lax)
            .secure(https)
            .build()
            .to_string();
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SEE_OTHER;
        let hs = r.headers_mut();
        if let (Ok(c), Ok(l)) = (HeaderValue::from_str(&set), HeaderValue::from_str(to)) {
            hs.insert(h::SET_COOKIE, c);
            hs.insert(h::LOCATION, l);
        }
        hs.insert(h::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// Characters escaped in a cookie Path (everything but a URL path's own).
const COOKIE_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b';')
    .add(b',')
    .add(b'%')
    .add(b'?')
    .add(b'#')
    .add(b'<')
    .add(b'>');

/// Escapes text for HTML content and quoted attributes (`html-escape`, as the status
/// page does).
fn escape_html(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}

/// The login page: one password field, no outside assets.
fn login_page(back: &str, bucket: &str, scope: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p id=\"error\" role=\"alert\">{}</p>", escape_html(e))).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Password required</title>
<style>body{{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;padding:0 1rem}}
input{{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box;margin:.3rem 0}}#error{{color:#b00}}</style>
</head><body>
<h1>Password required</h1>
<p>{what} is password-protected.</p>
{error}
<form id="login" method="post" action="{LOGIN_PATH}">
<input type="hidden" name="to" value="{back}">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" autofocus required>
<input type="submit" value="Open">
</form>
</body></html>
"#,
        what = escape_html(&format!("{bucket}/{scope}")),
        back = escape_html(back),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_escapes_what_it_echoes() {
        let p = super::login_page("/b/\"><script>x</script>", "b", "<i>", Some("Wrong <b>"));
        assert!(!p.contains("<script>x") && !p.contains("<i>") && !p.contains("<b>"));
        assert!(p.contains("action=\"/_strata/login\""));
    }
}
