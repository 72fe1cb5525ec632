//! Configuration: every setting is an environment variable and a flag
//! (SPEC §1), parsed once by clap into typed sub-configs that are handed to
//! constructors. Nothing reads the environment after start-up.

pub mod duration;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Parser, ValueEnum};

use crate::smtp::session::SessionConfig;
use crate::spool::{SpoolConfig, SpoolLimits};
use crate::stack::{ParseOptions, RecipientPolicy, StackConfig};
use crate::webhook::{Backoff, BreakerConfig, SigningSecret, WebhookConfig};

/// Upper bound on one message's webhook delivery (all attempts and
/// backoff), well under the 10 minutes a client waits for the end-of-data
/// reply (RFC 5321 §4.5.3.2.6).
const DELIVERY_BUDGET: Duration = Duration::from_secs(240);

/// Command line and environment, as clap sees them. `value_name` is the
/// variable's name so that every error message names it.
#[derive(Debug, Parser)]
#[command(
    name = "mail-laser",
    version,
    about = "SMTP server that POSTs every accepted email to a webhook as JSON",
    after_help = "Every flag can also be set through its environment variable or a .env file in the working directory."
)]
struct Cli {
    /// Comma-separated recipients to accept (case-insensitive).
    #[arg(long, env = "MAIL_LASER_TARGET_EMAILS", value_name = "MAIL_LASER_TARGET_EMAILS", value_delimiter = ',', required = true, num_args = 1..)]
    target_emails: Vec<String>,

    /// Where payloads are POSTed; `-` prints each payload as a JSON line on stdout.
    #[arg(
        long,
        env = "MAIL_LASER_WEBHOOK_URL",
        value_name = "MAIL_LASER_WEBHOOK_URL"
    )]
    webhook_url: String,

    /// Seconds per webhook attempt.
    #[arg(long, env = "MAIL_LASER_WEBHOOK_TIMEOUT", value_name = "MAIL_LASER_WEBHOOK_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    webhook_timeout: u64,

    /// Retries after the first webhook attempt.
    #[arg(long, env = "MAIL_LASER_WEBHOOK_MAX_RETRIES", value_name = "MAIL_LASER_WEBHOOK_MAX_RETRIES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=20))]
    webhook_max_retries: u32,

    /// Consecutive failed deliveries that open the circuit breaker.
    #[arg(long, env = "MAIL_LASER_CIRCUIT_BREAKER_THRESHOLD", value_name = "MAIL_LASER_CIRCUIT_BREAKER_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    circuit_breaker_threshold: u32,

    /// Seconds the circuit breaker stays open before one probe.
    #[arg(long, env = "MAIL_LASER_CIRCUIT_BREAKER_RESET", value_name = "MAIL_LASER_CIRCUIT_BREAKER_RESET", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    circuit_breaker_reset: u64,

    /// Enables HMAC-SHA256 signing of webhook requests.
    #[arg(
        long,
        env = "MAIL_LASER_WEBHOOK_SIGNING_SECRET",
        value_name = "MAIL_LASER_WEBHOOK_SIGNING_SECRET",
        hide_env_values = true
    )]
    webhook_signing_secret: Option<String>,

    /// Allow http:// webhooks off loopback.
    #[arg(long, env = "MAIL_LASER_ALLOW_INSECURE_WEBHOOK", value_name = "MAIL_LASER_ALLOW_INSECURE_WEBHOOK", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    allow_insecure_webhook: bool,

    /// SMTP listen address.
    #[arg(
        long,
        env = "MAIL_LASER_BIND_ADDRESS",
        value_name = "MAIL_LASER_BIND_ADDRESS",
        default_value = "0.0.0.0"
    )]
    bind_address: IpAddr,

    /// SMTP listen port.
    #[arg(
        long,
        env = "MAIL_LASER_PORT",
        value_name = "MAIL_LASER_PORT",
        default_value_t = 2525
    )]
    port: u16,

    /// HTTP (health) listen address.
    #[arg(
        long,
        env = "MAIL_LASER_HEALTH_BIND_ADDRESS",
        value_name = "MAIL_LASER_HEALTH_BIND_ADDRESS",
        default_value = "0.0.0.0"
    )]
    health_bind_address: IpAddr,

    /// HTTP (health) listen port.
    #[arg(
        long,
        env = "MAIL_LASER_HEALTH_PORT",
        value_name = "MAIL_LASER_HEALTH_PORT",
        default_value_t = 8080
    )]
    health_port: u16,

    /// Comma-separated header-name prefixes forwarded in the payload (case-insensitive).
    #[arg(
        long,
        env = "MAIL_LASER_HEADER_PREFIX",
        value_name = "MAIL_LASER_HEADER_PREFIX",
        value_delimiter = ','
    )]
    header_prefix: Vec<String>,

    /// Largest accepted message in bytes; advertised as SIZE.
    #[arg(
        long,
        env = "MAIL_LASER_MAX_MESSAGE_SIZE",
        value_name = "MAIL_LASER_MAX_MESSAGE_SIZE",
        default_value_t = 26_214_400
    )]
    max_message_size: usize,

    /// Concurrent sessions per client IP; 0 = unlimited.
    #[arg(
        long,
        env = "MAIL_LASER_MAX_CONCURRENT_PER_IP",
        value_name = "MAIL_LASER_MAX_CONCURRENT_PER_IP",
        default_value_t = 10
    )]
    max_concurrent_per_ip: usize,

    /// Concurrent sessions in all.
    #[arg(long, env = "MAIL_LASER_MAX_CONNECTIONS", value_name = "MAIL_LASER_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// Unknown recipients tolerated per session before `421`; 0 = unlimited.
    #[arg(
        long,
        env = "MAIL_LASER_MAX_UNKNOWN_RCPTS_PER_SESSION",
        value_name = "MAIL_LASER_MAX_UNKNOWN_RCPTS_PER_SESSION",
        default_value_t = 3
    )]
    max_unknown_rcpts_per_session: u32,

    /// Seconds a session may sit idle waiting for the client.
    #[arg(long, env = "MAIL_LASER_SMTP_TIMEOUT", value_name = "MAIL_LASER_SMTP_TIMEOUT", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    smtp_timeout: u64,

    /// PEM certificate chain for STARTTLS (a self-signed one is generated without it).
    #[arg(
        long,
        env = "MAIL_LASER_TLS_CERT",
        value_name = "MAIL_LASER_TLS_CERT",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// PEM private key for STARTTLS.
    #[arg(
        long,
        env = "MAIL_LASER_TLS_KEY",
        value_name = "MAIL_LASER_TLS_KEY",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// Refuse MAIL before STARTTLS (530 5.7.0).
    #[arg(long, env = "MAIL_LASER_REQUIRE_TLS", value_name = "MAIL_LASER_REQUIRE_TLS", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    require_tls: bool,

    /// Name used in the greeting and the self-signed certificate.
    #[arg(long, env = "MAIL_LASER_HOSTNAME", value_name = "MAIL_LASER_HOSTNAME")]
    hostname: Option<String>,

    /// sync: the reply waits for the webhook; spool: when the webhook is down, mail is written to disk, answered 250 and delivered later.
    #[arg(
        long,
        env = "MAIL_LASER_DELIVERY",
        value_name = "MAIL_LASER_DELIVERY",
        value_enum,
        default_value_t = DeliveryMode::Sync
    )]
    delivery: DeliveryMode,

    /// Spool folder (spool mode); dead letters go to its dead/ subfolder.
    #[arg(
        long,
        env = "MAIL_LASER_SPOOL_DIR",
        value_name = "MAIL_LASER_SPOOL_DIR",
        default_value = "./spool"
    )]
    spool_dir: PathBuf,

    /// How long spool mode keeps retrying before a message becomes a dead letter (90s, 30m, 72h, 3d).
    #[arg(long, env = "MAIL_LASER_SPOOL_MAX_AGE", value_name = "MAIL_LASER_SPOOL_MAX_AGE", default_value = "72h", value_parser = duration::parse)]
    spool_max_age: Duration,

    /// Waiting spool files (one per message and recipient) above which new mail gets 452 4.3.1.
    #[arg(long, env = "MAIL_LASER_SPOOL_MAX_FILES", value_name = "MAIL_LASER_SPOOL_MAX_FILES", default_value_t = SpoolLimits::default().max_files, value_parser = clap::value_parser!(u64).range(1..))]
    spool_max_files: u64,

    /// Total bytes of waiting spool files above which new mail gets 452 4.3.1.
    #[arg(long, env = "MAIL_LASER_SPOOL_MAX_BYTES", value_name = "MAIL_LASER_SPOOL_MAX_BYTES", default_value_t = SpoolLimits::default().max_bytes, value_parser = clap::value_parser!(u64).range(1..))]
    spool_max_bytes: u64,
}

/// `MAIL_LASER_DELIVERY` as clap reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeliveryMode {
    Sync,
    Spool,
}

/// Why start-up cannot go on; printed as one line, exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--help` or `--version`: not an error, clap prints it.
    #[error("{0}")]
    Info(clap::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{variable}: invalid value '{value}': {expected}")]
    Value {
        variable: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Where payloads go.
#[derive(Debug, Clone)]
pub enum SinkTarget {
    /// `-`: JSON lines on stdout.
    Stdout,
    Webhook(WebhookConfig),
}

/// How the end-of-data reply relates to the webhook (SPEC §5).
#[derive(Debug, Clone)]
pub enum Delivery {
    /// The reply waits for the webhook; the sender's queue is the queue.
    Sync,
    /// A temporary failure is spooled to disk and answered `250`.
    Spool(SpoolConfig),
}

/// Connection-level limits enforced by the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// 0 = unlimited.
    pub max_per_ip: usize,
}

/// Where the STARTTLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain and key; `None` generates a self-signed pair.
    pub pem_files: Option<(PathBuf, PathBuf)>,
    /// Extra SAN (besides `localhost`) for the self-signed certificate.
    pub hostname: Option<String>,
}

/// The SMTP listener side.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub bind: SocketAddr,
    pub session: Arc<SessionConfig>,
    pub max_message_size: usize,
    pub idle_timeout: Duration,
    pub limits: ConnectionLimits,
    pub tls: TlsConfig,
    /// How long sessions in DATA may finish after a shutdown signal.
    pub drain_timeout: Duration,
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub smtp: SmtpConfig,
    pub http_bind: SocketAddr,
    pub stack: StackConfig,
    pub sink: SinkTarget,
    /// Applies to the webhook sink; `Spool` never comes with `Stdout`.
    pub delivery: Delivery,
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
            Err(error) => return Err(ConfigError::Invalid(format!(".env: {error}"))),
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

impl Cli {
    fn validate(self) -> Result<Config, ConfigError> {
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
        if targets.is_empty() {
            return Err(ConfigError::Value {
                variable: "MAIL_LASER_TARGET_EMAILS",
                value: self.target_emails.join(","),
                expected: "at least one email address",
            });
        }
        let sink = match self.webhook_url.trim() {
            "-" => SinkTarget::Stdout,
            url => SinkTarget::Webhook(WebhookConfig {
                url: parse_webhook_url(url, self.allow_insecure_webhook)?,
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
                    .filter(|secret| !secret.is_empty())
                    .map(SigningSecret::new),
            }),
        };
        let delivery = match (self.delivery, &sink) {
            (DeliveryMode::Sync, _) => Delivery::Sync,
            (DeliveryMode::Spool, SinkTarget::Stdout) => {
                return Err(ConfigError::Value {
                    variable: "MAIL_LASER_DELIVERY",
                    value: "spool".into(),
                    expected: "sync while MAIL_LASER_WEBHOOK_URL is - (spool mode needs a webhook)",
                });
            }
            (DeliveryMode::Spool, SinkTarget::Webhook(_)) => Delivery::Spool(SpoolConfig::new(
                self.spool_dir.clone(),
                self.spool_max_age,
                SpoolLimits {
                    max_files: self.spool_max_files,
                    max_bytes: self.spool_max_bytes,
                },
            )),
        };
        let header_prefixes: Arc<[String]> = self
            .header_prefix
            .iter()
            .map(|prefix| prefix.trim().to_owned())
            .filter(|prefix| !prefix.is_empty())
            .collect();
        let hostname = self
            .hostname
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

        Ok(Config {
            smtp: SmtpConfig {
                bind: SocketAddr::new(self.bind_address, self.port),
                session: Arc::new(SessionConfig {
                    hostname: hostname.clone(),
                    max_message_size: self.max_message_size,
                    require_tls: self.require_tls,
                    tls_available: true,
                }),
                max_message_size: self.max_message_size,
                idle_timeout: Duration::from_secs(self.smtp_timeout),
                limits: ConnectionLimits {
                    max_connections: self.max_connections as usize,
                    max_per_ip: self.max_concurrent_per_ip,
                },
                tls: TlsConfig {
                    pem_files: self.tls_cert.zip(self.tls_key),
                    hostname,
                },
                drain_timeout: Duration::from_secs(30),
            },
            http_bind: SocketAddr::new(self.health_bind_address, self.health_port),
            stack: StackConfig {
                recipients: RecipientPolicy::new(&targets, self.max_unknown_rcpts_per_session),
                parse: ParseOptions { header_prefixes },
                // Delivery is bounded by its budget plus one attempt; this
                // only catches what escapes it.
                request_timeout: DELIVERY_BUDGET
                    + Duration::from_secs(self.webhook_timeout)
                    + Duration::from_secs(10),
            },
            sink,
            delivery,
        })
    }
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

/// Turns clap's multi-line errors into one line naming the variable.
fn one_line(error: clap::Error) -> ConfigError {
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
    ConfigError::Invalid(message)
}

use std::error::Error as _;

#[cfg(test)]
mod tests {
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
        assert_eq!(config.smtp.bind, "0.0.0.0:2525".parse().unwrap());
        assert_eq!(config.http_bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.smtp.max_message_size, 26_214_400);
        assert_eq!(config.smtp.idle_timeout, Duration::from_secs(300));
        assert_eq!(
            config.smtp.limits,
            ConnectionLimits {
                max_connections: 10_000,
                max_per_ip: 10
            }
        );
        assert!(!config.smtp.session.require_tls);
        assert!(matches!(config.sink, SinkTarget::Stdout));
        assert!(config.stack.recipients.accepts("alerts@example.com"));
        assert!(config.stack.recipients.accepts("OPS@example.com"));
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
        assert_eq!(config.smtp.bind.port(), 2626);
        assert!(config.smtp.session.require_tls);
        assert_eq!(
            &*config.stack.parse.header_prefixes,
            &["X-App-".to_string(), "X-Trace".to_string()]
        );
        assert_eq!(config.smtp.session.hostname.as_deref(), Some("mx.example"));
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
                sink: SinkTarget::Webhook(webhook),
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

    #[test]
    fn delivery_modes() {
        let config = webhook_config("https://h.example", &[]).unwrap();
        assert!(matches!(config.delivery, Delivery::Sync));

        let config = webhook_config("https://h.example", &["--delivery", "spool"]).unwrap();
        let Delivery::Spool(spool) = config.delivery else {
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
        let Delivery::Spool(spool) = config.delivery else {
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
}
