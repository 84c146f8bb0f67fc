//! A host's own `tracing` dispatcher, for when the global one is not its.
//!
//! Spans are exported by the tracing layer of the subscriber they are
//! recorded in, with that layer's resource (`service.name`). A process
//! has one global subscriber; when a second host starts in the same process
//! (the in-process demo, tests) — or a host is told not to install the
//! global one — its spans would go to the other host's exporter under the
//! other service's name, or nowhere. So such a host, when its tracing
//! provider is enabled, builds a dispatcher of its own (its logging layer
//! plus its tracing layer) and runs its request handling, its message
//! handlers and its publishes in it.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::Either;
use logging_init::{BoxedLayer, LoggingInitError};
use tower::Service;
use tracing::Dispatch;
use tracing::instrument::{WithDispatch, WithSubscriber as _};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::config::ChassisConfig;

/// Builds the host's own dispatcher when it needs one: its tracing
/// provider is enabled and the global subscriber is not its own (`installed`
/// is whether the host installed the global subscriber just now).
pub(crate) fn own_dispatch(
    chassis: &ChassisConfig,
    tracing: &traces_init::TracingProvider,
    installed: bool,
) -> Result<Option<Dispatch>, LoggingInitError> {
    if installed {
        return Ok(None);
    }
    let Some(layer) = tracing.layer() else {
        return Ok(None);
    };
    let layers: Vec<BoxedLayer> = vec![
        logging_init::build(&chassis.logging, crate::correlation::log_context())?,
        layer,
    ];
    Ok(Some(Dispatch::new(Registry::default().with(layers))))
}

/// Runs `future` in `dispatch` when there is one.
pub(crate) fn in_dispatch<F: Future>(
    dispatch: Option<&Dispatch>,
    future: F,
) -> Either<WithDispatch<F>, F> {
    match dispatch {
        Some(dispatch) => Either::Left(future.with_subscriber(dispatch.clone())),
        None => Either::Right(future),
    }
}

/// Creates what `make` creates (spans) in `dispatch` when there is one.
pub(crate) fn scoped<T>(dispatch: Option<&Dispatch>, make: impl FnOnce() -> T) -> T {
    match dispatch {
        Some(dispatch) => tracing::dispatcher::with_default(dispatch, make),
        None => make(),
    }
}

/// The host's HTTP service, run in the host's own dispatcher when it has one.
#[derive(Clone, Debug)]
pub struct InDispatch<S> {
    inner: S,
    dispatch: Option<Dispatch>,
}

impl<S> InDispatch<S> {
    pub(crate) fn new(inner: S, dispatch: Option<Dispatch>) -> Self {
        Self { inner, dispatch }
    }
}

impl<S: crate::middleware::ForPeer> crate::middleware::ForPeer for InDispatch<S> {
    fn for_peer(&self, peer: std::net::SocketAddr) -> Self {
        Self {
            inner: self.inner.for_peer(peer),
            dispatch: self.dispatch.clone(),
        }
    }
}

impl<S> Service<Request> for InDispatch<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<WithDispatch<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match &self.dispatch {
            Some(dispatch) => {
                let future = tracing::dispatcher::with_default(dispatch, || self.inner.call(req));
                Either::Left(future.with_subscriber(dispatch.clone()))
            }
            None => Either::Right(self.inner.call(req)),
        }
    }
}
