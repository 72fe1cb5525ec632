//! Configuration: every setting is an environment variable and a flag
//! (`docs/configuration.md`), parsed once by clap ([`cli`]) into the typed
//! settings each module defines, handed to constructors. Nothing reads the
//! environment after start-up.

mod cli;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::auth::{self, AuthError, AuthSettings, Authenticator};
use crate::http::HttpLimits;
use crate::policy::{PolicyError, SenderPolicy};
use crate::routes::{LiveRoutes, RouteSource, RouteSpec, RouteTable, RoutesError};
use crate::server::{ConnectionLimits, ServerConfig, Timeouts, TlsConfig};
use crate::smtp::session::{AuthMode, SessionConfig};
use crate::spool::{BodyOffload, PostgresSpoolConfig, PostgresUrl, SpoolConfig, SpoolLimits};
use crate::stack::{
    AccessConfig, AttachmentMode, AttachmentOptions, Credentials, CredentialsError, ParseOptions,
    RecipientPolicy, StackConfig,
};
use crate::store::{AttachmentStore, StoreError};
use crate::telemetry::ErrorChain;
use crate::webhook::{
    AttachmentView, Backoff, BreakerConfig, SigningSecret, WebhookConfig, WebhookFormat,
};
use cli::{AuthSetting, Cli, DeliveryMode, one_line};

/// Upper bound on one message's webhook delivery (all attempts and
/// backoff), well under the 10 minutes a client waits for the end-of-data
/// reply (RFC 5321 §4.5.3.2.6).
const DELIVERY_BUDGET: Duration = Duration::from_secs(240);

/// How long a message body may arrive slower than `MAIL_LASER_DATA_MIN_RATE`
/// (a slow start: TLS, a congested link) before the rate counts.
const DATA_RATE_GRACE: Duration = Duration::from_secs(30);

/// How long sessions may finish after `SIGTERM` before they are closed
/// (docs/smtp.md, Shutdown). The Kubernetes manifests' grace period is
/// checked against it (tests/it/deploy_configs.rs).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why start-up cannot go on; printed as one line, exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--help` or `--version`: not an error, clap prints it.
    #[error("{0}")]
    Info(clap::Error),
    /// A flag or variable clap could not read, as one line.
    #[error("{message}")]
    Cli {
        message: String,
        #[source]
        source: clap::Error,
    },
    /// The `.env` file cannot be read or parsed.
    #[error(".env{}: {reason}", line.map(|n| format!(" line {n}")).unwrap_or_default())]
    DotEnv {
        line: Option<usize>,
        reason: String,
        #[source]
        source: dotenvy::Error,
    },
    /// The DNS resolver for authentication cannot be built.
    #[error("{message}")]
    Dns {
        message: String,
        #[source]
        source: Box<AuthError>,
    },
    /// The sender policy file cannot be used.
    #[error("{message}")]
    Policy {
        message: String,
        #[source]
        source: Box<PolicyError>,
    },
    /// The routes file cannot be used.
    #[error("MAIL_LASER_ROUTES: {source}")]
    Routes {
        #[source]
        source: Box<RoutesError>,
    },
    /// The users file cannot be read or has a bad line.
    #[error("{message}")]
    Credentials {
        message: String,
        #[source]
        source: Box<CredentialsError>,
    },
    /// The attachment store's settings do not make a client.
    #[error("{message}")]
    Store {
        message: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error("{variable}: invalid value '{value}': {expected}")]
    Value {
        variable: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Where payloads go, and how the end-of-data reply relates to the webhook
/// (`docs/delivery.md`).
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// `MAIL_LASER_WEBHOOK_URL=-`: JSON lines on stdout.
    Stdout,
    /// `sync`: the reply waits for the webhook; the sender's queue is the queue.
    Webhook(WebhookConfig),
    /// `spool`: a temporary failure is spooled to disk and answered `250`.
    Spool {
        webhook: WebhookConfig,
        spool: SpoolConfig,
    },
    /// `MAIL_LASER_ROUTES`: each route its own webhook.
    Routes(RoutesConfig),
}

/// `MAIL_LASER_ROUTES`: the routes read at start, and what a reload needs.
#[derive(Debug, Clone)]
pub struct RoutesConfig {
    /// The routes in force, shared with recipient validation; the sinks
    /// are installed when the sink is opened.
    pub live: LiveRoutes,
    /// The routes of the file as read at start.
    pub specs: Vec<RouteSpec>,
    pub source: RouteSource,
    /// The global webhook settings every route starts from
    /// ([`RouteSpec::webhook`]).
    pub global: WebhookConfig,
    /// `spool` mode: one spool folder for every route.
    pub spool: Option<SpoolConfig>,
    /// `MAIL_LASER_ROUTES_RELOAD_INTERVAL`; `None`: only on `SIGHUP`.
    pub reload_interval: Option<Duration>,
}

impl SinkConfig {
    /// The webhook settings, unless payloads go to stdout.
    pub fn webhook_mut(&mut self) -> Option<&mut WebhookConfig> {
        match self {
            Self::Stdout | Self::Routes(_) => None,
            Self::Webhook(webhook) | Self::Spool { webhook, .. } => Some(webhook),
        }
    }
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub http_bind: SocketAddr,
    pub http_limits: HttpLimits,
    pub stack: StackConfig,
    pub sink: SinkConfig,
}

impl Config {
    /// Reads `.env`, the environment and the command line.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable, the value and what is expected.
    pub fn load() -> Result<Self, ConfigError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(error) if error.not_found() => {}
            Err(error) => return Err(dotenv_error(Path::new(".env"), error)),
        }
        Self::from_args(std::env::args_os())
    }

    /// Parses flags (falling back to the process environment for unset ones).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args).map_err(one_line)?.validate()
    }
}

/// dotenvy reports a parse error by the line's text and a character index
/// within it; operators look for a line number. The text is not repeated:
/// the line may hold a secret.
fn dotenv_error(path: &Path, error: dotenvy::Error) -> ConfigError {
    let (line, reason) = match &error {
        dotenvy::Error::LineParse(text, _) => {
            // An unterminated quote makes the text span several lines.
            let first = text.lines().next().unwrap_or_default().trim_end();
            let number = std::fs::read_to_string(path).ok().and_then(|file| {
                file.lines()
                    .position(|line| line.trim_end() == first)
                    .map(|n| n + 1)
            });
            (number, "not a NAME=value line".to_owned())
        }
        dotenvy::Error::Io(io) => (None, format!("cannot read the file: {io}")),
        _ => (None, "cannot be read".to_owned()),
    };
    ConfigError::DotEnv {
        line,
        reason,
        source: error,
    }
}

impl Cli {
    fn validate(self) -> Result<Config, ConfigError> {
        let auth = self.authenticator()?;
        let policy = self
            .cedar_policies
            .as_deref()
            .map(|path| {
                SenderPolicy::load(path).map_err(|source| ConfigError::Policy {
                    message: format!("MAIL_LASER_CEDAR_POLICIES: {source}"),
                    source: Box::new(source),
                })
            })
            .transpose()?
            .map(Arc::new);
        let smtp_auth = match self.auth {
            AuthSetting::Off => AuthMode::Off,
            AuthSetting::Optional => AuthMode::Optional,
            AuthSetting::Required => AuthMode::Required,
        };
        let credentials = self.credentials(smtp_auth)?;
        let attachments = AttachmentOptions {
            mode: self.attachment_mode()?,
            max_size: self.max_attachment_size,
        };
        let targets: Vec<String> = self
            .target_emails
            .iter()
            .map(|target| target.trim().to_owned())
            .filter(|target| !target.is_empty())
            .collect();
        if let Some(bad) = targets.iter().find(|target| !looks_like_address(target)) {
            return Err(ConfigError::Value {
                variable: "MAIL_LASER_TARGET_EMAILS",
                value: bad.clone(),
                expected: "comma-separated email addresses (local@domain)",
            });
        }
        if self.max_buffered_bytes < self.max_message_size {
            return Err(ConfigError::Value {
                variable: "MAIL_LASER_MAX_BUFFERED_BYTES",
                value: self.max_buffered_bytes.to_string(),
                expected: "at least MAIL_LASER_MAX_MESSAGE_SIZE (else a message of the largest size could never be taken)",
            });
        }
        if targets.is_empty() && self.routes.is_none() {
            return Err(ConfigError::Value {
                variable: "MAIL_LASER_TARGET_EMAILS",
                value: self.target_emails.join(","),
                expected: "at least one email address",
            });
        }
        let routes = self.routes_file()?;
        let webhook = match self.webhook_url.as_deref().map(str::trim) {
            None | Some("-") => None,
            Some(url) => Some(self.webhook(parse_webhook_url(url, self.allow_insecure_webhook)?)),
        };
        let header_prefixes: Arc<[String]> = self
            .header_prefix
            .iter()
            .map(|prefix| prefix.trim().to_owned())
            .filter(|prefix| !prefix.is_empty())
            .collect();
        let mut spool = SpoolConfig::new(
            self.spool_dir.clone(),
            self.spool_max_age,
            SpoolLimits {
                max_files: self.spool_max_files,
                max_bytes: self.spool_max_bytes,
            },
        );
        spool.postgres = self.spool_postgres(
            &spool,
            routes.as_ref().map(|(_, specs)| specs),
            attachments.mode.store(),
        )?;
        let sink = match (self.delivery, webhook, &routes) {
            (delivery, _, Some((source, specs))) => SinkConfig::Routes(RoutesConfig {
                live: LiveRoutes::new(RouteTable::new(
                    specs.iter().map(RouteSpec::matcher).collect(),
                )),
                specs: specs.clone(),
                source: source.clone(),
                // The file has at least one route; each brings its own URL.
                // The message is parsed for every route's header prefixes;
                // a route without its own keeps the global ones.
                global: WebhookConfig {
                    header_prefixes: Some(header_prefixes.clone()),
                    ..self.webhook(specs[0].url.clone())
                },
                spool: (delivery == DeliveryMode::Spool).then_some(spool),
                reload_interval: (self.routes_reload_interval > 0)
                    .then(|| Duration::from_secs(self.routes_reload_interval)),
            }),
            (DeliveryMode::Spool, None, None) => {
                return Err(ConfigError::Value {
                    variable: "MAIL_LASER_DELIVERY",
                    value: "spool".into(),
                    expected: "sync while MAIL_LASER_WEBHOOK_URL is - (spool mode needs a webhook)",
                });
            }
            (DeliveryMode::Sync, None, None) => SinkConfig::Stdout,
            (DeliveryMode::Sync, Some(webhook), None) => SinkConfig::Webhook(webhook),
            (DeliveryMode::Spool, Some(webhook), None) => SinkConfig::Spool { webhook, spool },
        };
        let longest_attempt = routes
            .iter()
            .flat_map(|(_, specs)| specs)
            .filter_map(|route| route.timeout)
            .fold(Duration::from_secs(self.webhook_timeout), Duration::max);
        if let Some(tls_port) = self.tls_port
            && tls_port != 0
            && tls_port == self.port
        {
            return Err(ConfigError::Value {
                variable: "MAIL_LASER_TLS_PORT",
                value: tls_port.to_string(),
                expected: "a port other than MAIL_LASER_PORT",
            });
        }
        let hostname = self
            .hostname
            .as_deref()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty());
        if let Some(name) = &hostname
            && !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(ConfigError::Value {
                variable: "MAIL_LASER_HOSTNAME",
                value: name.clone(),
                expected: "a DNS name",
            });
        }

        let server_name = hostname.clone().or_else(machine_hostname);

        Ok(Config {
            server: ServerConfig {
                bind: SocketAddr::new(self.bind_address, self.port),
                implicit_tls_bind: self
                    .tls_port
                    .map(|port| SocketAddr::new(self.bind_address, port)),
                session: Arc::new(SessionConfig {
                    hostname: hostname.clone(),
                    max_message_size: self.max_message_size,
                    require_tls: self.require_tls,
                    tls_available: true,
                    auth: smtp_auth,
                }),
                max_message_size: self.max_message_size,
                max_buffered_bytes: self.max_buffered_bytes,
                timeouts: Timeouts {
                    command: Duration::from_secs(self.smtp_timeout),
                    data_min_rate: self.data_min_rate,
                    data_rate_grace: DATA_RATE_GRACE,
                },
                limits: ConnectionLimits {
                    max_connections: self.max_connections as usize,
                    max_per_ip: self.max_concurrent_per_ip,
                    per_ip_per_minute: self.rate_limit_connections,
                },
                tls: TlsConfig {
                    pem_files: self.tls_cert.zip(self.tls_key),
                    hostname: server_name,
                    reload_interval: (self.tls_reload_interval > 0)
                        .then(|| Duration::from_secs(self.tls_reload_interval)),
                },
                drain_timeout: DRAIN_TIMEOUT,
            },
            http_bind: SocketAddr::new(self.health_bind_address, self.health_port),
            http_limits: HttpLimits::default(),
            stack: StackConfig {
                recipients: match &sink {
                    SinkConfig::Routes(routes) => RecipientPolicy::routed(
                        routes.live.clone(),
                        self.max_unknown_rcpts_per_session,
                    ),
                    _ => RecipientPolicy::new(&targets, self.max_unknown_rcpts_per_session)
                        .with_plus_addressing(self.plus_addressing),
                },
                parse: ParseOptions {
                    header_prefixes,
                    all_headers: self.headers == cli::HeadersMode::All,
                    plus_addressing: self.plus_addressing,
                    include_raw: self.include_raw,
                    routes: match &sink {
                        SinkConfig::Routes(routes) => Some(routes.live.clone()),
                        _ => None,
                    },
                    attachments,
                },
                auth,
                policy,
                // Delivery is bounded by its budget plus one attempt; this
                // only catches what escapes it.
                request_timeout: DELIVERY_BUDGET + longest_attempt + Duration::from_secs(10),
                access: AccessConfig {
                    credentials,
                    auth_failures_per_minute: self.rate_limit_auth_failures,
                    messages_per_minute: self.rate_limit_messages,
                },
            },
            sink,
        })
    }
}

impl Cli {
    /// `MAIL_LASER_SPOOL_URL` and `MAIL_LASER_SPOOL_LEASE`: the shared
    /// queue, whose lease must outlast every webhook attempt (else a live
    /// instance could lose a message to another mid-attempt).
    fn spool_postgres(
        &self,
        spool: &SpoolConfig,
        routes: Option<&Vec<RouteSpec>>,
        store: Option<&AttachmentStore>,
    ) -> Result<Option<PostgresSpoolConfig>, ConfigError> {
        let Some(text) = self
            .spool_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
        else {
            return Ok(None);
        };
        if self.delivery != DeliveryMode::Spool {
            // A queue that would never be used: the operator meant spool mode.
            return Err(ConfigError::Value {
                variable: "MAIL_LASER_SPOOL_URL",
                value: "<set>".into(),
                expected: "unset, or MAIL_LASER_DELIVERY=spool (the queue is for spool mode)",
            });
        }
        let url = PostgresUrl::parse(text).map_err(|expected| ConfigError::Value {
            variable: "MAIL_LASER_SPOOL_URL",
            // Never the URL itself: it holds the password.
            value: "<set>".into(),
            expected,
        })?;
        let longest_attempt = routes
            .into_iter()
            .flatten()
            .filter_map(|route| route.timeout)
            .fold(Duration::from_secs(self.webhook_timeout), Duration::max);
        if self.spool_lease <= longest_attempt {
            return Err(ConfigError::Value {
                variable: "MAIL_LASER_SPOOL_LEASE",
                value: crate::duration::humane(self.spool_lease),
                expected: "longer than the longest webhook attempt (MAIL_LASER_WEBHOOK_TIMEOUT, routes' timeout)",
            });
        }
        Ok(Some(PostgresSpoolConfig {
            url,
            lease: self.spool_lease,
            poll: Duration::from_secs(1),
            pool_size: spool.concurrency * 2,
            offload: store.map(|store| BodyOffload {
                store: store.clone(),
                inline_max: self.spool_inline_max,
            }),
        }))
    }

    /// `MAIL_LASER_ROUTES`, read and validated (URLs by the rules of
    /// `MAIL_LASER_WEBHOOK_URL`).
    fn routes_file(&self) -> Result<Option<(RouteSource, Vec<RouteSpec>)>, ConfigError> {
        let Some(path) = &self.routes else {
            return Ok(None);
        };
        let source = route_source(path, self.allow_insecure_webhook);
        let specs = source.load().map_err(|source| ConfigError::Routes {
            source: Box::new(source),
        })?;
        Ok(Some((source, specs)))
    }

    /// A webhook at `url` with the global settings (`MAIL_LASER_WEBHOOK_*`,
    /// the breaker, the signing secret): the implicit route, and the base
    /// of every route of a routes file.
    fn webhook(&self, url: reqwest::Url) -> WebhookConfig {
        WebhookConfig {
            url,
            attempt_timeout: Duration::from_secs(self.webhook_timeout),
            max_retries: self.webhook_max_retries,
            backoff: Backoff::default(),
            budget: DELIVERY_BUDGET,
            breaker: BreakerConfig {
                threshold: self.circuit_breaker_threshold,
                reset: Duration::from_secs(self.circuit_breaker_reset),
            },
            signing_secret: self
                .webhook_signing_secret
                .clone()
                .filter(|secret| !secret.is_empty())
                .map(SigningSecret::new),
            standard_secrets: Vec::new(),
            headers: reqwest::header::HeaderMap::new(),
            format: WebhookFormat::MailLaser,
            attachments: AttachmentView::AsSettled,
            header_prefixes: None,
        }
    }

    /// `MAIL_LASER_AUTH_USERS`, read and checked whenever it is set (so a
    /// file can be put in place before AUTH is turned on); handed to the
    /// stack only when AUTH is on, which needs it.
    fn credentials(&self, auth: AuthMode) -> Result<Option<Arc<Credentials>>, ConfigError> {
        let Some(path) = &self.auth_users else {
            if auth == AuthMode::Off {
                return Ok(None);
            }
            return Err(ConfigError::Value {
                variable: "MAIL_LASER_AUTH_USERS",
                value: String::new(),
                expected: "a users file (MAIL_LASER_AUTH=optional or required needs one)",
            });
        };
        let credentials = Credentials::load(path).map_err(|source| ConfigError::Credentials {
            message: ErrorChain(&source).to_string(),
            source: Box::new(source),
        })?;
        Ok((auth != AuthMode::Off).then(|| Arc::new(credentials)))
    }

    /// `MAIL_LASER_ATTACHMENT_DELIVERY`; in `s3` mode the store's client is
    /// built here (no I/O), so a bad setting stops the start.
    fn attachment_mode(&self) -> Result<AttachmentMode, ConfigError> {
        Ok(match self.attachment_delivery {
            cli::AttachmentDelivery::Inline => AttachmentMode::Inline,
            cli::AttachmentDelivery::Metadata => AttachmentMode::Metadata,
            cli::AttachmentDelivery::S3 => {
                let settings = self.s3.settings().ok_or(ConfigError::Value {
                    variable: "MAIL_LASER_S3_BUCKET",
                    value: String::new(),
                    expected: "a bucket name (MAIL_LASER_ATTACHMENT_DELIVERY=s3 needs one)",
                })?;
                let store =
                    AttachmentStore::new(settings).map_err(|source| ConfigError::Store {
                        message: format!("MAIL_LASER_S3_*: {source}"),
                        source: Box::new(source),
                    })?;
                AttachmentMode::Store {
                    store,
                    inline_max: self.attachment_inline_max,
                }
            }
        })
    }
}

impl Cli {
    /// `MAIL_LASER_DMARC_*`: the resolver is built here unless the mode is
    /// `off`, so a system without a DNS configuration stops the start.
    /// MailLaser's name (`MAIL_LASER_HOSTNAME` or the machine's) is the
    /// `authserv-id` of `Authentication-Results`.
    fn authenticator(&self) -> Result<Authenticator, ConfigError> {
        let server_name = self
            .hostname
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .or_else(machine_hostname);
        let dns_servers = self
            .dmarc_dns_servers
            .iter()
            .map(|server| server.trim())
            .filter(|server| !server.is_empty())
            .map(|server| {
                parse_dns_server(server).ok_or_else(|| ConfigError::Value {
                    variable: "MAIL_LASER_DMARC_DNS_SERVERS",
                    value: server.to_owned(),
                    expected: "comma-separated DNS servers as ip:port (e.g. 127.0.0.1:53, [::1]:53), or empty for the system resolver",
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let system = dns_servers.is_empty();
        let settings = AuthSettings {
            mode: match self.dmarc_mode {
                cli::DmarcMode::Off => auth::DmarcMode::Off,
                cli::DmarcMode::Monitor => auth::DmarcMode::Monitor,
                cli::DmarcMode::Enforce => auth::DmarcMode::Enforce,
            },
            temperror_action: match self.dmarc_temperror_action {
                cli::TempErrorAction::Accept => auth::TempErrorAction::Accept,
                cli::TempErrorAction::Reject => auth::TempErrorAction::Reject,
            },
            dns_timeout: Duration::from_secs(self.dmarc_dns_timeout),
            dns_servers,
            authserv_id: server_name.unwrap_or_else(|| "localhost".to_owned()),
        };
        Authenticator::new(settings).map_err(|source| {
            let hint = if system {
                " (set MAIL_LASER_DMARC_DNS_SERVERS)"
            } else {
                ""
            };
            ConfigError::Dns {
                message: format!(
                    "MAIL_LASER_DMARC_DNS_SERVERS: {}{hint}",
                    crate::telemetry::ErrorChain(&source)
                ),
                source: Box::new(source),
            }
        })
    }
}

/// `ip:port`, or a bare IP address for port 53.
fn parse_dns_server(server: &str) -> Option<SocketAddr> {
    server.parse::<SocketAddr>().ok().or_else(|| {
        server
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// The machine's host name, for the self-signed certificate when
/// `MAIL_LASER_HOSTNAME` is unset (clients that check the name see the one
/// they connected to).
/// `mail-laser check-routes`: the routes file at `path`, validated as at
/// start (URLs by the rules of `MAIL_LASER_WEBHOOK_URL`), without starting.
///
/// # Errors
/// [`ConfigError::Routes`]: the file cannot be read, parsed or validated.
pub fn check_routes(path: &Path, allow_insecure: bool) -> Result<Vec<RouteSpec>, ConfigError> {
    route_source(path, allow_insecure)
        .load()
        .map_err(|source| ConfigError::Routes {
            source: Box::new(source),
        })
}

/// The routes file at `path`, its URLs checked by the rules of
/// `MAIL_LASER_WEBHOOK_URL` (at start, on reload and offline alike).
fn route_source(path: &Path, allow_insecure: bool) -> RouteSource {
    RouteSource::new(
        path.to_owned(),
        Arc::new(move |url: &str| {
            parse_webhook_url(url, allow_insecure).map_err(|error| match error {
                ConfigError::Value { expected, .. } => expected.to_owned(),
                other => other.to_string(),
            })
        }),
    )
}

fn machine_hostname() -> Option<String> {
    let name = hostname::get().ok()?.into_string().ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// `https://` anywhere; `http://` only to loopback unless allowed. The host
/// is judged after URL parsing (an IP literal or `localhost`), never by
/// string prefix: `http://127.0.0.1.evil.example` is not loopback.
fn parse_webhook_url(url: &str, allow_insecure: bool) -> Result<reqwest::Url, ConfigError> {
    let invalid = |expected| ConfigError::Value {
        variable: "MAIL_LASER_WEBHOOK_URL",
        value: url.to_owned(),
        expected,
    };
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| invalid("an http:// or https:// URL, or - for stdout"))?;
    let Some(host) = parsed.host_str() else {
        return Err(invalid("a URL with a host"));
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_insecure || is_loopback(host) => Ok(parsed),
        "http" => Err(invalid(
            "https://, or http:// to a loopback address (set MAIL_LASER_ALLOW_INSECURE_WEBHOOK=true to allow other hosts)",
        )),
        _ => Err(invalid("an http:// or https:// URL, or - for stdout")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        // RFC 6761: localhost and its subdomains resolve to loopback.
        Err(_) => {
            let host = host.to_ascii_lowercase();
            host == "localhost" || host.ends_with(".localhost")
        }
    }
}

/// Deliberately loose: one `@` with something on both sides.
fn looks_like_address(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !address.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut args = vec![
            "mail-laser",
            "--target-emails",
            "Alerts@Example.com, ops@example.com",
            "--webhook-url",
            "-",
        ];
        args.extend_from_slice(extra);
        Config::from_args(args)
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.server.bind, "0.0.0.0:2525".parse().unwrap());
        assert_eq!(config.http_bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.server.max_message_size, 26_214_400);
        assert_eq!(
            config.server.timeouts,
            Timeouts {
                command: Duration::from_secs(300),
                data_min_rate: 1024,
                data_rate_grace: Duration::from_secs(30),
            }
        );
        assert_eq!(
            config.server.limits,
            ConnectionLimits {
                max_connections: 10_000,
                max_per_ip: 10,
                per_ip_per_minute: 0,
            }
        );
        assert!(!config.server.session.require_tls);
        assert!(matches!(config.sink, SinkConfig::Stdout));
        assert!(config.stack.recipients.accepts("alerts@example.com"));
        assert!(config.stack.recipients.accepts("OPS@example.com"));
        // The self-signed certificate names the machine when no hostname is set.
        assert_eq!(config.server.tls.hostname, machine_hostname());
        assert!(config.server.tls.hostname.is_some());
    }

    #[test]
    fn flags_override_defaults() {
        let config = parse(&[
            "--port",
            "2626",
            "--require-tls",
            "--header-prefix",
            "X-App-, X-Trace",
            "--hostname",
            "mx.example",
        ])
        .unwrap();
        assert_eq!(config.server.bind.port(), 2626);
        assert!(config.server.session.require_tls);
        assert_eq!(
            &*config.stack.parse.header_prefixes,
            &["X-App-".to_string(), "X-Trace".to_string()]
        );
        assert_eq!(
            config.server.session.hostname.as_deref(),
            Some("mx.example")
        );
        assert_eq!(config.server.tls.hostname.as_deref(), Some("mx.example"));
    }

    /// Issue 11: `s3` mode needs a bucket, and its settings are checked at
    /// start (the client is built then, without I/O).
    #[test]
    fn s3_attachment_settings() {
        let error = parse(&["--attachment-delivery", "s3"])
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("MAIL_LASER_S3_BUCKET:"), "{error}");
        let config = parse(&[
            "--attachment-delivery",
            "s3",
            "--s3-bucket",
            "mail",
            "--s3-endpoint",
            "http://127.0.0.1:9000",
            "--s3-presign-ttl",
            "1h",
            "--attachment-inline-max",
            "4096",
        ])
        .unwrap();
        let AttachmentMode::Store { store, inline_max } = &config.stack.parse.attachments.mode
        else {
            panic!("s3 mode");
        };
        assert_eq!(*inline_max, 4096);
        assert_eq!(store.settings().bucket, "mail");
        assert_eq!(
            store.settings().presign_ttl,
            Some(Duration::from_secs(3600))
        );
        let error = parse(&[
            "--attachment-delivery",
            "s3",
            "--s3-bucket",
            "mail",
            "--s3-endpoint",
            "ftp://example.org",
        ])
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("MAIL_LASER_S3_"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    /// Issue 12: the DMARC settings, MailLaser 3's names; `off` builds no
    /// resolver, the others build one for the given servers (no I/O).
    #[test]
    fn dmarc_settings() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.stack.auth.mode(), auth::DmarcMode::Off);
        let settings = config.stack.auth.settings();
        assert_eq!(settings.temperror_action, auth::TempErrorAction::Reject);
        assert_eq!(settings.dns_timeout, Duration::from_secs(5));

        let config = parse(&[
            "--dmarc-mode",
            "enforce",
            "--dmarc-temperror-action",
            "accept",
            "--dmarc-dns-timeout",
            "2",
            "--dmarc-dns-servers",
            "127.0.0.1:5353, [::1]:53,192.0.2.1",
            "--hostname",
            "mx.example",
        ])
        .unwrap();
        let settings = config.stack.auth.settings();
        assert_eq!(settings.mode, auth::DmarcMode::Enforce);
        assert_eq!(settings.temperror_action, auth::TempErrorAction::Accept);
        assert_eq!(settings.dns_timeout, Duration::from_secs(2));
        assert_eq!(
            settings.dns_servers,
            [
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap(),
                "192.0.2.1:53".parse().unwrap()
            ]
        );
        assert_eq!(settings.authserv_id, "mx.example");

        for (flag, value, variable) in [
            ("--dmarc-mode", "strict", "MAIL_LASER_DMARC_MODE"),
            (
                "--dmarc-temperror-action",
                "retry",
                "MAIL_LASER_DMARC_TEMPERROR_ACTION",
            ),
            ("--dmarc-dns-timeout", "0", "MAIL_LASER_DMARC_DNS_TIMEOUT"),
            (
                "--dmarc-dns-servers",
                "dns.example:53",
                "MAIL_LASER_DMARC_DNS_SERVERS",
            ),
        ] {
            let mut args = vec![flag, value];
            if flag != "--dmarc-mode" {
                args.extend(["--dmarc-mode", "monitor"]);
            }
            let error = parse(&args).unwrap_err().to_string();
            assert!(error.contains(variable), "{flag} {value}: {error}");
            assert!(error.contains(&format!("'{value}'")), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let error = parse(&["--port", "abc"]).unwrap_err().to_string();
        assert!(error.contains("MAIL_LASER_PORT"), "{error}");
        assert!(error.contains("'abc'"), "{error}");
        assert!(!error.contains('\n'), "{error}");

        let error = parse(&["--require-tls", "maybe"]).unwrap_err().to_string();
        assert!(error.contains("MAIL_LASER_REQUIRE_TLS"), "{error}");

        let error = Config::from_args([
            "mail-laser",
            "--target-emails",
            "a@b",
            "--webhook-url",
            "ftp://x",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("MAIL_LASER_WEBHOOK_URL: invalid value 'ftp://x'"),
            "{error}"
        );

        let error = Config::from_args([
            "mail-laser",
            "--target-emails",
            "nobody",
            "--webhook-url",
            "-",
        ])
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("MAIL_LASER_TARGET_EMAILS"), "{error}");
    }

    fn webhook(url: &str, extra: &[&str]) -> Result<WebhookConfig, String> {
        let mut args = vec!["mail-laser", "--target-emails", "a@b", "--webhook-url", url];
        args.extend_from_slice(extra);
        match Config::from_args(args) {
            Ok(Config {
                sink: SinkConfig::Webhook(webhook),
                ..
            }) => Ok(webhook),
            Ok(_) => Err("not a webhook".into()),
            Err(error) => Err(error.to_string()),
        }
    }

    #[test]
    fn webhook_settings() {
        let config = webhook("https://hooks.example.com/mail", &[]).unwrap();
        assert_eq!(config.url.as_str(), "https://hooks.example.com/mail");
        assert_eq!(config.attempt_timeout, Duration::from_secs(30));
        assert_eq!(config.max_retries, 3);
        assert_eq!(config.breaker.threshold, 5);
        assert_eq!(config.breaker.reset, Duration::from_secs(60));
        assert!(config.signing_secret.is_none());
        let config = webhook(
            "https://h.example",
            &[
                "--webhook-signing-secret",
                "s3cret",
                "--webhook-max-retries",
                "0",
            ],
        )
        .unwrap();
        assert_eq!(format!("{:?}", config.signing_secret), "Some(<set>)");
        assert_eq!(config.max_retries, 0);
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://127.1/hook",
            "http://[::1]:8080/",
            "http://localhost/",
            "http://LOCALHOST:1/",
            "http://app.localhost/",
        ] {
            assert!(webhook(url, &[]).is_ok(), "{url}");
        }
        for url in [
            "http://example.com/",
            "http://127.0.0.1.nip.io/",
            "http://localhost.example.com/",
            "http://127.0.0.1@evil.example/",
            "http://10.0.0.1/",
        ] {
            let error = webhook(url, &[]).unwrap_err();
            assert!(
                error.starts_with("MAIL_LASER_WEBHOOK_URL"),
                "{url}: {error}"
            );
        }
        assert!(webhook("http://example.com/", &["--allow-insecure-webhook", "true"]).is_ok());
        assert!(webhook("ftp://example.com/", &[]).is_err());
        assert!(webhook("not a url", &[]).is_err());
    }

    /// Issue 13: a routes file replaces the target list and the webhook
    /// URL, gives each route its own settings, and takes spool mode.
    #[test]
    fn routes_file_settings() {
        let dir =
            std::env::temp_dir().join(format!("mail-laser-routes-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("routes.toml");
        std::fs::write(
            &path,
            "[[route]]\nname = \"a\"\nmatch = [\"*@example.com\"]\nurl = \"https://a.example/\"\ntimeout = 90\n\n[[route]]\nname = \"b\"\nmatch = [\"*\"]\nurl = \"https://b.example/\"\n",
        )
        .unwrap();
        let routes = path.to_str().unwrap();
        let config =
            Config::from_args(["mail-laser", "--routes", routes, "--webhook-timeout", "5"])
                .unwrap();
        let SinkConfig::Routes(routes_config) = &config.sink else {
            panic!("not routed: {:?}", config.sink);
        };
        assert_eq!(routes_config.live.current().table().len(), 2);
        assert!(routes_config.spool.is_none());
        assert_eq!(routes_config.reload_interval, Some(Duration::from_secs(5)));
        let timeouts: Vec<_> = routes_config
            .specs
            .iter()
            .map(|route| {
                let webhook = route.webhook(&routes_config.global);
                assert_eq!(webhook.url, route.url);
                (route.name.as_str(), webhook.attempt_timeout.as_secs())
            })
            .collect();
        assert_eq!(timeouts, [("a", 90), ("b", 5)]);
        assert!(config.stack.recipients.accepts("anyone@elsewhere.org"));
        // The stack's own deadline leaves room for the longest attempt.
        assert!(config.stack.request_timeout >= DELIVERY_BUDGET + Duration::from_secs(90));

        let config = Config::from_args([
            "mail-laser",
            "--routes",
            routes,
            "--delivery",
            "spool",
            "--routes-reload-interval",
            "0",
        ])
        .unwrap();
        let SinkConfig::Routes(routes_config) = &config.sink else {
            panic!("not routed: {:?}", config.sink);
        };
        assert_eq!(
            routes_config.spool.as_ref().map(|spool| spool.dir.clone()),
            Some(PathBuf::from("./spool"))
        );
        assert_eq!(routes_config.reload_interval, None);
        // The routes in force decide whether the parse keeps the original.
        assert!(config.stack.parse.routes.is_some());

        // A route's format reaches its webhook, in sync and spool mode.
        std::fs::write(
            &path,
            "[[route]]\nname = \"a\"\nmatch = [\"*\"]\nurl = \"https://a.example/\"\nformat = \"raw\"\n",
        )
        .unwrap();
        let config = Config::from_args(["mail-laser", "--routes", routes]).unwrap();
        let SinkConfig::Routes(routes_config) = &config.sink else {
            panic!("not routed: {:?}", config.sink);
        };
        assert_eq!(
            routes_config.specs[0].webhook(&routes_config.global).format,
            WebhookFormat::Raw
        );
        let config =
            Config::from_args(["mail-laser", "--routes", routes, "--delivery", "spool"]).unwrap();
        let SinkConfig::Routes(routes_config) = &config.sink else {
            panic!("not routed: {:?}", config.sink);
        };
        assert!(routes_config.spool.is_some());
        let error = Config::from_args(["mail-laser", "--routes", routes, "--target-emails", "a@b"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("MAIL_LASER_TARGET_EMAILS"), "{error}");
        assert!(!error.contains('\n'), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn delivery_modes() {
        let config = webhook_config("https://h.example", &[]).unwrap();
        assert!(matches!(config.sink, SinkConfig::Webhook(_)));

        let config = webhook_config("https://h.example", &["--delivery", "spool"]).unwrap();
        let SinkConfig::Spool { spool, .. } = config.sink else {
            panic!("spool mode");
        };
        assert_eq!(spool.dir, PathBuf::from("./spool"));
        assert_eq!(spool.max_age, Duration::from_secs(72 * 3600));
        assert_eq!(spool.limits, SpoolLimits::default());

        let config = webhook_config(
            "https://h.example",
            &[
                "--delivery",
                "spool",
                "--spool-dir",
                "/var/spool/maillaser",
                "--spool-max-age",
                "3d",
                "--spool-max-files",
                "10",
                "--spool-max-bytes",
                "1000",
            ],
        )
        .unwrap();
        let SinkConfig::Spool { spool, .. } = config.sink else {
            panic!("spool mode");
        };
        assert_eq!(spool.dir, PathBuf::from("/var/spool/maillaser"));
        assert_eq!(spool.max_age, Duration::from_secs(3 * 86_400));
        assert_eq!(
            spool.limits,
            SpoolLimits {
                max_files: 10,
                max_bytes: 1000
            }
        );
    }

    /// Issue 14: the PostgreSQL queue's settings, checked at start; the
    /// password never reaches an error.
    #[test]
    fn postgres_spool_settings() {
        let url = "postgres://mail:s3cret@db.internal:5432/mail?sslmode=require";
        let config = webhook_config(
            "https://h.example",
            &[
                "--delivery",
                "spool",
                "--spool-url",
                url,
                "--spool-lease",
                "2m",
            ],
        )
        .unwrap();
        let SinkConfig::Spool { spool, .. } = config.sink else {
            panic!("spool mode");
        };
        let postgres = spool.postgres.expect("the PostgreSQL queue");
        assert_eq!(postgres.lease, Duration::from_secs(120));
        assert!(postgres.offload.is_none(), "no object store configured");
        assert_eq!(
            postgres.url.to_string(),
            "postgres://mail:****@db.internal:5432/mail"
        );
        assert!(!format!("{postgres:?}").contains("s3cret"));

        for (args, variable) in [
            (vec!["--spool-url", url], "MAIL_LASER_SPOOL_URL"),
            (
                vec![
                    "--delivery",
                    "spool",
                    "--spool-url",
                    "mysql://u:s3cret@h/db",
                ],
                "MAIL_LASER_SPOOL_URL",
            ),
            (
                vec![
                    "--delivery",
                    "spool",
                    "--spool-url",
                    url,
                    "--spool-lease",
                    "30s",
                ],
                "MAIL_LASER_SPOOL_LEASE",
            ),
        ] {
            let error = webhook_config("https://h.example", &args)
                .unwrap_err()
                .to_string();
            assert!(error.contains(variable), "{error}");
            assert!(!error.contains("s3cret"), "the password leaked: {error}");
        }
    }

    #[test]
    fn malformed_spool_settings_name_the_variable() {
        for (flag, value, variable) in [
            ("--delivery", "later", "MAIL_LASER_DELIVERY"),
            ("--spool-max-age", "72", "MAIL_LASER_SPOOL_MAX_AGE"),
            ("--spool-max-age", "3 days", "MAIL_LASER_SPOOL_MAX_AGE"),
            ("--spool-max-files", "0", "MAIL_LASER_SPOOL_MAX_FILES"),
            ("--spool-max-bytes", "lots", "MAIL_LASER_SPOOL_MAX_BYTES"),
        ] {
            let mut args = vec![flag, value];
            if flag != "--delivery" {
                args.extend(["--delivery", "spool"]);
            }
            let error = webhook_config("https://h.example", &args).unwrap_err();
            assert!(error.contains(variable), "{flag} {value}: {error}");
            assert!(error.contains(&format!("'{value}'")), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
        let error = webhook_config("https://h.example", &["--spool-max-age", "soon"]).unwrap_err();
        assert!(
            error.contains("a duration such as 90s, 30m, 72h or 3d"),
            "{error}"
        );
        let error = parse(&["--delivery", "spool"]).unwrap_err().to_string();
        assert!(
            error.starts_with("MAIL_LASER_DELIVERY: invalid value 'spool'"),
            "{error}"
        );
    }

    fn webhook_config(url: &str, extra: &[&str]) -> Result<Config, String> {
        let mut args = vec!["mail-laser", "--target-emails", "a@b", "--webhook-url", url];
        args.extend_from_slice(extra);
        Config::from_args(args).map_err(|error| error.to_string())
    }

    #[test]
    fn missing_required_value_names_the_variable() {
        let error = Config::from_args(["mail-laser", "--webhook-url", "-"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("MAIL_LASER_TARGET_EMAILS"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn a_bad_env_file_line_is_named_by_its_number() {
        let dir = std::env::temp_dir().join(format!("mail-laser-dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        let message_for = |contents: &str| {
            std::fs::write(&path, contents).unwrap();
            let error = dotenvy::from_path_iter(&path)
                .unwrap()
                .find_map(Result::err)
                .unwrap();
            dotenv_error(&path, error).to_string()
        };
        assert_eq!(
            message_for(
                "MAIL_LASER_PORT=2525\n# a comment\nMAIL_LASER_HOSTNAME=mx\nnot a setting\n"
            ),
            ".env line 4: not a NAME=value line"
        );
        // An unterminated quote: the secret never reaches the message.
        let message = message_for(
            "MAIL_LASER_PORT=2525\nMAIL_LASER_WEBHOOK_SIGNING_SECRET=\"hunter2\nMAIL_LASER_HOSTNAME=mx\n",
        );
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.starts_with(".env"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
