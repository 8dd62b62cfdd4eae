//! The listeners of one server: the main one (S3 and the web front end), the admin one
//! when `[admin] listen` is set, and the plain-HTTP one beside TLS when
//! `tls.plain_listen` is set, which serves or redirects to HTTPS.

use crate::api::Front;
use crate::config::{Config, PlainMode};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{ServerLimits, serve};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The bound sockets, before serving.
pub(super) struct Listeners {
    main: TcpListener,
    admin: Option<TcpListener>,
    plain: Option<TcpListener>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::new(ErrorKind::Config, format!("cannot listen on {addr}")).with_source(e))
}

impl Listeners {
    /// Binds every listener `config` asks for.
    pub(super) async fn bind(config: &Config) -> Result<Listeners> {
        let addr = config.listen.ok_or_else(|| Error::new(ErrorKind::Config, "listen is not resolved"))?;
        let main = bind(addr).await?;
        let admin = match config.admin.listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let plain = match config.tls.plain_listen.filter(|_| config.tls.enabled()) {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        Ok(Listeners { main, admin, plain })
    }

    /// The main listener's address.
    pub(super) fn main_addr(&self) -> Result<SocketAddr> {
        Ok(self.main.local_addr()?)
    }

    /// The admin listener's address, if there is one.
    pub(super) fn admin_addr(&self) -> Result<Option<SocketAddr>> {
        Ok(self.admin.as_ref().map(|l| l.local_addr()).transpose()?)
    }

    /// The plain listener's address, if there is one.
    pub(super) fn plain_addr(&self) -> Result<Option<SocketAddr>> {
        Ok(self.plain.as_ref().map(|l| l.local_addr()).transpose()?)
    }

    /// Serves every listener until `shutdown`; `tls` (when set) is spoken on the main and
    /// admin listeners.
    pub(super) fn serve(
        self,
        front: Arc<Front>,
        limits: ServerLimits,
        tls: Option<TlsAcceptor>,
        plain: PlainMode,
        shutdown: CancellationToken,
    ) -> Result<Vec<JoinHandle<Result<()>>>> {
        let https_port = self.main.local_addr()?.port();
        let main = front.clone();
        let handler = move |req| {
            let f = main.clone();
            async move { f.handle_main(req).await }
        };
        let mut tasks =
            vec![tokio::spawn(serve(self.main, limits.clone(), tls.clone(), handler.clone(), shutdown.clone()))];
        if let Some(l) = self.admin {
            let admin = front.clone();
            let handler = move |req| {
                let f = admin.clone();
                async move { f.handle_admin(req).await }
            };
            tasks.push(tokio::spawn(serve(l, limits.clone(), tls, handler, shutdown.clone())));
        }
        match (self.plain, plain) {
            (Some(l), PlainMode::Serve) => tasks.push(tokio::spawn(serve(l, limits, None, handler, shutdown))),
            (Some(l), PlainMode::Redirect) => {
                let handler = move |req: hyper::Request<hyper::body::Incoming>| async move {
                    crate::api::to_https(&req, https_port)
                };
                tasks.push(tokio::spawn(serve(l, limits, None, handler, shutdown)));
            }
            (None, _) => {}
        }
        Ok(tasks)
    }
}
