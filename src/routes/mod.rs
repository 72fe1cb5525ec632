//! Routes (`docs/routes.md`): which webhook(s) each recipient reaches.
//! A route is a set of recipient patterns with its own webhook stack;
//! without a routes file the target list and webhook URL are one implicit
//! route named `default`.
//!
//! - [`file`]: the TOML file, validated, with file and line in each error.
//! - [`live`]: the routes in force, swapped whole by a reload, and those
//!   a transaction pinned at its `MAIL`.
//! - [`reload`]: `SIGHUP` and polling for changes.
//! - [`sink`]: the fan-out over the routes in force.

mod file;
mod live;
mod reload;
mod sink;

use std::sync::Arc;

pub use file::{RouteSpec, RoutesError, parse};
pub use live::{BuildRoute, Changes, LiveRoutes, Route, RouteSet, TransactionRoutes};
pub use reload::{CheckUrl, Reloaded, RouteSource, RoutesReload};
pub use sink::RoutedSink;

use crate::smtp::command::{canonical_mailbox, split_plus_tag};

/// The name of the implicit route (metrics label, logs).
pub const DEFAULT_ROUTE: &str = "default";

/// One recipient pattern, stored in canonical (lower-case) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `local@domain`.
    Exact(String),
    /// `*@domain`: any local part at that domain.
    Domain(String),
    /// `local+*@domain`: `local+tag@domain` for any tag (also the bare
    /// `local@domain`); the tag becomes `recipient_tag`.
    Tagged { base: String },
    /// `*`: every recipient.
    Any,
}

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty pattern")]
    Empty,
    #[error("'{0}' is not a pattern (an address, *@domain, local+*@domain or *; '*' only there)")]
    Malformed(String),
}

impl Pattern {
    /// # Errors
    /// The text is none of the four forms.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text == "*" {
            return Ok(Self::Any);
        }
        let malformed = || PatternError::Malformed(text.to_owned());
        let (local, domain) = text.rsplit_once('@').ok_or_else(malformed)?;
        let plain = |part: &str| {
            !part.is_empty()
                && !part.contains(['*', '@', '"'])
                && !part.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if !plain(domain) {
            return Err(malformed());
        }
        let domain = canonical_mailbox(domain);
        if local == "*" {
            return Ok(Self::Domain(domain));
        }
        if let Some(base) = local.strip_suffix("+*") {
            return if plain(base) && !base.contains('+') {
                Ok(Self::Tagged {
                    base: canonical_mailbox(&format!("{base}@{domain}")),
                })
            } else {
                Err(malformed())
            };
        }
        if plain(local) {
            Ok(Self::Exact(canonical_mailbox(&format!("{local}@{domain}"))))
        } else {
            Err(malformed())
        }
    }

    /// Whether `recipient` (as the client wrote it) matches; `Some(tag)`
    /// on a match, the tag set only by a `local+*@domain` pattern.
    fn matches(&self, recipient: &str) -> Option<Option<String>> {
        let canonical = canonical_mailbox(recipient);
        match self {
            Self::Any => Some(None),
            Self::Exact(address) => (canonical == *address).then_some(None),
            Self::Domain(domain) => canonical
                .rsplit_once('@')
                .filter(|(local, at)| !local.is_empty() && at == domain)
                .map(|_| None),
            Self::Tagged { base } => {
                if canonical == *base {
                    return Some(None);
                }
                let (without, tag) = split_plus_tag(recipient)?;
                (canonical_mailbox(&without) == *base)
                    .then(|| Some(tag.to_owned()).filter(|tag| !tag.is_empty()))
            }
        }
    }
}

/// One route's name and patterns.
#[derive(Debug, Clone)]
pub struct RouteMatcher {
    pub name: Arc<str>,
    pub patterns: Vec<Pattern>,
}

/// A route a recipient reaches: its index in the table and the tag a
/// `local+*@domain` pattern took from the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHit {
    pub route: usize,
    pub tag: Option<String>,
}

/// Every route's patterns, in file order; shared by recipient validation
/// (RCPT) and delivery, so both answer the same question the same way.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Arc<[RouteMatcher]>,
}

impl RouteTable {
    pub fn new(routes: Vec<RouteMatcher>) -> Self {
        Self {
            routes: routes.into(),
        }
    }

    /// The routes `recipient` reaches, in file order, each once.
    pub fn lookup(&self, recipient: &str) -> Vec<RouteHit> {
        self.routes
            .iter()
            .enumerate()
            .filter_map(|(route, matcher)| {
                // The first pattern of a route that carries a tag wins.
                let mut hits = matcher
                    .patterns
                    .iter()
                    .filter_map(|pattern| pattern.matches(recipient));
                let first = hits.next()?;
                let tag = first.or_else(|| hits.find_map(|tag| tag));
                Some(RouteHit { route, tag })
            })
            .collect()
    }

    pub fn accepts(&self, recipient: &str) -> bool {
        self.routes.iter().any(|matcher| {
            matcher
                .patterns
                .iter()
                .any(|pattern| pattern.matches(recipient).is_some())
        })
    }

    pub fn name(&self, route: usize) -> Option<&str> {
        self.routes.get(route).map(|matcher| &*matcher.name)
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &[&str])]) -> RouteTable {
        RouteTable::new(
            routes
                .iter()
                .map(|(name, patterns)| RouteMatcher {
                    name: Arc::from(*name),
                    patterns: patterns
                        .iter()
                        .map(|p| Pattern::parse(p).unwrap())
                        .collect(),
                })
                .collect(),
        )
    }

    fn names(table: &RouteTable, recipient: &str) -> Vec<(String, Option<String>)> {
        table
            .lookup(recipient)
            .into_iter()
            .map(|hit| (table.name(hit.route).unwrap().to_owned(), hit.tag))
            .collect()
    }

    #[test]
    fn each_pattern_kind() {
        let table = table(&[
            ("exact", &["Support@Example.com"]),
            ("domain", &["*@alerts.example.com"]),
            ("tagged", &["invoices+*@example.com"]),
        ]);
        let hit = |name: &str, tag: Option<&str>| vec![(name.to_owned(), tag.map(str::to_owned))];
        assert_eq!(names(&table, "support@EXAMPLE.com"), hit("exact", None));
        assert_eq!(
            names(&table, "pager@Alerts.Example.com"),
            hit("domain", None)
        );
        assert_eq!(
            names(&table, "Invoices+42@example.com"),
            hit("tagged", Some("42"))
        );
        assert_eq!(names(&table, "invoices@example.com"), hit("tagged", None));
        assert!(names(&table, "support+x@example.com").is_empty());
        assert!(names(&table, "pager@sub.alerts.example.com").is_empty());
        assert!(names(&table, "other@example.com").is_empty());
        assert!(!table.accepts("other@example.com"));
    }

    #[test]
    fn fan_out_in_file_order_and_catch_all() {
        let table = table(&[
            ("audit", &["*"]),
            ("helpdesk", &["support@example.com", "*@example.com"]),
        ]);
        assert_eq!(
            names(&table, "support@example.com"),
            vec![("audit".into(), None), ("helpdesk".into(), None)]
        );
        assert_eq!(
            names(&table, "x@elsewhere.org"),
            vec![("audit".into(), None)]
        );
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "support",
            "*@",
            "@example.com",
            "a*@example.com",
            "*+*@x",
            "a@*.com",
            "a b@x",
            "+*@x",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Pattern::parse(" * ").unwrap(), Pattern::Any);
    }
}
