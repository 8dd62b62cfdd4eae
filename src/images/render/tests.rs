use super::*;

fn limits() -> Limits {
    Limits { max_source_pixels: 100_000_000, max_output_side: 4096 }
}

fn ask(w: Option<u32>, h: Option<u32>, fit: Fit, format: Format) -> Resolved {
    Resolved { width: w, height: h, fit, format, quality: 80, keep_metadata: false, varies: false }
}

/// A 640 × 480 gradient: red grows to the right, green downwards.
fn gradient(w: u32, h: u32) -> Vec<u8> {
    (0..h).flat_map(|y| (0..w).flat_map(move |x| [(x * 255 / w) as u8, (y * 255 / h) as u8, 64])).collect()
}

fn jpeg(w: u16, h: u16, exif: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    if let Some(e) = exif {
        enc.add_exif_metadata(e).unwrap();
    }
    enc.encode(&gradient(w.into(), h.into()), w, h, jpeg_encoder::ColorType::Rgb).unwrap();
    out
}

/// A little-endian TIFF block holding one tag: Orientation = `o`.
fn exif_orientation(o: u16) -> Vec<u8> {
    let mut t = b"II*\0".to_vec();
    t.extend(8u32.to_le_bytes());
    t.extend(1u16.to_le_bytes());
    t.extend(0x0112u16.to_le_bytes());
    t.extend(3u16.to_le_bytes());
    t.extend(1u32.to_le_bytes());
    t.extend(u32::from(o).to_le_bytes());
    t.extend(0u32.to_le_bytes());
    t
}

fn size_of(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("the output decodes");
    (img.width(), img.height())
}

#[test]
fn each_fit_gives_its_documented_size() {
    let src = jpeg(640, 480, None);
    let r = |w, h, fit| size_of(&render(&src, &ask(w, h, fit, Format::Jpeg), &limits()).unwrap().bytes);
    assert_eq!(r(Some(100), None, Fit::Inside), (100, 75));
    assert_eq!(r(None, Some(60), Fit::Inside), (80, 60));
    assert_eq!(r(Some(100), Some(100), Fit::Inside), (100, 75));
    assert_eq!(r(Some(100), Some(100), Fit::Cover), (100, 100));
    assert_eq!(r(Some(100), Some(100), Fit::Contain), (100, 100));
    assert_eq!(r(Some(100), Some(50), Fit::Fill), (100, 50));
    // Never enlarged: a bigger box shrinks to the source, keeping its aspect ratio.
    assert_eq!(r(Some(2000), None, Fit::Inside), (640, 480));
    assert_eq!(r(Some(1280), Some(1280), Fit::Cover), (480, 480));
}

#[test]
fn cover_crops_the_centre_and_contain_pads() {
    let src = jpeg(640, 480, None);
    let png = render(&src, &ask(Some(100), Some(100), Fit::Contain, Format::Png), &limits()).unwrap();
    let img = image::load_from_memory(&png.bytes).unwrap().into_rgba8();
    assert_eq!(img.get_pixel(50, 2)[3], 0, "the band above the picture is transparent");
    assert_eq!(img.get_pixel(50, 50)[3], 255);
    let cover = render(&src, &ask(Some(100), Some(100), Fit::Cover, Format::Png), &limits()).unwrap();
    let img = image::load_from_memory(&cover.bytes).unwrap().into_rgb8();
    // The centre crop spans x from 80 to 560 of 640: red from about 32 to 223.
    let (left, right) = (img.get_pixel(0, 50)[0], img.get_pixel(99, 50)[0]);
    assert!((20..60).contains(&left) && (200..240).contains(&right), "{left} {right}");
}

#[test]
fn exif_orientation_is_applied_and_stripped() {
    // Orientation 6: the viewer sees the 640 × 480 pixels turned to 480 × 640.
    let src = jpeg(640, 480, Some(&exif_orientation(6)));
    let out = render(&src, &ask(Some(120), None, Fit::Inside, Format::Jpeg), &limits()).unwrap();
    assert_eq!(size_of(&out.bytes), (120, 160));
    assert!(!out.bytes.windows(6).any(|w| w == b"Exif\0\0"), "metadata is stripped by default");
    let mut keep = ask(Some(120), None, Fit::Inside, Format::Jpeg);
    keep.keep_metadata = true;
    let kept = render(&src, &keep, &limits()).unwrap();
    assert!(kept.bytes.windows(6).any(|w| w == b"Exif\0\0"), "meta keeps EXIF");
    let mut dec = image::codecs::jpeg::JpegDecoder::new(Cursor::new(&kept.bytes)).unwrap();
    let o = dec.exif_metadata().unwrap().as_deref().and_then(Orientation::from_exif_chunk);
    assert_eq!(o, Some(Orientation::NoTransforms), "the kept orientation no longer turns the pixels");
}

#[test]
fn formats_are_what_they_say() {
    let src = jpeg(320, 240, None);
    let jpg = render(&src, &ask(Some(64), None, Fit::Inside, Format::Jpeg), &limits()).unwrap().bytes;
    assert!(jpg.windows(2).any(|w| w == [0xFF, 0xC2]), "progressive JPEG (SOF2)");
    let webp = render(&src, &ask(Some(64), None, Fit::Inside, Format::Webp), &limits()).unwrap().bytes;
    assert!(webp.starts_with(b"RIFF") && &webp[8..12] == b"WEBP");
    assert_eq!(size_of(&webp), (64, 48));
    let png = render(&src, &ask(Some(64), None, Fit::Inside, Format::Png), &limits()).unwrap().bytes;
    assert!(png.starts_with(b"\x89PNG"));
    let avif = render(&src, &ask(Some(64), None, Fit::Inside, Format::Avif), &limits()).unwrap().bytes;
    assert_eq!((&avif[4..12], avif_size(&avif)), (&b"ftypavif"[..], (64, 48)), "an AVIF file of the size asked");
    // PNG, GIF and WebP sources decode too.
    for f in [ImageFormat::Png, ImageFormat::Gif, ImageFormat::WebP] {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_raw(320, 240, gradient(320, 240)).unwrap());
        let mut buf = Cursor::new(Vec::new());
        let img = if f == ImageFormat::Gif { DynamicImage::ImageRgba8(img.to_rgba8()) } else { img };
        img.write_to(&mut buf, f).unwrap();
        let out = render(buf.get_ref(), &ask(Some(32), None, Fit::Inside, Format::Jpeg), &limits()).unwrap();
        assert_eq!(size_of(&out.bytes), (32, 24), "{f:?}");
    }
}

/// The image size an AVIF file declares (its `ispe` property: version and flags, then the
/// width and the height, big-endian).
fn avif_size(b: &[u8]) -> (u32, u32) {
    let at = b.windows(4).position(|w| w == b"ispe").expect("an ispe box");
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (be(at + 8), be(at + 12))
}

#[test]
fn garbage_truncation_and_bombs_are_refused_with_a_reason() {
    let r = ask(Some(64), None, Fit::Inside, Format::Jpeg);
    assert!(matches!(render(b"hello, not an image", &r, &limits()), Err(RenderError::NotAnImage(_))));
    let src = jpeg(320, 240, None);
    for cut in [20, 200, src.len() / 3, src.len() - 10, src.len() - 2] {
        match render(&src[..cut], &r, &limits()) {
            Err(RenderError::Unreadable(_)) => {}
            other => panic!("cut at {cut} of {}: {other:?}", src.len()),
        }
    }
    // Damage inside the scan is caught by libjpeg (or decodes, as browsers show it), never
    // a panic: every byte flipped in turn.
    for at in (2..src.len()).step_by(97) {
        let mut bad = src.clone();
        bad[at] ^= 0x55;
        let _ = render(&bad, &r, &limits());
    }
    let small = Limits { max_source_pixels: 10_000, max_output_side: 4096 };
    assert!(matches!(render(&src, &r, &small), Err(RenderError::TooLarge(_))));
    assert!(matches!(render(&bomb_png(100_000, 100_000), &r, &limits()), Err(RenderError::TooLarge(_))));
}

/// A 1 × 1 PNG whose header claims `w` × `h` (its CRC fixed): a decompression bomb's
/// header.
pub(crate) fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(image::RgbImage::new(1, 1)).write_to(&mut buf, ImageFormat::Png).unwrap();
    let mut png = buf.into_inner();
    // Signature (8), length (4), "IHDR" (4), then width and height.
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A colour transform is built once per profile and shared by later renders; one that
/// cannot be used is remembered as such, and the pixels stay as they are.
#[test]
fn a_profile_transform_is_built_once_and_converts_like_a_fresh_one() {
    let p3 = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let first = transform_to_srgb(&p3, false).expect("Display P3 transforms to sRGB");
    let again = transform_to_srgb(&p3, false).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the kept transform is reused");
    let rgba = transform_to_srgb(&p3, true).unwrap();
    assert!(!Arc::ptr_eq(&first, &rgba), "RGBA has a transform of its own");
    // The kept transform converts exactly as one built now.
    let srgb = moxcms::ColorProfile::new_srgb();
    let fresh = moxcms::ColorProfile::new_from_slice(&p3)
        .unwrap()
        .create_transform_8bit(moxcms::Layout::Rgb, &srgb, moxcms::Layout::Rgb, moxcms::TransformOptions::default())
        .unwrap();
    let px = gradient(64, 8);
    let (mut a, mut b) = (vec![0u8; px.len()], vec![0u8; px.len()]);
    first.transform(&px, &mut a).unwrap();
    fresh.transform(&px, &mut b).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, px, "P3 to sRGB changes saturated colours");
    assert!(transform_to_srgb(b"not a profile", false).is_none());
    let mut garbage = Pixels { data: px.clone(), width: 64, height: 8, alpha: false };
    to_srgb(&mut garbage, b"not a profile");
    assert_eq!(garbage.data, px, "an unusable profile leaves the pixels");
}
