//! Renders one file N times through `strata::images::render` and prints renders per second:
//! `cargo run --release --example render -- FILE WIDTH N [webp|jpeg|png]`. For profiling the
//! render path without HTTP (`perf record -g`).

use strata::config::{Fit, Format};
use strata::images::options::Resolved;
use strata::images::render::{Limits, render};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (file, width, n) = (&args[1], args[2].parse().unwrap_or(400), args[3].parse().unwrap_or(10));
    let format = match args.get(4).map(String::as_str) {
        Some("webp") => Format::Webp,
        Some("png") => Format::Png,
        _ => Format::Jpeg,
    };
    let src = std::fs::read(file).expect("the file reads");
    let r = Resolved {
        width: Some(width),
        height: Some(width),
        fit: Fit::Inside,
        format,
        quality: 80,
        keep_metadata: false,
        varies: false,
    };
    let limits = Limits { max_source_pixels: 100_000_000, max_output_side: 4096 };
    if std::env::var_os("DECODE_ONLY").is_some() {
        let t = std::time::Instant::now();
        for _ in 0..n {
            let img = image::load_from_memory(&src).expect("it decodes");
            std::hint::black_box(img);
        }
        println!("image (zune-jpeg) full decode: {:.1} ms each", t.elapsed().as_secs_f64() * 1000.0 / n as f64);
        return;
    }
    let t = std::time::Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += render(&src, &r, &limits).expect("it renders").bytes.len();
    }
    let s = t.elapsed().as_secs_f64();
    println!("{n} renders in {s:.3}s: {:.2}/s, {} bytes each", n as f64 / s, bytes / n);
}
