//! The routes in force. A reload swaps the [`RouteSet`] whole; each
//! transaction pins the set in force at its `MAIL` ([`TransactionRoutes`])
//! and reads only that one, so new routes apply to new transactions.

use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::Notify;

use super::{DEFAULT_ROUTE, RouteSpec, RouteTable};
use crate::sink::SharedSink;
use crate::spool::Webhooks;
use crate::webhook::WebhookSink;

/// One route's delivery: its settings and the stacks built from them.
#[derive(Clone)]
pub struct Route {
    pub spec: RouteSpec,
    /// What the fan-out delivers to (the webhook, or the spool in front of it).
    pub sink: SharedSink,
    /// The route's webhook stack, for the spool worker's later attempts.
    pub webhook: WebhookSink,
}

/// Builds one route's stacks (the assembly that knows the delivery mode).
pub type BuildRoute = Arc<dyn Fn(&RouteSpec) -> Route + Send + Sync>;

/// The routes of one version of the file: the table and, in the same order,
/// each route's delivery.
pub struct RouteSet {
    table: RouteTable,
    routes: Vec<Route>,
}

/// What a new [`RouteSet`] changed, by route name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl RouteSet {
    /// The routes of `specs`. A route of `previous` with the same name and
    /// settings is kept as it is, so its circuit breaker and connections
    /// carry over a reload; the others are built anew.
    pub fn build(specs: Vec<RouteSpec>, build: &BuildRoute, previous: &Self) -> (Self, Changes) {
        let mut changes = Changes::default();
        let routes: Vec<Route> = specs
            .into_iter()
            .map(|spec| match previous.route(&spec.name) {
                Some(old) if old.spec == spec => old.clone(),
                old => {
                    if old.is_some() {
                        changes.changed.push(spec.name.clone());
                    } else {
                        changes.added.push(spec.name.clone());
                    }
                    build(&spec)
                }
            })
            .collect();
        changes.removed = previous
            .routes
            .iter()
            .map(|old| &old.spec.name)
            .filter(|name| !routes.iter().any(|route| route.spec.name == **name))
            .cloned()
            .collect();
        let table = RouteTable::new(routes.iter().map(|route| route.spec.matcher()).collect());
        (Self { table, routes }, changes)
    }

    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The delivery of route `index` of the table.
    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.spec.name == name)
    }

    /// The routes' own `header_prefix` entries (the parse collects these
    /// headers too).
    pub fn header_prefixes(&self) -> impl Iterator<Item = &String> {
        self.routes
            .iter()
            .filter_map(|route| route.spec.header_prefix.as_deref())
            .flatten()
    }

    /// Whether a route's format needs the original message.
    pub fn needs_raw(&self) -> bool {
        self.routes
            .iter()
            .any(|route| route.spec.format.needs_raw())
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// The routes a transaction was started under: pinned at `MAIL` by the
/// recipients layer, then carried in the extensions of the transaction's
/// requests and of its deliveries, so its `RCPT`s, its parse and its
/// fan-out all read the same routes whatever a reload does meanwhile.
#[derive(Clone)]
pub struct TransactionRoutes(pub Arc<RouteSet>);

/// The swappable [`RouteSet`], shared by recipient validation, the
/// fan-out, the spool worker and the reloader.
#[derive(Clone)]
pub struct LiveRoutes {
    current: Arc<RwLock<Arc<RouteSet>>>,
    /// Set by [`LiveRoutes::request_reload`] (`SIGHUP`).
    requested: Arc<Notify>,
}

impl LiveRoutes {
    /// Routes that match by `table` and have no delivery yet: what the
    /// configuration knows before the sinks are built ([`Self::install`]).
    pub fn new(table: RouteTable) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(RouteSet {
                table,
                routes: Vec::new(),
            }))),
            requested: Arc::new(Notify::new()),
        }
    }

    pub fn current(&self) -> Arc<RouteSet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The routes of a transaction: those it pinned, else those in force.
    pub fn of(&self, extensions: &http::Extensions) -> Arc<RouteSet> {
        extensions
            .get::<TransactionRoutes>()
            .map_or_else(|| self.current(), |pinned| pinned.0.clone())
    }

    /// Puts `routes` in force for transactions from now on.
    pub fn install(&self, routes: RouteSet) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(routes);
    }

    /// Asks the reloader to read the file now, changed or not.
    pub fn request_reload(&self) {
        self.requested.notify_one();
    }

    pub(super) async fn reload_requested(&self) {
        self.requested.notified().await;
    }
}

impl std::fmt::Debug for RouteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .routes
            .iter()
            .map(|route| route.spec.name.as_str())
            .collect();
        f.debug_struct("RouteSet")
            .field("table", &self.table.len())
            .field("routes", &names)
            .finish()
    }
}

impl std::fmt::Debug for LiveRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current();
        f.debug_struct("LiveRoutes")
            .field("routes", &current.table.len())
            .finish_non_exhaustive()
    }
}

impl Webhooks for LiveRoutes {
    /// The webhook of the route in force by that name; an entry without a
    /// route (spooled before a routes file was used) goes to the route
    /// named `default`, if there is one.
    fn webhook(&self, route: Option<&str>) -> Option<WebhookSink> {
        let name = route.unwrap_or(DEFAULT_ROUTE);
        self.current()
            .route(name)
            .map(|route| route.webhook.clone())
    }
}
