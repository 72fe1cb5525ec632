//! The command-line and environment surface, as clap sees it: one flag per
//! setting, each with its `MAIL_LASER_*` variable and default, and clap's
//! errors turned into the one line `docs/configuration.md` promises.

use std::error::Error as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Parser, ValueEnum};

use super::ConfigError;
use crate::duration;
use crate::spool::SpoolLimits;
use crate::stack::DEFAULT_MAX_ATTACHMENT_SIZE;
use crate::store::S3Args;

/// Command line and environment, as clap sees them. `value_name` is the
/// variable's name so that every error message names it.
#[derive(Debug, Parser)]
#[command(
    name = "mail-laser",
    version,
    about = "SMTP server that POSTs every accepted email to a webhook as JSON",
    after_help = "Every flag can also be set through its environment variable or a .env file in the working directory.\n\n`mail-laser hash-password NAME` prints a line for MAIL_LASER_AUTH_USERS (see `mail-laser hash-password --help`)."
)]
pub(super) struct Cli {
    /// Comma-separated recipients to accept (case-insensitive).
    #[arg(long, env = "MAIL_LASER_TARGET_EMAILS", value_name = "MAIL_LASER_TARGET_EMAILS", value_delimiter = ',', required_unless_present = "routes", conflicts_with = "routes", num_args = 1..)]
    pub(super) target_emails: Vec<String>,

    /// Where payloads are POSTed; `-` prints each payload as a JSON line on stdout.
    #[arg(
        long,
        env = "MAIL_LASER_WEBHOOK_URL",
        value_name = "MAIL_LASER_WEBHOOK_URL",
        required_unless_present = "routes",
        conflicts_with = "routes"
    )]
    pub(super) webhook_url: Option<String>,

    /// A routes file (TOML): recipient patterns, each route with its own
    /// webhook; replaces MAIL_LASER_TARGET_EMAILS and MAIL_LASER_WEBHOOK_URL.
    #[arg(long, env = "MAIL_LASER_ROUTES", value_name = "MAIL_LASER_ROUTES")]
    pub(super) routes: Option<std::path::PathBuf>,

    /// Seconds between checks of MAIL_LASER_ROUTES for a change, reloaded without a restart (SIGHUP reloads too); 0 = only on SIGHUP.
    #[arg(
        long,
        env = "MAIL_LASER_ROUTES_RELOAD_INTERVAL",
        value_name = "MAIL_LASER_ROUTES_RELOAD_INTERVAL",
        default_value_t = 5
    )]
    pub(super) routes_reload_interval: u64,

    /// Seconds per webhook attempt.
    #[arg(long, env = "MAIL_LASER_WEBHOOK_TIMEOUT", value_name = "MAIL_LASER_WEBHOOK_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(super) webhook_timeout: u64,

    /// Retries after the first webhook attempt.
    #[arg(long, env = "MAIL_LASER_WEBHOOK_MAX_RETRIES", value_name = "MAIL_LASER_WEBHOOK_MAX_RETRIES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=20))]
    pub(super) webhook_max_retries: u32,

    /// Consecutive failed deliveries that open the circuit breaker.
    #[arg(long, env = "MAIL_LASER_CIRCUIT_BREAKER_THRESHOLD", value_name = "MAIL_LASER_CIRCUIT_BREAKER_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) circuit_breaker_threshold: u32,

    /// Seconds the circuit breaker stays open before one probe.
    #[arg(long, env = "MAIL_LASER_CIRCUIT_BREAKER_RESET", value_name = "MAIL_LASER_CIRCUIT_BREAKER_RESET", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) circuit_breaker_reset: u64,

    /// Enables HMAC-SHA256 signing of webhook requests.
    #[arg(
        long,
        env = "MAIL_LASER_WEBHOOK_SIGNING_SECRET",
        value_name = "MAIL_LASER_WEBHOOK_SIGNING_SECRET",
        hide_env_values = true
    )]
    pub(super) webhook_signing_secret: Option<String>,

    /// Allow http:// webhooks off loopback.
    #[arg(long, env = "MAIL_LASER_ALLOW_INSECURE_WEBHOOK", value_name = "MAIL_LASER_ALLOW_INSECURE_WEBHOOK", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(super) allow_insecure_webhook: bool,

    /// SMTP listen address.
    #[arg(
        long,
        env = "MAIL_LASER_BIND_ADDRESS",
        value_name = "MAIL_LASER_BIND_ADDRESS",
        default_value = "0.0.0.0"
    )]
    pub(super) bind_address: IpAddr,

    /// SMTP listen port.
    #[arg(
        long,
        env = "MAIL_LASER_PORT",
        value_name = "MAIL_LASER_PORT",
        default_value_t = 2525
    )]
    pub(super) port: u16,

    /// HTTP (health) listen address.
    #[arg(
        long,
        env = "MAIL_LASER_HEALTH_BIND_ADDRESS",
        value_name = "MAIL_LASER_HEALTH_BIND_ADDRESS",
        default_value = "0.0.0.0"
    )]
    pub(super) health_bind_address: IpAddr,

    /// HTTP (health) listen port.
    #[arg(
        long,
        env = "MAIL_LASER_HEALTH_PORT",
        value_name = "MAIL_LASER_HEALTH_PORT",
        default_value_t = 8080
    )]
    pub(super) health_port: u16,

    /// Comma-separated header-name prefixes forwarded in the payload (case-insensitive).
    #[arg(
        long,
        env = "MAIL_LASER_HEADER_PREFIX",
        value_name = "MAIL_LASER_HEADER_PREFIX",
        value_delimiter = ','
    )]
    pub(super) header_prefix: Vec<String>,

    /// `all` adds `all_headers` to the payload: every top-level header, in order.
    #[arg(
        long,
        env = "MAIL_LASER_HEADERS",
        value_name = "MAIL_LASER_HEADERS",
        value_enum,
        default_value_t = HeadersMode::Prefixed
    )]
    pub(super) headers: HeadersMode,

    /// Largest accepted message in bytes; advertised as SIZE.
    #[arg(
        long,
        env = "MAIL_LASER_MAX_MESSAGE_SIZE",
        value_name = "MAIL_LASER_MAX_MESSAGE_SIZE",
        default_value_t = 26_214_400
    )]
    pub(super) max_message_size: usize,

    /// Bytes of message data all sessions together may hold (bodies being
    /// read, parsed and delivered); beyond it DATA/BDAT get 452 4.3.1.
    #[arg(
        long,
        env = "MAIL_LASER_MAX_BUFFERED_BYTES",
        value_name = "MAIL_LASER_MAX_BUFFERED_BYTES",
        default_value_t = 268_435_456
    )]
    pub(super) max_buffered_bytes: usize,

    /// Concurrent sessions per client IP; 0 = unlimited.
    #[arg(
        long,
        env = "MAIL_LASER_MAX_CONCURRENT_PER_IP",
        value_name = "MAIL_LASER_MAX_CONCURRENT_PER_IP",
        default_value_t = 10
    )]
    pub(super) max_concurrent_per_ip: usize,

    /// Concurrent sessions in all.
    #[arg(long, env = "MAIL_LASER_MAX_CONNECTIONS", value_name = "MAIL_LASER_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) max_connections: u32,

    /// Unknown recipients tolerated per session before `421`; 0 = unlimited.
    #[arg(
        long,
        env = "MAIL_LASER_MAX_UNKNOWN_RCPTS_PER_SESSION",
        value_name = "MAIL_LASER_MAX_UNKNOWN_RCPTS_PER_SESSION",
        default_value_t = 3
    )]
    pub(super) max_unknown_rcpts_per_session: u32,

    /// Seconds for a whole command line, for any pause inside a message, and for each write to the client.
    #[arg(long, env = "MAIL_LASER_SMTP_TIMEOUT", value_name = "MAIL_LASER_SMTP_TIMEOUT", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) smtp_timeout: u64,

    /// Bytes per second a message body must average after its first 30 seconds; 0 = no minimum.
    #[arg(
        long,
        env = "MAIL_LASER_DATA_MIN_RATE",
        value_name = "MAIL_LASER_DATA_MIN_RATE",
        default_value_t = 1024
    )]
    pub(super) data_min_rate: u64,

    /// PEM certificate chain for STARTTLS (a self-signed one is generated without it).
    #[arg(
        long,
        env = "MAIL_LASER_TLS_CERT",
        value_name = "MAIL_LASER_TLS_CERT",
        requires = "tls_key"
    )]
    pub(super) tls_cert: Option<PathBuf>,

    /// PEM private key for STARTTLS.
    #[arg(
        long,
        env = "MAIL_LASER_TLS_KEY",
        value_name = "MAIL_LASER_TLS_KEY",
        requires = "tls_cert"
    )]
    pub(super) tls_key: Option<PathBuf>,

    /// Add the original message to the payload as `raw_base64`.
    #[arg(long, env = "MAIL_LASER_INCLUDE_RAW", value_name = "MAIL_LASER_INCLUDE_RAW", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(super) include_raw: bool,

    /// inline: attachments in the payload, base64; s3: in the object store, the payload carrying URLs; metadata: described without their octets.
    #[arg(
        long,
        env = "MAIL_LASER_ATTACHMENT_DELIVERY",
        value_name = "MAIL_LASER_ATTACHMENT_DELIVERY",
        value_enum,
        default_value_t = AttachmentDelivery::Inline
    )]
    pub(super) attachment_delivery: AttachmentDelivery,

    /// Bytes (decoded) one attachment may have; a larger one refuses the message with 552 5.3.4.
    #[arg(long, env = "MAIL_LASER_MAX_ATTACHMENT_SIZE", value_name = "MAIL_LASER_MAX_ATTACHMENT_SIZE", default_value_t = DEFAULT_MAX_ATTACHMENT_SIZE, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) max_attachment_size: u64,

    /// In s3 mode, attachments of at most this many bytes stay inline; 0 = all go to the store.
    #[arg(
        long,
        env = "MAIL_LASER_ATTACHMENT_INLINE_MAX",
        value_name = "MAIL_LASER_ATTACHMENT_INLINE_MAX",
        default_value_t = 0
    )]
    pub(super) attachment_inline_max: u64,

    #[command(flatten)]
    pub(super) s3: S3Args,

    /// Cedar policy file deciding which messages are delivered (docs/policy.md); unset: all are.
    #[arg(
        long,
        env = "MAIL_LASER_CEDAR_POLICIES",
        value_name = "MAIL_LASER_CEDAR_POLICIES"
    )]
    pub(super) cedar_policies: Option<PathBuf>,

    /// `local+tag@domain` reaches the target `local@domain`; the payload carries `recipient_tag`.
    #[arg(long, env = "MAIL_LASER_PLUS_ADDRESSING", value_name = "MAIL_LASER_PLUS_ADDRESSING", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(super) plus_addressing: bool,

    /// Port for implicit TLS (RFC 8314, usually 465): TLS from the first byte, the same session, no STARTTLS; unset: no such port.
    #[arg(long, env = "MAIL_LASER_TLS_PORT", value_name = "MAIL_LASER_TLS_PORT")]
    pub(super) tls_port: Option<u16>,

    /// Seconds between checks of MAIL_LASER_TLS_CERT and _KEY for a change, reloaded without a restart (SIGHUP reloads too); 0 = only on SIGHUP.
    #[arg(
        long,
        env = "MAIL_LASER_TLS_RELOAD_INTERVAL",
        value_name = "MAIL_LASER_TLS_RELOAD_INTERVAL",
        default_value_t = 10
    )]
    pub(super) tls_reload_interval: u64,

    /// SMTP AUTH (PLAIN, LOGIN), offered only after TLS. off: not offered; optional: mail is taken with or without it; required: MAIL before a successful AUTH gets 530 5.7.0.
    #[arg(
        long,
        env = "MAIL_LASER_AUTH",
        value_name = "MAIL_LASER_AUTH",
        value_enum,
        default_value_t = AuthSetting::Off
    )]
    pub(super) auth: AuthSetting,

    /// File of name:$argon2id$… lines, one per user (`mail-laser hash-password NAME` makes one); needed unless MAIL_LASER_AUTH is off.
    #[arg(
        long,
        env = "MAIL_LASER_AUTH_USERS",
        value_name = "MAIL_LASER_AUTH_USERS"
    )]
    pub(super) auth_users: Option<PathBuf>,

    /// Failed AUTH per client IP (IPv6: per /64) and minute; beyond it AUTH gets 454 4.7.0 without a check until one is allowed again; 0 = no limit.
    #[arg(
        long,
        env = "MAIL_LASER_RATE_LIMIT_AUTH_FAILURES",
        value_name = "MAIL_LASER_RATE_LIMIT_AUTH_FAILURES",
        default_value_t = 10
    )]
    pub(super) rate_limit_auth_failures: u32,

    /// New connections per client IP (IPv6: per /64) and minute, both ports together; beyond it 421 4.7.0 and close; 0 = no limit.
    #[arg(
        long,
        env = "MAIL_LASER_RATE_LIMIT_CONNECTIONS",
        value_name = "MAIL_LASER_RATE_LIMIT_CONNECTIONS",
        default_value_t = 0
    )]
    pub(super) rate_limit_connections: u32,

    /// Messages (transactions, counted at MAIL) per client IP (IPv6: per /64) and minute; beyond it MAIL gets 451 4.7.1; 0 = no limit.
    #[arg(
        long,
        env = "MAIL_LASER_RATE_LIMIT_MESSAGES",
        value_name = "MAIL_LASER_RATE_LIMIT_MESSAGES",
        default_value_t = 0
    )]
    pub(super) rate_limit_messages: u32,

    /// Refuse MAIL before STARTTLS (530 5.7.0).
    #[arg(long, env = "MAIL_LASER_REQUIRE_TLS", value_name = "MAIL_LASER_REQUIRE_TLS", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub(super) require_tls: bool,

    /// Name used in the greeting and the self-signed certificate.
    #[arg(long, env = "MAIL_LASER_HOSTNAME", value_name = "MAIL_LASER_HOSTNAME")]
    pub(super) hostname: Option<String>,

    /// sync: the reply waits for the webhook; spool: when the webhook is down, mail is written to disk, answered 250 and delivered later.
    #[arg(
        long,
        env = "MAIL_LASER_DELIVERY",
        value_name = "MAIL_LASER_DELIVERY",
        value_enum,
        default_value_t = DeliveryMode::Sync
    )]
    pub(super) delivery: DeliveryMode,

    /// off: no authentication, no DNS traffic; monitor: SPF, DKIM, DMARC and ARC results in the payload; enforce: also refuse mail failing DMARC under p=reject or p=quarantine (550 5.7.1).
    #[arg(
        long,
        env = "MAIL_LASER_DMARC_MODE",
        value_name = "MAIL_LASER_DMARC_MODE",
        value_enum,
        default_value_t = DmarcMode::Off
    )]
    pub(super) dmarc_mode: DmarcMode,

    /// In enforce mode, a DMARC temperror (DNS timeout, SERVFAIL): reject = 451 4.7.0, the sender retries; accept = delivered with dmarc_result temperror.
    #[arg(
        long,
        env = "MAIL_LASER_DMARC_TEMPERROR_ACTION",
        value_name = "MAIL_LASER_DMARC_TEMPERROR_ACTION",
        value_enum,
        default_value_t = TempErrorAction::Reject
    )]
    pub(super) dmarc_temperror_action: TempErrorAction,

    /// Seconds all DNS lookups of one message may take together.
    #[arg(long, env = "MAIL_LASER_DMARC_DNS_TIMEOUT", value_name = "MAIL_LASER_DMARC_DNS_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub(super) dmarc_dns_timeout: u64,

    /// Comma-separated DNS servers (ip:port) for authentication; empty: the system resolver.
    #[arg(
        long,
        env = "MAIL_LASER_DMARC_DNS_SERVERS",
        value_name = "MAIL_LASER_DMARC_DNS_SERVERS",
        value_delimiter = ','
    )]
    pub(super) dmarc_dns_servers: Vec<String>,

    /// Spool folder (spool mode); dead letters go to its dead/ subfolder.
    #[arg(
        long,
        env = "MAIL_LASER_SPOOL_DIR",
        value_name = "MAIL_LASER_SPOOL_DIR",
        default_value = "./spool"
    )]
    pub(super) spool_dir: PathBuf,

    /// A PostgreSQL queue every instance shares instead of the spool folder (spool mode): postgres://user:password@host:5432/database, with sslmode and sslrootcert as libpq takes them.
    #[arg(
        long,
        env = "MAIL_LASER_SPOOL_URL",
        value_name = "MAIL_LASER_SPOOL_URL",
        hide_env_values = true
    )]
    pub(super) spool_url: Option<String>,

    /// How long a message claimed from the PostgreSQL queue is this instance's; another instance takes it over once it expires (30s, 2m). Longer than the longest webhook attempt.
    #[arg(long, env = "MAIL_LASER_SPOOL_LEASE", value_name = "MAIL_LASER_SPOOL_LEASE", default_value = "60s", value_parser = duration::parse)]
    pub(super) spool_lease: Duration,

    /// Bytes above which a body spooled in the PostgreSQL queue goes to the S3 attachment store (when MAIL_LASER_ATTACHMENT_DELIVERY=s3 configures one) instead of its row.
    #[arg(long, env = "MAIL_LASER_SPOOL_INLINE_MAX", value_name = "MAIL_LASER_SPOOL_INLINE_MAX", default_value_t = 1024 * 1024)]
    pub(super) spool_inline_max: u64,

    /// How long spool mode keeps retrying before a message becomes a dead letter (90s, 30m, 72h, 3d).
    #[arg(long, env = "MAIL_LASER_SPOOL_MAX_AGE", value_name = "MAIL_LASER_SPOOL_MAX_AGE", default_value = "72h", value_parser = duration::parse)]
    pub(super) spool_max_age: Duration,

    /// Waiting spool files (one per message and recipient) at which new mail gets 452 4.3.1.
    #[arg(long, env = "MAIL_LASER_SPOOL_MAX_FILES", value_name = "MAIL_LASER_SPOOL_MAX_FILES", default_value_t = SpoolLimits::default().max_files, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) spool_max_files: u64,

    /// Total bytes of waiting spool files at which new mail gets 452 4.3.1.
    #[arg(long, env = "MAIL_LASER_SPOOL_MAX_BYTES", value_name = "MAIL_LASER_SPOOL_MAX_BYTES", default_value_t = SpoolLimits::default().max_bytes, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) spool_max_bytes: u64,
}

/// `MAIL_LASER_HEADERS` as clap reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum HeadersMode {
    /// Only `headers`, the ones matching `MAIL_LASER_HEADER_PREFIX`.
    Prefixed,
    /// `all_headers` too.
    All,
}

/// `MAIL_LASER_ATTACHMENT_DELIVERY` as clap reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum AttachmentDelivery {
    Inline,
    S3,
    Metadata,
}

/// `MAIL_LASER_DMARC_MODE` as clap reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum DmarcMode {
    Off,
    Monitor,
    Enforce,
}

/// `MAIL_LASER_DMARC_TEMPERROR_ACTION` as clap reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum TempErrorAction {
    Accept,
    Reject,
}

/// `MAIL_LASER_AUTH` as clap reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum AuthSetting {
    Off,
    Optional,
    Required,
}

/// `MAIL_LASER_DELIVERY` as clap reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum DeliveryMode {
    Sync,
    Spool,
}

/// Turns clap's multi-line errors into one line naming the variable.
pub(super) fn one_line(error: clap::Error) -> ConfigError {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return ConfigError::Info(error);
    }
    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(value)) => Some(value.clone()),
        Some(ContextValue::Strings(values)) => Some(values.join(", ")),
        _ => None,
    };
    let message = match error.kind() {
        ErrorKind::MissingRequiredArgument => format!(
            "missing required setting {}",
            context(ContextKind::InvalidArg).unwrap_or_default()
        ),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = context(ContextKind::InvalidArg).unwrap_or_default();
            let value = context(ContextKind::InvalidValue).unwrap_or_default();
            let reason = error
                .source()
                .map(|source| source.to_string())
                .or_else(|| {
                    context(ContextKind::ValidValue).map(|valid| format!("expected one of {valid}"))
                })
                .unwrap_or_else(|| "invalid".into());
            format!("{arg}: invalid value '{value}': {reason}")
        }
        _ => error
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned(),
    };
    ConfigError::Cli {
        message,
        source: error,
    }
}
