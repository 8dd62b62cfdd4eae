//! One render: the bytes of an original in, the bytes of a derivative out. Decode (JPEG
//! scaled while decoding, PNG, GIF's first frame, WebP), check the limits before any
//! pixel is decoded, resize with Lanczos3, apply the EXIF orientation, convert to sRGB,
//! pad, encode (progressive JPEG, PNG, lossy WebP).
//!
//! Pure and blocking: it runs on the render pool's threads, never on the async runtime.
//! It must not read objects or know URLs. Every way a file can be wrong is a
//! [`RenderError`], never a panic (the pool catches one anyway, as a last resort).

use super::options::Resolved;
use crate::config::{Fit, Format};
use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat};
use sha2::Digest;
use std::io::Cursor;
use std::sync::Arc;

/// The bounds of a render.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most pixels an original may have.
    pub max_source_pixels: u64,
    /// Longest side of an output.
    pub max_output_side: u32,
}

/// Why an original cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// Not an image this build decodes (415).
    NotAnImage(String),
    /// An image, but truncated or damaged (422).
    Unreadable(String),
    /// Over a limit (422), with which.
    TooLarge(String),
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAnImage(m) | Self::Unreadable(m) | Self::TooLarge(m) => f.write_str(m),
        }
    }
}

/// A derivative.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The encoded bytes.
    pub bytes: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Pixels of a decoded image: RGB8 or RGBA8, row-major.
struct Pixels {
    data: Vec<u8>,
    width: u32,
    height: u32,
    alpha: bool,
}

/// What decoding found besides the pixels.
struct Decoded {
    px: Pixels,
    orientation: Orientation,
    icc: Option<Vec<u8>>,
    exif: Option<Vec<u8>>,
}

/// Renders `src` as `r` asks, within `limits`.
pub fn render(src: &[u8], r: &Resolved, limits: &Limits) -> Result<Rendered, RenderError> {
    let format = image::guess_format(src)
        .map_err(|_| RenderError::NotAnImage("not an image strata decodes (JPEG, PNG, GIF, WebP)".into()))?;
    let d = match format {
        ImageFormat::Jpeg => decode_jpeg(src, r, limits)?,
        ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP => decode_other(src, format, limits)?,
        other => return Err(RenderError::NotAnImage(format!("{other:?} is not decoded by this build"))),
    };
    let swapped = swaps_axes(d.orientation);
    // The geometry is planned in the orientation the viewer sees.
    let (sw, sh) = if swapped { (d.px.height, d.px.width) } else { (d.px.width, d.px.height) };
    let g = plan(sw, sh, r, limits.max_output_side);
    let (rw, rh) = if swapped { (g.inner.1, g.inner.0) } else { g.inner };
    let mut px = resize(d.px, rw, rh, g.crop)?;
    if !r.keep_metadata
        && let Some(icc) = &d.icc
    {
        to_srgb(&mut px, icc);
    }
    let px = orient(px, d.orientation);
    let px = match g.canvas {
        Some((cw, ch)) => pad(&px, cw, ch, r.format == Format::Jpeg),
        None => px,
    };
    let meta = r.keep_metadata.then_some((d.icc.as_deref(), d.exif));
    let bytes = encode(&px, r, meta)?;
    Ok(Rendered { bytes, width: px.width, height: px.height })
}

/// Where the pixels go: the size they are resized to, whether the source is cropped to
/// that aspect first (cover), and the canvas they are padded onto (contain).
#[derive(Debug, PartialEq, Eq)]
struct Geometry {
    inner: (u32, u32),
    crop: bool,
    canvas: Option<(u32, u32)>,
}

/// The geometry of a `sw` × `sh` source for `r`. Never enlarges: a box bigger than the
/// source shrinks, keeping its aspect ratio.
fn plan(sw: u32, sh: u32, r: &Resolved, max: u32) -> Geometry {
    let (swf, shf) = (f64::from(sw), f64::from(sh));
    let px = |v: f64| (v.round() as u32).clamp(1, max);
    let keep = |scale: f64| {
        let s = scale.min(1.0);
        (px(swf * s), px(shf * s))
    };
    let whole = f64::from(max) / swf.max(shf);
    match (r.width, r.height) {
        (None, None) => Geometry { inner: keep(whole), crop: false, canvas: None },
        (Some(w), None) => Geometry { inner: keep(f64::from(w) / swf), crop: false, canvas: None },
        (None, Some(h)) => Geometry { inner: keep(f64::from(h) / shf), crop: false, canvas: None },
        (Some(w), Some(h)) => {
            let (wf, hf) = (f64::from(w), f64::from(h));
            match r.fit {
                Fit::Inside => Geometry { inner: keep((wf / swf).min(hf / shf)), crop: false, canvas: None },
                Fit::Contain => Geometry { inner: keep((wf / swf).min(hf / shf)), crop: false, canvas: Some((w, h)) },
                Fit::Fill => Geometry { inner: (w.min(sw), h.min(sh)), crop: false, canvas: None },
                Fit::Cover => {
                    let shrink = (swf / wf).min(shf / hf).min(1.0);
                    Geometry { inner: (px(wf * shrink), px(hf * shrink)), crop: true, canvas: None }
                }
            }
        }
    }
}

fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

fn check_pixels(w: u32, h: u32, limits: &Limits) -> Result<(), RenderError> {
    let n = u64::from(w) * u64::from(h);
    if n == 0 {
        return Err(RenderError::Unreadable("the image has no pixels".into()));
    }
    if n > limits.max_source_pixels {
        return Err(RenderError::TooLarge(format!(
            "the image has {n} pixels, more than images.max_source_pixels ({})",
            limits.max_source_pixels
        )));
    }
    Ok(())
}

/// JPEG through mozjpeg (libjpeg-turbo's decoder, built from source, no system library),
/// asking for the smallest of 1/8, 1/4, 1/2 or full scale that still covers the output:
/// the DCT-domain shrink-on-load libvips uses. CMYK and YCCK files go through `image`.
/// libjpeg reports a fatal error by unwinding (mozjpeg's design); it is caught here and
/// becomes the file's [`RenderError`].
fn decode_jpeg(src: &[u8], r: &Resolved, limits: &Limits) -> Result<Decoded, RenderError> {
    match std::panic::catch_unwind(|| decode_jpeg_scaled(src, r, limits)) {
        Ok(out) => out,
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().unwrap_or_else(|| "libjpeg failed".into());
            Err(RenderError::Unreadable(format!("damaged JPEG: {msg}")))
        }
    }
}

fn decode_jpeg_scaled(src: &[u8], r: &Resolved, limits: &Limits) -> Result<Decoded, RenderError> {
    let unreadable = |e: std::io::Error| RenderError::Unreadable(format!("damaged JPEG: {e}"));
    if !ends_its_scan(src) {
        // libjpeg would fill the missing rows with grey, as browsers show a partial
        // download; a derivative that is cached and served for long must not be that.
        return Err(RenderError::Unreadable("truncated JPEG: no end of image after its scan".into()));
    }
    let markers = [mozjpeg::Marker::APP(1), mozjpeg::Marker::APP(2)];
    let mut dec = mozjpeg::Decompress::builder().with_markers(&markers).from_mem(src).map_err(unreadable)?;
    let (w, h) = (u32::try_from(dec.width()).unwrap_or(u32::MAX), u32::try_from(dec.height()).unwrap_or(u32::MAX));
    check_pixels(w, h, limits)?;
    if matches!(dec.color_space(), mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK) {
        return decode_other(src, ImageFormat::Jpeg, limits);
    }
    let (mut exif, mut icc_parts) = (None, Vec::new());
    for m in dec.markers() {
        if let Some(tiff) = m.data.strip_prefix(b"Exif\0\0") {
            exif.get_or_insert_with(|| tiff.to_vec());
        } else if let Some(part) = m.data.strip_prefix(b"ICC_PROFILE\0").filter(|p| p.len() > 2) {
            icc_parts.push((part[0], part[2..].to_vec()));
        }
    }
    icc_parts.sort_by_key(|(seq, _)| *seq);
    let icc = (!icc_parts.is_empty()).then(|| icc_parts.into_iter().flat_map(|(_, d)| d).collect::<Vec<u8>>());
    let orientation = exif.as_deref().and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
    // The orientation may swap the axes: ask for a size that covers the output either
    // way round.
    let g = plan(w, h, r, limits.max_output_side);
    let want = u64::from(g.inner.0.max(g.inner.1));
    let (long, short) = (u64::from(w.max(h)), u64::from(w.min(h)));
    let want_short = (want * short).div_ceil(long.max(1));
    let covers = |n: u64| (long * n).div_ceil(8) >= want && (short * n).div_ceil(8) >= want_short;
    let n = [1u8, 2, 4, 8].into_iter().find(|&n| covers(u64::from(n))).unwrap_or(8);
    dec.scale(n);
    let mut started = dec.rgb().map_err(unreadable)?;
    let (ow, oh) = (started.width(), started.height());
    let data: Vec<u8> = started.read_scanlines().map_err(unreadable)?;
    let _ = started.finish();
    if data.len() != ow * oh * 3 {
        return Err(RenderError::Unreadable("damaged JPEG: short pixel data".into()));
    }
    let (width, height) = (u32::try_from(ow).unwrap_or(0), u32::try_from(oh).unwrap_or(0));
    Ok(Decoded { px: Pixels { data, width, height, alpha: false }, orientation, icc, exif })
}

/// Whether `src` has an end-of-image marker after the start of its first scan. Markers
/// before the scan are skipped by their lengths, so an EXIF thumbnail's own end marker
/// does not count; inside entropy-coded data, 0xFF is never followed by 0xD9.
fn ends_its_scan(src: &[u8]) -> bool {
    let mut at = 2;
    while at + 4 <= src.len() && src[at] == 0xFF {
        let marker = src[at + 1];
        if marker == 0xDA {
            return src[at..].windows(2).any(|w| w == [0xFF, 0xD9]);
        }
        at += 2 + usize::from(u16::from_be_bytes([src[at + 2], src[at + 3]]));
    }
    false
}

/// PNG, GIF (first frame), WebP, and CMYK JPEGs, through
/// `image`, with its own allocation limit as a second guard.
fn decode_other(src: &[u8], format: ImageFormat, limits: &Limits) -> Result<Decoded, RenderError> {
    let unreadable = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => RenderError::TooLarge(format!("the image is over a limit: {l}")),
        image::ImageError::Unsupported(u) => RenderError::NotAnImage(format!("unsupported image: {u}")),
        e => RenderError::Unreadable(format!("damaged {format:?}: {e}")),
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(src), format);
    let mut l = image::Limits::default();
    l.max_alloc = Some(limits.max_source_pixels.saturating_mul(8));
    reader.limits(l);
    let mut dec = reader.into_decoder().map_err(unreadable)?;
    let (w, h) = dec.dimensions();
    check_pixels(w, h, limits)?;
    let orientation = dec.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = dec.icc_profile().ok().flatten();
    let exif = dec.exif_metadata().ok().flatten();
    let img = DynamicImage::from_decoder(dec).map_err(unreadable)?;
    let alpha = img.color().has_alpha();
    let (width, height) = (img.width(), img.height());
    let data = if alpha { img.into_rgba8().into_raw() } else { img.into_rgb8().into_raw() };
    Ok(Decoded { px: Pixels { data, width, height, alpha }, orientation, icc, exif })
}

/// Resizes to `w` × `h` with Lanczos3 (alpha premultiplied), cropping the source to that
/// aspect ratio first (centred) when `crop`.
fn resize(src: Pixels, w: u32, h: u32, crop: bool) -> Result<Pixels, RenderError> {
    if src.width == w && src.height == h {
        return Ok(src);
    }
    let ty = if src.alpha { PixelType::U8x4 } else { PixelType::U8x3 };
    let from = Image::from_vec_u8(src.width, src.height, src.data, ty)
        .map_err(|e| RenderError::Unreadable(format!("pixel buffer: {e}")))?;
    let mut to = Image::new(w, h, ty);
    let mut opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    if crop {
        opts = opts.fit_into_destination(Some((0.5, 0.5)));
    }
    Resizer::new().resize(&from, &mut to, &opts).map_err(|e| RenderError::Unreadable(format!("resize: {e}")))?;
    Ok(Pixels { data: to.into_vec(), width: w, height: h, alpha: src.alpha })
}

/// Converts pixels in the colour space of `icc` to sRGB. A profile that does not parse,
/// or cannot be transformed, leaves the pixels as they are (browsers assume sRGB).
fn to_srgb(px: &mut Pixels, icc: &[u8]) {
    let Some(t) = transform_to_srgb(icc, px.alpha) else { return };
    let mut out = vec![0u8; px.data.len()];
    if t.transform(&px.data, &mut out).is_ok() {
        px.data = out;
    }
}

/// rav1e's speed for AVIF (1 slow to 10 fast). Measured on a 400 × 267 image, one core:
/// 10 made 18,183 bytes in 109 ms, 8 made 9,351 in 298 ms, 6 made 9,411 in 542 ms; 8
/// halves the file for its time, 6 gains nothing more.
const AVIF_SPEED: u8 = 8;

/// `px` as an AVIF file at `quality` (1 to 100).
fn avif(px: &Pixels, quality: u8) -> Result<Vec<u8>, String> {
    let (w, h) = (px.width as usize, px.height as usize);
    let enc = ravif::Encoder::new().with_quality(f32::from(quality)).with_speed(AVIF_SPEED);
    let out = if px.alpha {
        let rgba: Vec<ravif::RGBA8> =
            px.data.chunks_exact(4).map(|c| ravif::RGBA8::new(c[0], c[1], c[2], c[3])).collect();
        enc.encode_rgba(ravif::Img::new(&rgba[..], w, h))
    } else {
        let rgb: Vec<ravif::RGB8> = px.data.chunks_exact(3).map(|c| ravif::RGB8::new(c[0], c[1], c[2])).collect();
        enc.encode_rgb(ravif::Img::new(&rgb[..], w, h))
    };
    out.map(|e| e.avif_file).map_err(|e| e.to_string())
}

/// Profiles whose transforms are kept: a library's photographs come from few cameras and
/// editors, so few profiles recur.
const TRANSFORMS_KEPT: usize = 64;

/// The 8-bit transform from the colour space of `icc` to sRGB (`alpha`: RGBA, else RGB),
/// or `None` when the profile does not parse or cannot be transformed. Building one
/// evaluates the profile's curves (about 5% of a warm's CPU when built per image), so
/// each is built once per profile and shared: keyed by the SHA-256 of the profile's
/// bytes, it is a pure function of them.
fn transform_to_srgb(icc: &[u8], alpha: bool) -> Option<Arc<moxcms::Transform8BitExecutor>> {
    type Kept = quick_cache::sync::Cache<([u8; 32], bool), Option<Arc<moxcms::Transform8BitExecutor>>>;
    static KEPT: std::sync::OnceLock<Kept> = std::sync::OnceLock::new();
    let kept = KEPT.get_or_init(|| Kept::new(TRANSFORMS_KEPT));
    let key = (<[u8; 32]>::from(sha2::Sha256::digest(icc)), alpha);
    if let Some(t) = kept.get(&key) {
        return t;
    }
    let layout = if alpha { moxcms::Layout::Rgba } else { moxcms::Layout::Rgb };
    let t = moxcms::ColorProfile::new_from_slice(icc).ok().and_then(|profile| {
        let srgb = moxcms::ColorProfile::new_srgb();
        profile.create_transform_8bit(layout, &srgb, layout, moxcms::TransformOptions::default()).ok()
    });
    kept.insert(key, t.clone());
    t
}

/// Applies the EXIF orientation, so the output needs none.
fn orient(px: Pixels, o: Orientation) -> Pixels {
    if o == Orientation::NoTransforms {
        return px;
    }
    let (w, h, alpha) = (px.width, px.height, px.alpha);
    let img = if alpha {
        image::RgbaImage::from_raw(w, h, px.data).map(DynamicImage::ImageRgba8)
    } else {
        image::RgbImage::from_raw(w, h, px.data).map(DynamicImage::ImageRgb8)
    };
    let Some(mut img) = img else { return Pixels { data: Vec::new(), width: 0, height: 0, alpha } };
    img.apply_orientation(o);
    let (width, height) = (img.width(), img.height());
    let data = if alpha { img.into_rgba8().into_raw() } else { img.into_rgb8().into_raw() };
    Pixels { data, width, height, alpha }
}

/// Centres `px` on a `cw` × `ch` canvas: white for JPEG, transparent otherwise.
fn pad(px: &Pixels, cw: u32, ch: u32, opaque: bool) -> Pixels {
    let alpha = !opaque;
    let bpp = if alpha { 4 } else { 3 };
    let fill: &[u8] = if alpha { &[0, 0, 0, 0] } else { &[255, 255, 255] };
    let mut data: Vec<u8> = fill.iter().copied().cycle().take(cw as usize * ch as usize * bpp).collect();
    let (x0, y0) = ((cw.saturating_sub(px.width)) / 2, (ch.saturating_sub(px.height)) / 2);
    let sbpp = if px.alpha { 4 } else { 3 };
    for y in 0..px.height.min(ch) {
        for x in 0..px.width.min(cw) {
            let s = (y as usize * px.width as usize + x as usize) * sbpp;
            let d = ((y0 + y) as usize * cw as usize + (x0 + x) as usize) * bpp;
            data[d..d + 3].copy_from_slice(&px.data[s..s + 3]);
            if alpha {
                data[d + 3] = if px.alpha { px.data[s + 3] } else { 255 };
            }
        }
    }
    Pixels { data, width: cw, height: ch, alpha }
}

/// The metadata a `meta` render keeps: the ICC profile and the EXIF block.
type Kept<'a> = (Option<&'a [u8]>, Option<Vec<u8>>);

/// Encodes `px` as `r.format`; `meta` is the metadata to keep (JPEG only).
fn encode(px: &Pixels, r: &Resolved, meta: Option<Kept<'_>>) -> Result<Vec<u8>, RenderError> {
    let failed = |e: String| RenderError::Unreadable(format!("encoding failed: {e}"));
    let mut out = Vec::new();
    match r.format {
        Format::Png => {
            use image::ImageEncoder;
            let ty = if px.alpha { image::ExtendedColorType::Rgba8 } else { image::ExtendedColorType::Rgb8 };
            image::codecs::png::PngEncoder::new(&mut out)
                .write_image(&px.data, px.width, px.height, ty)
                .map_err(|e| failed(e.to_string()))?;
        }
        Format::Avif => out = avif(px, r.quality).map_err(failed)?,
        Format::Webp => {
            let enc = if px.alpha {
                webp::Encoder::from_rgba(&px.data, px.width, px.height)
            } else {
                webp::Encoder::from_rgb(&px.data, px.width, px.height)
            };
            let mem = enc.encode_simple(false, f32::from(r.quality)).map_err(|e| failed(format!("{e:?}")))?;
            out.extend_from_slice(&mem);
        }
        _ => {
            let rgb = if px.alpha { flatten(&px.data) } else { px.data.clone() };
            let (w, h) = (u16::try_from(px.width), u16::try_from(px.height));
            let (Ok(w), Ok(h)) = (w, h) else { return Err(failed("a JPEG side is at most 65535".into())) };
            let mut enc = jpeg_encoder::Encoder::new(&mut out, r.quality);
            enc.set_progressive(true);
            if let Some((icc, exif)) = meta {
                if let Some(icc) = icc {
                    enc.add_icc_profile(icc).map_err(|e| failed(e.to_string()))?;
                }
                if let Some(mut exif) = exif {
                    // The pixels are already turned; a kept orientation would turn them again.
                    let _ = Orientation::remove_from_exif_chunk(&mut exif);
                    enc.add_exif_metadata(&exif).map_err(|e| failed(e.to_string()))?;
                }
            }
            enc.encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb).map_err(|e| failed(e.to_string()))?;
        }
    }
    Ok(out)
}

/// RGBA over white, as RGB.
fn flatten(rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for p in rgba.chunks_exact(4) {
        let a = u16::from(p[3]);
        for &c in &p[..3] {
            out.push(((u16::from(c) * a + 255 * (255 - a)) / 255) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests;
