//! The listeners of one server: the main one (S3 and the web front end), the admin one
//! when `[admin] listen` is set, and the plain-HTTP one beside TLS when
//! `tls.plain_listen` is set, which serves or redirects to HTTPS.

use super::handover::Inherited;
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
    /// Binds every listener `config` asks for, or takes the one of its role that this
    /// process inherited (a binary upgrade, socket activation).
    pub(super) async fn bind(config: &Config, mut inherited: Option<&mut Inherited>) -> Result<Listeners> {
        let mut take = |role: &str| inherited.as_deref_mut().map(|i| i.take(role)).transpose().map(Option::flatten);
        let addr = config.listen.ok_or_else(|| Error::new(ErrorKind::Config, "listen is not resolved"))?;
        let main = match take("main")? {
            Some(l) => l,
            None => bind(addr).await?,
        };
        let admin = match (take("admin")?, config.admin.listen) {
            (Some(l), Some(_)) => Some(l),
            (_, Some(a)) => Some(bind(a).await?),
            (_, None) => None,
        };
        let plain = match (take("plain")?, config.tls.plain_listen.filter(|_| config.tls.enabled())) {
            (Some(l), Some(_)) => Some(l),
            (_, Some(a)) => Some(bind(a).await?),
            (_, None) => None,
        };
        Ok(Listeners { main, admin, plain })
    }

    /// Copies of the sockets (role, descriptor) that a successor inherits at an upgrade.
    pub(super) fn sockets(&self) -> Result<Vec<(String, std::os::fd::OwnedFd)>> {
        use std::os::fd::AsFd;
        let mut out = vec![("main".to_owned(), self.main.as_fd().try_clone_to_owned()?)];
        if let Some(l) = &self.admin {
            out.push(("admin".to_owned(), l.as_fd().try_clone_to_owned()?));
        }
        if let Some(l) = &self.plain {
            out.push(("plain".to_owned(), l.as_fd().try_clone_to_owned()?));
        }
        Ok(out)
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
