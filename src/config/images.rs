//! `[images]`: derivatives made at the origin (`docs/design/images.md`): the limits that
//! keep a render bounded, the render pool, and the named presets that need no signature.
//! The words of the option grammar (fit modes, formats) are defined here because presets
//! name them; `crate::images` parses URLs and renders.

use super::{ByteSize, HumanDuration};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How a derivative fills its box of width × height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Cover the box, cropping what overflows (centred).
    Cover,
    /// Fit inside the box and pad the rest (transparent, or white for JPEG).
    Contain,
    /// Stretch to the box, ignoring the aspect ratio.
    Fill,
    /// Fit inside the box; the output is as large as that allows and no larger.
    #[default]
    Inside,
}

impl Fit {
    /// Every fit mode, as the URL and the config name them.
    pub const ALL: [(Fit, &'static str); 4] =
        [(Fit::Cover, "cover"), (Fit::Contain, "contain"), (Fit::Fill, "fill"), (Fit::Inside, "inside")];

    /// The mode's name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(f, _)| *f == self).map_or("inside", |(_, n)| n)
    }
}

/// The encoding of a derivative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Progressive JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// Lossy WebP.
    Webp,
    /// AVIF (rav1e; several times slower to make than WebP, so asked for by name only).
    Avif,
    /// The best the client's `Accept` takes (WebP, else JPEG; never AVIF, which costs far
    /// more to make); answers carry `Vary: Accept`.
    #[default]
    Auto,
}

impl Format {
    /// Every format, as the URL and the config name them.
    pub const ALL: [(Format, &'static str); 5] = [
        (Format::Jpeg, "jpeg"),
        (Format::Png, "png"),
        (Format::Webp, "webp"),
        (Format::Avif, "avif"),
        (Format::Auto, "auto"),
    ];

    /// The format's name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(f, _)| *f == self).map_or("auto", |(_, n)| n)
    }
}

/// `[images.presets.NAME]`: a derivative anyone may ask for by name, unsigned.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// Width of the box, in pixels.
    pub width: Option<u32>,
    /// Height of the box, in pixels.
    pub height: Option<u32>,
    /// How the image fills the box. Default "inside".
    #[serde(default)]
    pub fit: Fit,
    /// Output format. Default "auto".
    #[serde(default)]
    pub format: Format,
    /// Encoder quality, 1 to 100. Default: `images.quality`.
    pub quality: Option<u8>,
    /// Keep the original's EXIF and ICC profile (JPEG output only). Default false.
    #[serde(default)]
    pub keep_metadata: bool,
}

/// `[images]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Serve derivatives at all (`?im=` on the web front end). Default true.
    pub enabled: bool,
    /// Largest original that is decoded. Default "64MiB".
    pub max_source_bytes: ByteSize,
    /// Most pixels an original may have (decompression bombs). Default 100 million.
    pub max_source_pixels: u64,
    /// Longest side of a derivative, after the device pixel ratio. Default 4096.
    pub max_output_side: u32,
    /// Time one render may take before the client gets 503. Default "10s".
    pub render_timeout: HumanDuration,
    /// Renders at once (threads of the render pool). Default: the number of CPUs.
    pub concurrency: Option<usize>,
    /// Renders that may wait for a thread before more are refused (503). Default 64.
    pub queue: usize,
    /// Encoder quality when a URL or preset gives none. Default 80.
    pub quality: u8,
    /// Derivatives whose size is remembered (each entry is small; the bytes are in the hot
    /// tier). Default 100000.
    pub index_entries: usize,
    /// Named presets: `?im=NAME` needs no signature.
    pub presets: BTreeMap<String, Preset>,
    /// A backend (`[backends]`) that keeps a copy of every derivative, so derivatives
    /// outlive the hot tier (a restart, an eviction, a lost disk). Default: none.
    pub store: Option<String>,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_source_bytes: ByteSize(64 << 20),
            max_source_pixels: 100_000_000,
            max_output_side: 4096,
            render_timeout: HumanDuration(Duration::from_secs(10)),
            concurrency: None,
            queue: 64,
            quality: 80,
            index_entries: 100_000,
            presets: BTreeMap::new(),
            store: None,
        }
    }
}

impl ImagesConfig {
    /// Checks the fields; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_source_bytes.0 == 0 || self.max_source_pixels == 0 {
            return Err("max_source_bytes and max_source_pixels: must be above 0".into());
        }
        if !(16..=16_383).contains(&self.max_output_side) {
            // 16383 is the largest side WebP can encode.
            return Err("max_output_side: must be between 16 and 16383".into());
        }
        if self.render_timeout.0 < Duration::from_millis(100) {
            return Err("render_timeout: must be at least 100ms".into());
        }
        if self.concurrency == Some(0) || self.concurrency.is_some_and(|c| c > 256) {
            return Err("concurrency: must be between 1 and 256".into());
        }
        if !(1..=100).contains(&self.quality) {
            return Err("quality: must be between 1 and 100".into());
        }
        for (name, p) in &self.presets {
            let ok_name = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok_name {
                return Err(format!("presets.{name}: a name is 1 to 64 letters, digits, '-' or '_'"));
            }
            let side = |v: Option<u32>| v.is_none_or(|v| (1..=self.max_output_side).contains(&v));
            if !side(p.width) || !side(p.height) {
                return Err(format!("presets.{name}: width and height must be between 1 and max_output_side"));
            }
            if p.quality.is_some_and(|q| !(1..=100).contains(&q)) {
                return Err(format!("presets.{name}.quality: must be between 1 and 100"));
            }
        }
        Ok(())
    }
}
