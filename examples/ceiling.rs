//! The benchmarks' ceiling (`scripts/bench-hot`, issue 22): a bare hyper server that
//! answers every request with one static body and does nothing else, on the same runtime
//! settings as strata. What strata does on a hot hit is measured as a share of this.
//!
//! Usage: `ceiling ADDR BYTES` (for example `ceiling 127.0.0.1:7090 16384`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args.next().ok_or("usage: ceiling ADDR BYTES")?.parse()?;
    let size: usize = args.next().ok_or("usage: ceiling ADDR BYTES")?.parse()?;
    let body = Bytes::from(vec![b'x'; size]);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("ceiling listening on http://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        let mut resp = Response::new(Full::new(body));
                        let ctype = http::HeaderValue::from_static("application/octet-stream");
                        resp.headers_mut().insert(http::header::CONTENT_TYPE, ctype);
                        Ok::<_, Infallible>(resp)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}
