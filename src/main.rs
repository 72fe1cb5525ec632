//! The `mail-laser` binary: configuration, telemetry, listeners, signals.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use mail_laser::config::{Config, ConfigError, Delivery, SinkTarget};
use mail_laser::sink::{SharedSink, StdoutSink};
use mail_laser::spool::{OpenError, SpoolSink};
use mail_laser::telemetry::{self, Observability, TelemetryConfig};
use mail_laser::webhook::WebhookSink;
use mail_laser::{Listeners, RunError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Exit status for a configuration error (SPEC §1).
const CONFIG_ERROR: u8 = 2;

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(ConfigError::Info(info)) => {
            let _ = info.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("mail-laser: {error}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let telemetry = match TelemetryConfig::from_lookup(|name| std::env::var(name).ok()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("mail-laser: {error}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mail-laser: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Logs go to stderr: stdout is reserved for payloads when the sink is `-`.
        let tracing = match telemetry::init_tracing(&telemetry, std::io::stderr().is_terminal()) {
            Ok(tracing) => tracing,
            Err(error) => {
                eprintln!("mail-laser: {error}");
                return ExitCode::from(CONFIG_ERROR);
            }
        };
        let status = match run(config, &telemetry).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error:#}");
                eprintln!("mail-laser: {error:#}");
                // A certificate or spool folder that cannot be used is a
                // configuration error, found once the files are opened.
                if error
                    .downcast_ref::<RunError>()
                    .is_some_and(|e| matches!(e, RunError::Tls(_)))
                    || error
                        .downcast_ref::<OpenError>()
                        .is_some_and(|e| matches!(e, OpenError::Spool(_)))
                {
                    ExitCode::from(CONFIG_ERROR)
                } else {
                    ExitCode::FAILURE
                }
            }
        };
        // Flushing waits on the exporter tasks: keep it off the workers.
        let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
        status
    })
}

async fn run(config: Config, telemetry: &TelemetryConfig) -> anyhow::Result<()> {
    let observability = Observability::new(telemetry)?;
    let sink: SharedSink = match (&config.sink, &config.delivery) {
        (SinkTarget::Stdout, _) => Arc::new(StdoutSink::new()),
        (SinkTarget::Webhook(webhook), Delivery::Sync) => Arc::new(
            WebhookSink::new(webhook, observability.metrics())
                .context("cannot set up the webhook client")?,
        ),
        (SinkTarget::Webhook(webhook), Delivery::Spool(spool)) => {
            let sink = SpoolSink::open(webhook, spool, observability.metrics())?;
            let usage = sink.spool().usage();
            tracing::info!(
                dir = %spool.dir.display(),
                waiting = usage.files,
                max_age = %mail_laser::config::duration::humane(spool.max_age),
                "spool mode"
            );
            Arc::new(sink)
        }
    };
    let smtp = TcpListener::bind(config.smtp.bind)
        .await
        .with_context(|| format!("cannot listen for SMTP on {}", config.smtp.bind))?;
    let http = TcpListener::bind(config.http_bind)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", config.http_bind))?;
    tracing::info!(
        smtp = %smtp.local_addr()?,
        http = %http.local_addr()?,
        sink = %sink_name(&config.sink),
        otlp = telemetry.endpoint.as_deref().unwrap_or("<not set>"),
        "MailLaser listening"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let result = mail_laser::run(
        Listeners { smtp, http },
        config,
        sink,
        observability.clone(),
        shutdown,
    )
    .await;
    let _ = tokio::task::spawn_blocking(move || observability.shutdown()).await;
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// For the start-up log: where payloads go, without secrets.
fn sink_name(sink: &SinkTarget) -> String {
    match sink {
        SinkTarget::Stdout => "stdout".to_owned(),
        SinkTarget::Webhook(webhook) => format!(
            "{} (signing {})",
            mail_laser::webhook::redacted(&webhook.url),
            if webhook.signing_secret.is_some() {
                "<set>"
            } else {
                "<not set>"
            }
        ),
    }
}

/// SIGTERM or SIGINT starts a graceful shutdown (SPEC §2).
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}
