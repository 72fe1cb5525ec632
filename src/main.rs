//! The `mail-laser` binary: configuration, telemetry, listeners, signals,
//! the `hash-password` helper for the AUTH users file, and `spool`, the
//! operator's commands for the spool (`docs/delivery.md`).
//!
//! Every start-up failure prints one line naming the setting concerned and
//! exits with status 2; `MailLaser listening` is logged only once nothing
//! else can fail (`docs/configuration.md`).

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use mail_laser::config::{self, Config, ConfigError, SinkConfig};
use mail_laser::routes::{LiveRoutes, RouteSpec, RouteTable};
use mail_laser::server::tls::CertReload;
use mail_laser::stack::credentials::user_line;
use mail_laser::telemetry::{self, ErrorChain, Observability, TelemetryConfig};
use mail_laser::{Listeners, MailLaser};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Exit status for any failure at start (`docs/configuration.md`).
const START_FAILED: u8 = 2;
/// Exit status when a running server fails.
const RUN_FAILED: u8 = 1;

/// Why the process stops with an error, as one line.
enum Failure {
    Start(String),
    Run(String),
}

impl Failure {
    fn start(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Start(ErrorChain(error).to_string())
    }
}

fn main() -> ExitCode {
    // A subcommand is the first argument (the server takes no positional
    // argument, so it cannot be mistaken for one); anything else is the
    // server's flags, for clap.
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(first) if first == "check-routes" => return check_routes(args.collect()),
        Some(first) if first == "hash-password" => return hash_password(),
        Some(first) if first == "spool" => return spool(args.collect()),
        _ => {}
    }
    let config = match Config::load() {
        Ok(config) => config,
        Err(ConfigError::Info(info)) => {
            let _ = info.print();
            return ExitCode::SUCCESS;
        }
        // The message is one line already; clap's source would add lines.
        Err(error) => return exit(&Failure::Start(error.to_string())),
    };
    let telemetry = match TelemetryConfig::from_lookup(|name| std::env::var(name).ok()) {
        Ok(telemetry) => telemetry,
        Err(error) => return exit(&Failure::start(&error)),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            return exit(&Failure::Start(format!(
                "cannot start the runtime: {}",
                ErrorChain(&error)
            )));
        }
    };
    runtime.block_on(async {
        // Logs go to stderr: stdout is reserved for payloads when the sink is `-`.
        let tracing = match telemetry::init_tracing(&telemetry, std::io::stderr().is_terminal()) {
            Ok(tracing) => tracing,
            Err(error) => return exit(&Failure::start(&error)),
        };
        let status = match run(config, &telemetry).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => exit(&failure),
        };
        // Flushing waits on the exporter tasks: keep it off the workers.
        let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
        status
    })
}

/// `mail-laser check-routes FILE [ADDRESS...]` (`docs/routes.md`):
/// validates the routes file offline and prints the route(s) each address
/// reaches. Exit 0 when the file is valid and every address has a route,
/// 1 when some address has none, 2 when the file is not valid.
fn check_routes(args: Vec<std::ffi::OsString>) -> ExitCode {
    let Some((path, addresses)) = args.split_first() else {
        return exit(&Failure::Start(
            "usage: mail-laser check-routes FILE [ADDRESS...]".into(),
        ));
    };
    let allow_insecure = std::env::var("MAIL_LASER_ALLOW_INSECURE_WEBHOOK").is_ok_and(|value| {
        matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on" | "y"
        )
    });
    let routes = match config::check_routes(std::path::Path::new(path), allow_insecure) {
        Ok(routes) => routes,
        Err(error) => return exit(&Failure::Start(error.to_string())),
    };
    // A route's format when it is not the default JSON payload.
    let names: Vec<String> = routes
        .iter()
        .map(|route| match route.format.name() {
            "maillaser" => route.name.clone(),
            format => format!("{} (format {format})", route.name),
        })
        .collect();
    println!(
        "{}: {} route(s): {}",
        std::path::Path::new(path).display(),
        routes.len(),
        names.join(", ")
    );
    let table = RouteTable::new(routes.iter().map(RouteSpec::matcher).collect());
    let mut unrouted = false;
    for address in addresses {
        let address = address.to_string_lossy();
        let hits = table.lookup(&address);
        if hits.is_empty() {
            unrouted = true;
            println!("{address}: no route (550 5.1.1)");
            continue;
        }
        let reached: Vec<String> = hits
            .iter()
            .map(|hit| {
                let name = table.name(hit.route).unwrap_or_default();
                match &hit.tag {
                    Some(tag) => format!("{name} (recipient_tag {tag})"),
                    None => name.to_owned(),
                }
            })
            .collect();
        println!("{address}: {}", reached.join(", "));
    }
    if unrouted {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `mail-laser spool list|show|requeue|purge` (`docs/delivery.md`): reads
/// `.env` like the server, so it finds the server's spool.
fn spool(args: Vec<std::ffi::OsString>) -> ExitCode {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(error) if error.not_found() => {}
        Err(error) => {
            return exit(&Failure::Start(format!(
                ".env: cannot read it: {}",
                ErrorChain(&error)
            )));
        }
    }
    ExitCode::from(mail_laser::spool::cli::main(args))
}

fn exit(failure: &Failure) -> ExitCode {
    let (line, status) = match failure {
        Failure::Start(line) => (line, START_FAILED),
        Failure::Run(line) => (line, RUN_FAILED),
    };
    eprintln!("mail-laser: {line}");
    ExitCode::from(status)
}

async fn run(config: Config, telemetry: &TelemetryConfig) -> Result<(), Failure> {
    let observability = Observability::new(telemetry).map_err(|e| Failure::start(&e))?;
    let sink = mail_laser::open_sink(&config.sink, observability.metrics())
        .await
        .map_err(|e| Failure::start(&e))?;
    let sink_name = sink_name(&config.sink);
    let routes = match &config.sink {
        SinkConfig::Routes(routes) => Some(routes.live.clone()),
        _ => None,
    };
    let (smtp_bind, http_bind) = (config.server.bind, config.http_bind);
    let implicit_tls_bind = config.server.implicit_tls_bind;
    let app =
        MailLaser::new(config, sink, observability.clone()).map_err(|e| Failure::start(&e))?;
    let smtp = bind(
        smtp_bind,
        "MAIL_LASER_BIND_ADDRESS",
        "MAIL_LASER_PORT",
        "SMTP",
    )
    .await?;
    let http = bind(
        http_bind,
        "MAIL_LASER_HEALTH_BIND_ADDRESS",
        "MAIL_LASER_HEALTH_PORT",
        "HTTP",
    )
    .await?;
    let implicit_tls = match implicit_tls_bind {
        Some(address) => Some(
            bind(
                address,
                "MAIL_LASER_BIND_ADDRESS",
                "MAIL_LASER_TLS_PORT",
                "SMTP over implicit TLS",
            )
            .await?,
        ),
        None => None,
    };
    // The bound addresses: port 0 becomes the port the system chose.
    let local = |listener: &TcpListener, configured| listener.local_addr().unwrap_or(configured);
    let implicit_tls_address = match (&implicit_tls, implicit_tls_bind) {
        (Some(listener), Some(configured)) => local(listener, configured).to_string(),
        _ => "<not set>".to_owned(),
    };
    tracing::info!(
        smtp = %local(&smtp, smtp_bind),
        smtp_implicit_tls = %implicit_tls_address,
        http = %local(&http, http_bind),
        sink = %sink_name,
        otlp = telemetry.endpoint.as_deref().unwrap_or("<not set>"),
        "MailLaser listening"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    tokio::spawn(reload_on_sighup(app.tls_reload(), routes));
    let listeners = Listeners {
        smtp,
        http,
        implicit_tls,
    };
    let result = app.run(listeners, shutdown).await;
    let _ = tokio::task::spawn_blocking(move || observability.shutdown()).await;
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(())
        }
        Err(error) => Err(Failure::Run(format!(
            "HTTP server failed: {}",
            ErrorChain(&error)
        ))),
    }
}

/// Binds a listener; a failure names the setting to change: the port when
/// it is taken or privileged, the address otherwise.
async fn bind(
    address: SocketAddr,
    address_variable: &str,
    port_variable: &str,
    what: &str,
) -> Result<TcpListener, Failure> {
    TcpListener::bind(address).await.map_err(|error| {
        let variable = match error.kind() {
            std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied => port_variable,
            _ => address_variable,
        };
        Failure::Start(format!(
            "{variable}: cannot listen for {what} on {address}: {error}"
        ))
    })
}

/// For the start-up log: where payloads go, without secrets.
fn sink_name(sink: &SinkConfig) -> String {
    let (webhook, mode) = match sink {
        SinkConfig::Stdout => return "stdout".to_owned(),
        SinkConfig::Webhook(webhook) => (webhook, "sync"),
        SinkConfig::Spool { webhook, .. } => (webhook, "spool"),
        SinkConfig::Routes(routes) => {
            let names: Vec<String> = routes
                .specs
                .iter()
                .map(|route| {
                    format!(
                        "{}: {}",
                        route.name,
                        mail_laser::webhook::redacted(&route.url)
                    )
                })
                .collect();
            let mode = if routes.spool.is_some() {
                "spool"
            } else {
                "sync"
            };
            return format!("routes ({mode}; {})", names.join(", "));
        }
    };
    format!(
        "{} ({mode}, signing {})",
        mail_laser::webhook::redacted(&webhook.url),
        if webhook.signing_secret.is_some() {
            "<set>"
        } else {
            "<not set>"
        }
    )
}

/// SIGHUP reloads the certificate files (`docs/access.md`) and the routes
/// file (`docs/routes.md`). Installed whatever there is to reload, so
/// SIGHUP never ends the process.
async fn reload_on_sighup(tls: Option<CertReload>, routes: Option<LiveRoutes>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot install the SIGHUP handler");
            return;
        };
        while hangup.recv().await.is_some() {
            if let Some(tls) = &tls {
                tracing::info!("SIGHUP received: reloading the TLS certificate");
                tls.request();
            }
            if let Some(routes) = &routes {
                tracing::info!("SIGHUP received: reloading the routes file");
                routes.request_reload();
            }
            if tls.is_none() && routes.is_none() {
                tracing::info!("SIGHUP received: nothing to reload (self-signed certificate)");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (tls, routes);
    }
}

/// `mail-laser hash-password NAME`: reads a password on standard input and
/// prints `NAME:$argon2id$…`, a line for `MAIL_LASER_AUTH_USERS`.
#[derive(Debug, Parser)]
#[command(
    name = "mail-laser hash-password",
    about = "Print a MAIL_LASER_AUTH_USERS line (NAME:$argon2id$…) for the password read on standard input",
    after_help = "The password is the first line of standard input, without its line end. Pipe it in to keep it off the screen and out of the shell history:\n\n  read -rs PW && printf '%s\\n' \"$PW\" | mail-laser hash-password alice >> users"
)]
struct HashPassword {
    /// The user name clients give to AUTH.
    name: String,
}

fn hash_password() -> ExitCode {
    let args = HashPassword::try_parse_from(std::env::args_os().skip(1));
    let args = match args {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { START_FAILED } else { 0 });
        }
    };
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password for {} (shown as typed): ", args.name);
    }
    let mut password = String::new();
    if let Err(error) = stdin.lock().read_line(&mut password) {
        return exit(&Failure::Start(format!(
            "cannot read the password: {}",
            ErrorChain(&error)
        )));
    }
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return exit(&Failure::Start("no password on standard input".to_owned()));
    }
    match user_line(&args.name, password.as_bytes()) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => exit(&Failure::start(&error)),
    }
}

/// SIGTERM or SIGINT starts a graceful shutdown (`docs/smtp.md`).
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
