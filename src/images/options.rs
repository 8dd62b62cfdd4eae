//! What a derivative URL asks for: `?im=` with a preset's name or a list of options, and
//! the signature that lets a list of options through (`ik`, `is`, optional `ie`).
//!
//! The grammar is a comma-separated list of words, each at most once, in any order:
//! `w400` `h300` (the box, in CSS pixels), `cover` `contain` `fill` `inside` (the fit),
//! `jpeg` `png` `webp` `avif` `auto` (the format), `q80` (quality), `dpr2` or `dpr1.5`
//! (device pixel ratio, 1 to 4), `meta` (keep metadata). Every list has one canonical
//! form ([`Options::canonical`]); the signature covers it, so the order of words in a URL
//! does not matter, and neither does a signature key's rotation for the cache (the cache
//! key is the resolved [`Resolved::tag`], never the signature).
//!
//! This module parses and checks; it must not render or read objects.

use crate::config::{Fit, Format, ImagesConfig, Preset};
use crate::policy::link::LinkKeys;

/// The purpose of image signatures in [`LinkKeys::sign_fields`]. A `:` never occurs in a
/// bucket name, so no link signature (whose first field is a bucket) shares a message.
const PURPOSE: &str = "strata:image";

/// Longest `im` value looked at.
const MAX_LEN: usize = 200;

/// Options of one derivative, before the client's `Accept` and the DPR are applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// Box width, CSS pixels.
    pub width: Option<u32>,
    /// Box height, CSS pixels.
    pub height: Option<u32>,
    /// Fit mode.
    pub fit: Fit,
    /// Format (`Auto`: from `Accept`).
    pub format: Format,
    /// Encoder quality (`None`: the config's).
    pub quality: Option<u8>,
    /// Device pixel ratio in tenths (10 to 40).
    pub dpr_tenths: u8,
    /// Keep EXIF and ICC (JPEG output only).
    pub keep_metadata: bool,
}

/// Why a derivative URL is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The options do not parse (400), with what is wrong.
    Invalid(String),
    /// Options that need a signature came without a valid one (403).
    Unsigned,
    /// A valid signature past its `ie` (410).
    Expired,
}

/// The parameters of a derivative request, as the query gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The `im` value.
    pub im: String,
    /// Signing key id.
    pub ik: Option<String>,
    /// Signature.
    pub is: Option<String>,
    /// Expiry, Unix seconds.
    pub ie: Option<String>,
}

impl Asked {
    /// The derivative parameters of `query`, or `None` when it asks for no derivative.
    pub fn from_query(query: &str) -> Result<Option<Asked>, Refusal> {
        let mut a = Asked { im: String::new(), ik: None, is: None, ie: None };
        let mut any = false;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "im" => {
                    any = true;
                    if !a.im.is_empty() {
                        return Err(Refusal::Invalid("im: given twice".into()));
                    }
                    a.im = v.into_owned();
                    continue;
                }
                "ik" => &mut a.ik,
                "is" => &mut a.is,
                "ie" => &mut a.ie,
                _ => continue,
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(Refusal::Invalid(format!("{k}: given twice")));
            }
        }
        if !any {
            return if a.is.is_some() { Err(Refusal::Invalid("is: a signature without im".into())) } else { Ok(None) };
        }
        if a.im.is_empty() || a.im.len() > MAX_LEN {
            return Err(Refusal::Invalid(format!("im: must be 1 to {MAX_LEN} characters")));
        }
        Ok(Some(a))
    }

    /// The options this request may have: a preset's, or its own list when signed for
    /// `bucket`/`key` by one of `keys` and not expired at `now`. A preset's name wins over
    /// a list of one word.
    pub fn authorize(
        &self,
        cfg: &ImagesConfig,
        keys: &LinkKeys,
        (bucket, key): (&str, &str),
        now: i64,
    ) -> Result<Options, Refusal> {
        if let Some(p) = cfg.presets.get(&self.im) {
            return Ok(Options::of_preset(p));
        }
        let opts = Options::parse(&self.im, cfg.max_output_side)?;
        let (Some(id), Some(sig)) = (&self.ik, &self.is) else { return Err(Refusal::Unsigned) };
        let ie = self.ie.as_deref().unwrap_or("");
        let canonical = opts.canonical();
        if !keys.verify_fields(PURPOSE, &[bucket, key, &canonical, ie], id, sig) {
            return Err(Refusal::Unsigned);
        }
        if !ie.is_empty() {
            let exp: i64 = ie.parse().map_err(|_| Refusal::Unsigned)?;
            if now >= exp {
                return Err(Refusal::Expired);
            }
        }
        Ok(opts)
    }
}

/// The query (without `?`) of a signed derivative of `bucket`/`key` with `opts`,
/// optionally expiring at `expires` (Unix seconds). `None` without link keys.
pub fn sign(keys: &LinkKeys, bucket: &str, key: &str, opts: &Options, expires: Option<i64>) -> Option<String> {
    let canonical = opts.canonical();
    let ie = expires.map(|e| e.to_string()).unwrap_or_default();
    let (id, sig) = keys.sign_fields(PURPOSE, &[bucket, key, &canonical, &ie])?;
    let mut q = format!("im={canonical}&ik={}", percent_encoding::utf8_percent_encode(&id, crate::policy::link::QUERY));
    if !ie.is_empty() {
        q.push_str("&ie=");
        q.push_str(&ie);
    }
    q.push_str("&is=");
    q.push_str(&sig);
    Some(q)
}

impl Options {
    /// The options of a preset.
    pub fn of_preset(p: &Preset) -> Options {
        Options {
            width: p.width,
            height: p.height,
            fit: p.fit,
            format: p.format,
            quality: p.quality,
            dpr_tenths: 10,
            keep_metadata: p.keep_metadata,
        }
    }

    /// Parses a list of options; sides above `max_side` are refused.
    pub fn parse(text: &str, max_side: u32) -> Result<Options, Refusal> {
        let bad = |m: String| Err(Refusal::Invalid(m));
        let mut o = Options { dpr_tenths: 10, ..Options::default() };
        let mut seen = [false; 7];
        for word in text.split(',') {
            let slot = if let Some(f) = Fit::ALL.iter().find(|(_, n)| *n == word) {
                o.fit = f.0;
                2
            } else if let Some(f) = Format::ALL.iter().find(|(_, n)| *n == word) {
                o.format = f.0;
                3
            } else if word == "meta" {
                o.keep_metadata = true;
                6
            } else if let Some(n) = word.strip_prefix("dpr") {
                o.dpr_tenths = dpr(n).ok_or_else(|| Refusal::Invalid(format!("{word}: dpr is 1 to 4, e.g. dpr2")))?;
                5
            } else if let Some(n) = word.strip_prefix('q') {
                o.quality = Some(number(n, 1, 100).ok_or_else(|| Refusal::Invalid(format!("{word}: q is 1 to 100")))?);
                4
            } else if let Some((n, wide)) =
                word.strip_prefix('w').map(|n| (n, true)).or(word.strip_prefix('h').map(|n| (n, false)))
            {
                let v = number(n, 1, max_side)
                    .ok_or_else(|| Refusal::Invalid(format!("{word}: a side is 1 to {max_side} pixels")))?;
                if wide {
                    o.width = Some(v)
                } else {
                    o.height = Some(v)
                }
                usize::from(!wide)
            } else {
                return bad(format!("{word:?}: not an option (w, h, fit, format, q, dpr, meta)"));
            };
            if std::mem::replace(&mut seen[slot], true) {
                return bad(format!("{word}: given twice"));
            }
        }
        Ok(o)
    }

    /// The one canonical text of these options: the words in a fixed order, fit and
    /// format always, the others when set.
    pub fn canonical(&self) -> String {
        let mut out = Vec::with_capacity(7);
        if let Some(w) = self.width {
            out.push(format!("w{w}"));
        }
        if let Some(h) = self.height {
            out.push(format!("h{h}"));
        }
        out.push(self.fit.name().to_owned());
        out.push(self.format.name().to_owned());
        if let Some(q) = self.quality {
            out.push(format!("q{q}"));
        }
        if self.dpr_tenths != 10 {
            let (i, f) = (self.dpr_tenths / 10, self.dpr_tenths % 10);
            out.push(if f == 0 { format!("dpr{i}") } else { format!("dpr{i}.{f}") });
        }
        if self.keep_metadata {
            out.push("meta".to_owned());
        }
        out.join(",")
    }

    /// The concrete derivative for a client whose `Accept` header is `accept`: pixel
    /// sizes after the DPR (capped at `max_side`), a concrete format and quality.
    pub fn resolve(&self, accept: Option<&str>, cfg: &ImagesConfig) -> Resolved {
        let scale =
            |v: u32| (u64::from(v) * u64::from(self.dpr_tenths) / 10).clamp(1, u64::from(cfg.max_output_side)) as u32;
        let format = match self.format {
            Format::Auto if accepts(accept, "image/webp") => Format::Webp,
            Format::Auto => Format::Jpeg,
            f => f,
        };
        Resolved {
            width: self.width.map(scale),
            height: self.height.map(scale),
            fit: self.fit,
            format,
            quality: self.quality.unwrap_or(cfg.quality),
            keep_metadata: self.keep_metadata,
            varies: self.format == Format::Auto,
        }
    }
}

/// A derivative as it is rendered and cached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resolved {
    /// Box width, pixels.
    pub width: Option<u32>,
    /// Box height, pixels.
    pub height: Option<u32>,
    /// Fit.
    pub fit: Fit,
    /// Concrete format (never `Auto`).
    pub format: Format,
    /// Encoder quality.
    pub quality: u8,
    /// Keep EXIF and ICC.
    pub keep_metadata: bool,
    /// The format came from `Accept` (the answer says `Vary: Accept`).
    pub varies: bool,
}

impl Resolved {
    /// The derivative's name in the cache, beside its original's version.
    pub fn tag(&self) -> String {
        let side = |p: &str, v: Option<u32>| v.map(|v| format!("{p}{v},")).unwrap_or_default();
        format!(
            "{}{}{},{},q{}{}",
            side("w", self.width),
            side("h", self.height),
            self.fit.name(),
            self.format.name(),
            self.quality,
            if self.keep_metadata { ",meta" } else { "" }
        )
    }

    /// The Content-Type of the output.
    pub fn content_type(&self) -> &'static str {
        match self.format {
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Avif => "image/avif",
            _ => "image/jpeg",
        }
    }
}

/// Whether an `Accept` header takes `mime` (explicitly, with a q above 0).
fn accepts(accept: Option<&str>, mime: &str) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let mut it = part.split(';').map(str::trim);
            let ty = it.next().unwrap_or("");
            let zero = it.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
            ty.eq_ignore_ascii_case(mime) && !zero
        })
    })
}

/// A decimal number in `lo..=hi` without sign, leading zeros or other characters.
fn number<T: TryFrom<u32>>(s: &str, lo: u32, hi: u32) -> Option<T> {
    if s.is_empty() || s.len() > 5 || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u32 = s.parse().ok()?;
    (lo..=hi).contains(&v).then(|| T::try_from(v).ok()).flatten()
}

/// `1` to `4` with at most one decimal (`1.5`), in tenths; `1.0` is written `1`.
fn dpr(s: &str) -> Option<u8> {
    let (i, f) = match s.split_once('.') {
        Some((i, f)) if f.len() == 1 && f != "0" => (i, f),
        Some(_) => return None,
        None => (s, "0"),
    };
    let (i, f): (u8, u8) = (number(i, 1, 4)?, f.parse().ok().filter(|_| f.bytes().all(|b| b.is_ascii_digit()))?);
    let t = i * 10 + f;
    (10..=40).contains(&t).then_some(t)
}

#[cfg(test)]
mod tests;
