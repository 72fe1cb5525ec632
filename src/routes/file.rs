//! The routes file (`MAIL_LASER_ROUTES`, TOML): read and validated once at
//! start; every error names the file, the line and the reason.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use toml::Spanned;

use super::{Pattern, RouteMatcher};
use crate::webhook::{
    AttachmentView, FORMAT_NAMES, MailgunKey, StandardSecret, WebhookConfig, WebhookFormat,
};

/// One route as the file describes it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub name: String,
    pub patterns: Vec<Pattern>,
    pub url: reqwest::Url,
    /// Standard Webhooks secrets; several sign at once (rotation).
    pub signing_secrets: Vec<StandardSecret>,
    /// Per-attempt timeout; the global one when absent.
    pub timeout: Option<Duration>,
    /// Retries after the first attempt; the global setting when absent.
    pub max_retries: Option<u32>,
    /// HTTP headers added to every request (a consumer's API key, a tenant
    /// id); values are marked sensitive and never printed.
    pub headers: HeaderMap,
    /// What the requests look like (`format`, `maillaser` when absent).
    pub format: WebhookFormat,
    /// `attachments`: whether this route's requests carry the attachments'
    /// octets (or URLs) as the message settled them, or describe them only.
    pub attachments: AttachmentView,
    /// `header_prefix`: the headers this route's payloads carry in
    /// `headers`; `MAIL_LASER_HEADER_PREFIX`'s when absent.
    pub header_prefix: Option<Arc<[String]>>,
}

impl RouteSpec {
    /// The route's webhook: `global` (the `MAIL_LASER_WEBHOOK_*` settings)
    /// with the route's URL, timeout, retries, Standard Webhooks secrets,
    /// headers and format.
    pub fn webhook(&self, global: &WebhookConfig) -> WebhookConfig {
        WebhookConfig {
            url: self.url.clone(),
            attempt_timeout: self.timeout.unwrap_or(global.attempt_timeout),
            max_retries: self.max_retries.unwrap_or(global.max_retries),
            standard_secrets: self.signing_secrets.clone(),
            headers: self.headers.clone(),
            format: self.format.clone(),
            attachments: self.attachments,
            header_prefixes: self
                .header_prefix
                .clone()
                .or_else(|| global.header_prefixes.clone()),
            ..global.clone()
        }
    }

    pub fn matcher(&self) -> RouteMatcher {
        RouteMatcher {
            name: self.name.as_str().into(),
            patterns: self.patterns.clone(),
        }
    }
}

/// Why the routes file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or not the shape of a routes file (unknown keys, wrong types).
    #[error("{}{}: {reason}", path.display(), line_suffix(*line))]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        reason: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// Well-formed, but a value is not acceptable.
    #[error("{}{}: {reason}", path.display(), line_suffix(*line))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        reason: String,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|line| format!(" line {line}")).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    #[serde(rename = "match")]
    patterns: Spanned<Vec<Spanned<String>>>,
    url: Spanned<String>,
    #[serde(default)]
    signing_secrets: Vec<Spanned<String>>,
    /// Seconds per attempt, as `MAIL_LASER_WEBHOOK_TIMEOUT`.
    timeout: Option<Spanned<u64>>,
    max_retries: Option<Spanned<u32>>,
    /// `{ "Authorization" = "Bearer …" }`.
    #[serde(default)]
    headers: Option<Spanned<BTreeMap<String, String>>>,
    format: Option<Spanned<String>>,
    /// The key Mailgun signs its webhooks with (`format = "mailgun"`).
    mailgun_signing_key: Option<Spanned<String>>,
    /// `"metadata"`: attachments described, without octets or URLs.
    attachments: Option<Spanned<String>>,
    /// Header-name prefixes, as `MAIL_LASER_HEADER_PREFIX`.
    header_prefix: Option<Spanned<Vec<String>>>,
}

/// Validates the text of a routes file; `path` only names it in errors,
/// `check_url` applies the rules of `MAIL_LASER_WEBHOOK_URL` to each URL.
///
/// # Errors
/// The text cannot be parsed or validated.
pub fn parse(
    path: &Path,
    text: &str,
    check_url: &dyn Fn(&str) -> Result<reqwest::Url, String>,
) -> Result<Vec<RouteSpec>, RoutesError> {
    let line_of = |span: Range<usize>| {
        let start = span.start.min(text.len());
        Some(text[..start].matches('\n').count() + 1)
    };
    let raw: RawFile = toml::from_str(text).map_err(|source| RoutesError::Parse {
        path: path.to_owned(),
        line: source.span().and_then(line_of),
        reason: source.message().trim().replace('\n', " "),
        source: Box::new(source),
    })?;
    let invalid = |span: Range<usize>, reason: String| RoutesError::Invalid {
        path: path.to_owned(),
        line: line_of(span),
        reason,
    };
    if raw.route.is_empty() {
        return Err(RoutesError::Invalid {
            path: path.to_owned(),
            line: None,
            reason: "no [[route]]".into(),
        });
    }
    let mut names = HashSet::new();
    let mut routes = Vec::with_capacity(raw.route.len());
    for route in raw.route {
        let route = route.into_inner();
        let name = route.name.get_ref().trim();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(invalid(
                route.name.span(),
                format!("route name '{name}': letters, digits, '-', '_' and '.' only"),
            ));
        }
        if !names.insert(name.to_owned()) {
            return Err(invalid(
                route.name.span(),
                format!("duplicate route name '{name}'"),
            ));
        }
        if route.patterns.get_ref().is_empty() {
            return Err(invalid(
                route.patterns.span(),
                format!("route '{name}': match is empty"),
            ));
        }
        let patterns = route
            .patterns
            .get_ref()
            .iter()
            .map(|pattern| {
                Pattern::parse(pattern.get_ref())
                    .map_err(|error| invalid(pattern.span(), format!("route '{name}': {error}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let url = check_url(route.url.get_ref().trim()).map_err(|reason| {
            invalid(route.url.span(), format!("route '{name}': url: {reason}"))
        })?;
        let signing_secrets = route
            .signing_secrets
            .iter()
            .map(|secret| {
                // The reason never repeats the secret.
                StandardSecret::parse(secret.get_ref()).map_err(|reason| {
                    invalid(
                        secret.span(),
                        format!("route '{name}': signing_secrets: {reason}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = match route.timeout {
            Some(timeout) if !(1..=600).contains(timeout.get_ref()) => {
                return Err(invalid(
                    timeout.span(),
                    format!("route '{name}': timeout: seconds from 1 to 600"),
                ));
            }
            timeout => timeout.map(|timeout| Duration::from_secs(timeout.into_inner())),
        };
        let max_retries = match route.max_retries {
            Some(retries) if *retries.get_ref() > 20 => {
                return Err(invalid(
                    retries.span(),
                    format!("route '{name}': max_retries: at most 20"),
                ));
            }
            retries => retries.map(Spanned::into_inner),
        };
        let headers = match route.headers {
            Some(headers) => {
                let span = headers.span();
                extra_headers(headers.into_inner())
                    .map_err(|reason| invalid(span, format!("route '{name}': headers: {reason}")))?
            }
            None => HeaderMap::new(),
        };
        let key = route.mailgun_signing_key.as_ref();
        let format = match route
            .format
            .as_ref()
            .map(|format| (format.get_ref().trim(), format.span()))
        {
            None | Some(("maillaser", _)) => WebhookFormat::MailLaser,
            Some(("raw", _)) => WebhookFormat::Raw,
            Some(("postmark", _)) => WebhookFormat::Postmark,
            Some(("sendgrid", _)) => WebhookFormat::SendGrid,
            Some(("mailgun", span)) => match key.filter(|key| !key.get_ref().trim().is_empty()) {
                Some(key) => WebhookFormat::Mailgun {
                    signing_key: MailgunKey::new(key.get_ref().trim()),
                },
                None => {
                    return Err(invalid(
                        span,
                        format!(
                            "route '{name}': format \"mailgun\" needs mailgun_signing_key (what the consumer verifies the signature with)"
                        ),
                    ));
                }
            },
            Some((other, span)) => {
                return Err(invalid(
                    span,
                    format!(
                        "route '{name}': format '{other}': one of {}",
                        FORMAT_NAMES.join(", ")
                    ),
                ));
            }
        };
        if let Some(key) = key
            && !matches!(format, WebhookFormat::Mailgun { .. })
        {
            // The reason never repeats the key.
            return Err(invalid(
                key.span(),
                format!("route '{name}': mailgun_signing_key is only for format = \"mailgun\""),
            ));
        }
        let attachments = match route.attachments {
            None => AttachmentView::AsSettled,
            Some(view) => match view.get_ref().trim() {
                "metadata" => AttachmentView::Metadata,
                "full" => AttachmentView::AsSettled,
                other => {
                    return Err(invalid(
                        view.span(),
                        format!(
                            "route '{name}': attachments '{other}': \"full\" (as MAIL_LASER_ATTACHMENT_DELIVERY settles them) or \"metadata\" (described, without octets or URLs)"
                        ),
                    ));
                }
            },
        };
        let header_prefix = match route.header_prefix {
            None => None,
            Some(prefixes) => {
                let span = prefixes.span();
                let prefixes: Vec<String> = prefixes
                    .into_inner()
                    .into_iter()
                    .map(|prefix| prefix.trim().to_owned())
                    .collect();
                let valid = |prefix: &String| {
                    !prefix.is_empty()
                        && prefix
                            .bytes()
                            .all(|byte| byte.is_ascii_graphic() && byte != b':')
                };
                if let Some(bad) = prefixes.iter().find(|prefix| !valid(prefix)) {
                    return Err(invalid(
                        span,
                        format!(
                            "route '{name}': header_prefix '{bad}': the start of a header name (visible ASCII, no ':')"
                        ),
                    ));
                }
                Some(Arc::from(prefixes))
            }
        };
        routes.push(RouteSpec {
            name: name.to_owned(),
            patterns,
            url,
            signing_secrets,
            timeout,
            max_retries,
            headers,
            format,
            attachments,
            header_prefix,
        });
    }
    Ok(routes)
}

/// Headers MailLaser sets itself: a route cannot replace them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "connection",
    "user-agent",
    "idempotency-key",
    "traceparent",
    "tracestate",
];

/// A route's `headers`, checked: valid names and values, none of ours.
/// A reason names the header, never its value (it may be a secret).
fn extra_headers(table: BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in table {
        let header = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("'{name}' is not a header name"))?;
        let ours = RESERVED_HEADERS.contains(&header.as_str())
            || header.as_str().starts_with("webhook-")
            || header.as_str().starts_with("x-maillaser-");
        if ours {
            return Err(format!("'{name}' is set by MailLaser"));
        }
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of '{name}' is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str) -> Result<reqwest::Url, String> {
        reqwest::Url::parse(url)
            .ok()
            .filter(|url| url.scheme() == "https")
            .ok_or_else(|| "https:// only".to_owned())
    }

    fn parsed(text: &str) -> Result<Vec<RouteSpec>, String> {
        parse(Path::new("routes.toml"), text, &check).map_err(|error| error.to_string())
    }

    const GOOD: &str = r#"
[[route]]
name = "helpdesk"
match = ["support@example.com", "*@help.example.com", "tickets+*@example.com"]
url = "https://helpdesk.internal/hooks/mail"
signing_secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
timeout = 5
max_retries = 1
headers = { "Authorization" = "Bearer token-123", "X-Tenant" = "acme" }

[[route]]
name = "audit"
match = ["*"]
url = "https://audit.internal/mail"

[[route]]
name = "mailbox"
match = ["inbox@example.com"]
url = "https://actionmailbox:pw@app.internal/rails/action_mailbox/relay/inbound_emails"
format = "raw"

[[route]]
name = "anymail"
match = ["*@anymail.example.com"]
url = "https://app.internal/anymail/mailgun/inbound/"
format = "mailgun"
mailgun_signing_key = "key-K7pQ2xW9"
"#;

    #[test]
    fn a_good_file() {
        let routes = parsed(GOOD).unwrap();
        assert_eq!(routes.len(), 4);
        assert_eq!(routes[0].format, WebhookFormat::MailLaser);
        assert_eq!(routes[2].format, WebhookFormat::Raw);
        assert_eq!(
            routes[3].format,
            WebhookFormat::Mailgun {
                signing_key: MailgunKey::new("key-K7pQ2xW9")
            }
        );
        assert_eq!(routes[0].name, "helpdesk");
        assert_eq!(routes[0].patterns.len(), 3);
        assert_eq!(routes[0].signing_secrets.len(), 1);
        assert_eq!(routes[0].timeout, Some(Duration::from_secs(5)));
        assert_eq!(routes[0].max_retries, Some(1));
        assert_eq!(routes[0].headers["authorization"], "Bearer token-123");
        assert!(routes[0].headers["authorization"].is_sensitive());
        assert_eq!(routes[0].headers["x-tenant"], "acme");
        assert!(!format!("{:?}", routes[0]).contains("token-123"));
        assert!(routes[1].headers.is_empty());
        assert_eq!(routes[1].patterns, vec![Pattern::Any]);
        assert_eq!(routes[1].timeout, None);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let cases = [
            (
                GOOD.replace("max_retries = 1", "retries = 1"),
                "routes.toml line 8:",
                "unknown field",
            ),
            (
                GOOD.replace("\"audit\"", "\"helpdesk\""),
                "routes.toml line 12:",
                "duplicate route name 'helpdesk'",
            ),
            (
                GOOD.replace("https://audit", "http://audit"),
                "routes.toml line 14:",
                "https:// only",
            ),
            (
                GOOD.replace("\"*\"", "\"a*@x\""),
                "routes.toml line 13:",
                "not a pattern",
            ),
            (
                GOOD.replace("whsec_MfKQ", "MfKQ"),
                "routes.toml line 6:",
                "whsec_",
            ),
            (
                GOOD.replace("timeout = 5", "timeout = 0"),
                "routes.toml line 7:",
                "1 to 600",
            ),
            (
                GOOD.replace("match = [\"*\"]", "match = []"),
                "routes.toml line 13:",
                "match is empty",
            ),
            (
                GOOD.replace("X-Tenant", "Idempotency-Key"),
                "routes.toml line 9:",
                "'Idempotency-Key' is set by MailLaser",
            ),
            (
                GOOD.replace("X-Tenant", "Webhook-Signature"),
                "routes.toml line 9:",
                "is set by MailLaser",
            ),
            (
                GOOD.replace("X-Tenant", "Bad Name"),
                "routes.toml line 9:",
                "'Bad Name' is not a header name",
            ),
            (
                GOOD.replace("Bearer token-123", "token-123\\u0001"),
                "routes.toml line 9:",
                "the value of 'Authorization' is not a valid header value",
            ),
            (
                GOOD.replace("format = \"raw\"", "format = \"mbox\""),
                "routes.toml line 20:",
                "format 'mbox': one of maillaser, raw, postmark, sendgrid, mailgun",
            ),
            (
                GOOD.replace("mailgun_signing_key = \"key-K7pQ2xW9\"", ""),
                "routes.toml line 26:",
                "needs mailgun_signing_key",
            ),
            (
                GOOD.replace("format = \"mailgun\"", "format = \"postmark\""),
                "routes.toml line 27:",
                "only for format = \"mailgun\"",
            ),
            (
                GOOD.replace(
                    "url = \"https://audit.internal/mail\"",
                    "url = \"https://audit.internal/mail\"\nattachments = \"none\"",
                ),
                "routes.toml line 15:",
                "attachments 'none'",
            ),
            (
                GOOD.replace(
                    "url = \"https://audit.internal/mail\"",
                    "url = \"https://audit.internal/mail\"\nheader_prefix = [\"X-Bad:\"]",
                ),
                "routes.toml line 15:",
                "header_prefix 'X-Bad:'",
            ),
            ("[[route]\n".to_owned(), "routes.toml line 1:", ""),
            (String::new(), "routes.toml: no [[route]]", ""),
        ];
        for (text, prefix, reason) in cases {
            let error = parsed(&text).unwrap_err();
            assert!(error.starts_with(prefix), "{error}");
            assert!(error.contains(reason), "{error}");
            assert!(!error.contains('\n'), "{error}");
            assert!(!error.contains("MfKQ9r8"), "a secret leaked: {error}");
            assert!(
                !error.contains("token-123"),
                "a header value leaked: {error}"
            );
            assert!(!error.contains("K7pQ2xW9"), "a key leaked: {error}");
        }
    }
}
