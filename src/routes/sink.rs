//! Fan-out: one delivery per (recipient, route), each through its route's
//! own webhook stack, all at once, so one route's outage never delays
//! another's deliveries.

use std::sync::{Mutex, PoisonError};

use futures_util::future::{self, BoxFuture};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::live::LiveRoutes;
use super::reload::RoutesReload;
use crate::sink::{DeliveryOutcome, RecipientPayload, Sink};
use crate::telemetry::Printable;

/// Delivers through the routes in force ([`LiveRoutes`]): one delivery
/// per route the recipient matches.
pub struct RoutedSink {
    live: LiveRoutes,
    /// Handed out once, by [`Sink::background`].
    reload: Mutex<Option<RoutesReload>>,
}

impl RoutedSink {
    /// Over `live`, whose routes `reload` (if any) keeps up to date.
    pub fn new(live: LiveRoutes, reload: Option<RoutesReload>) -> Self {
        Self {
            live,
            reload: Mutex::new(reload),
        }
    }

    pub fn routes(&self) -> &LiveRoutes {
        &self.live
    }
}

impl Sink for RoutedSink {
    /// Ready while any route can take mail: one route's open breaker
    /// must not take the instance out of a load balancer for the others
    /// (mail for that route is answered `451` meanwhile).
    fn is_ready(&self) -> bool {
        self.live
            .current()
            .routes()
            .iter()
            .any(|route| route.sink.is_ready())
    }

    /// Delivers through the routes the transaction pinned at `MAIL`
    /// ([`TransactionRoutes`](super::TransactionRoutes)), those its `RCPT`s
    /// were checked against.
    fn deliver(&self, item: RecipientPayload) -> BoxFuture<'static, DeliveryOutcome> {
        let routes = self.live.of(&item.transaction);
        let hits = routes.table().lookup(&item.payload.recipient);
        if hits.is_empty() {
            // Only a delivery that pinned no routes (none reaches here from
            // a session) can miss: the sender keeps the message and retries.
            tracing::warn!(
                recipient = %Printable(&item.payload.recipient),
                "no route for an accepted recipient"
            );
            return Box::pin(future::ready(DeliveryOutcome::Deferred));
        }
        let deliveries: Vec<_> = hits
            .into_iter()
            .map(|hit| {
                let Some(route) = routes.get(hit.route) else {
                    return Box::pin(future::ready(DeliveryOutcome::Deferred))
                        as BoxFuture<'static, DeliveryOutcome>;
                };
                let mut item = item.clone();
                if item.payload.recipient_tag.is_none() {
                    item.payload.recipient_tag = hit.tag;
                }
                let span = tracing::info_span!("route", route = %route.spec.name);
                Box::pin(route.sink.deliver(item).instrument(span))
            })
            .collect();
        Box::pin(async move {
            let outcomes = future::join_all(deliveries).await;
            DeliveryOutcome::most_urgent(outcomes)
        })
    }

    /// The reloader, and the spool worker when the routes spool.
    fn background(&self, shutdown: CancellationToken) -> Option<BoxFuture<'static, ()>> {
        let reload = self
            .reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The routes share one spool queue, whose worker is handed out once.
        let worker = self
            .live
            .current()
            .routes()
            .iter()
            .find_map(|route| route.sink.background(shutdown.clone()));
        if reload.is_none() && worker.is_none() {
            return None;
        }
        Some(Box::pin(async move {
            let reload = async {
                if let Some(reload) = reload {
                    reload.run(shutdown).await;
                }
            };
            let worker = async {
                if let Some(worker) = worker {
                    worker.await;
                }
            };
            tokio::join!(reload, worker);
        }))
    }
}
