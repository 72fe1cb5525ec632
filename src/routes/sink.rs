//! Fan-out: one delivery per (recipient, route), each through its route's
//! own webhook stack, all at once, so one route's outage never delays
//! another's deliveries.

use futures_util::future::{self, BoxFuture};
use tracing::Instrument;

use super::RouteTable;
use crate::sink::{DeliveryOutcome, RecipientPayload, SharedSink, Sink};
use crate::telemetry::Printable;

/// A [`Sink`] per route behind one [`RouteTable`]; `sinks[i]` delivers for
/// route `i` of the table.
pub struct RoutedSink {
    table: RouteTable,
    sinks: Vec<SharedSink>,
}

impl RoutedSink {
    /// `sinks` in the table's order, one per route.
    pub fn new(table: RouteTable, sinks: Vec<SharedSink>) -> Self {
        debug_assert_eq!(table.len(), sinks.len());
        Self { table, sinks }
    }

    pub fn table(&self) -> &RouteTable {
        &self.table
    }
}

impl Sink for RoutedSink {
    /// Ready while any route can take mail: one route's open breaker
    /// must not take the instance out of a load balancer for the others
    /// (mail for that route is answered `451` meanwhile).
    fn is_ready(&self) -> bool {
        self.sinks.iter().any(|sink| sink.is_ready())
    }

    fn deliver(&self, item: RecipientPayload) -> BoxFuture<'static, DeliveryOutcome> {
        let hits = self.table.lookup(&item.payload.recipient);
        if hits.is_empty() {
            // RCPT is checked against the same table, so only a recipient
            // the table lost meanwhile gets here: the sender retries.
            tracing::warn!(
                recipient = %Printable(&item.payload.recipient),
                "no route for an accepted recipient"
            );
            return Box::pin(future::ready(DeliveryOutcome::Deferred));
        }
        let deliveries: Vec<_> = hits
            .into_iter()
            .filter_map(|hit| {
                let sink = self.sinks.get(hit.route)?;
                let route = self.table.name(hit.route).unwrap_or_default().to_owned();
                let mut item = item.clone();
                if item.payload.recipient_tag.is_none() {
                    item.payload.recipient_tag = hit.tag;
                }
                let span = tracing::info_span!("route", route = %route);
                Some(sink.deliver(item).instrument(span))
            })
            .collect();
        Box::pin(async move {
            let outcomes = future::join_all(deliveries).await;
            DeliveryOutcome::most_urgent(outcomes)
        })
    }
}
