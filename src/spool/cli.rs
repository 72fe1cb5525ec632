//! `mail-laser spool list|show|requeue|purge` (`docs/delivery.md#operating-the-spool`):
//! the [`admin`](super::admin) operations for people (aligned tables) and
//! scripts (`--json`: one JSON document on standard output).
//!
//! Exit status: 0 done; 1 no such entry; 2 a usage error or a store that
//! cannot be used, with one line on standard error.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use super::admin::{AdminError, EntryInfo, Requeued, Shown, SpoolAdmin, State};
use super::file::now_ms;
use super::postgres::PostgresUrl;
use crate::store::{AttachmentStore, S3Args};
use crate::telemetry::ErrorChain;

/// Exit status: no such entry.
const NOT_FOUND: u8 = 1;
/// Exit status: usage error, or the store cannot be used.
const FAILED: u8 = 2;

/// Longest error or reason shown in a table row (`show` has it whole).
const ERROR_WIDTH: usize = 60;

#[derive(Debug, Parser)]
#[command(
    name = "mail-laser spool",
    about = "Inspect and operate the spool: waiting messages and dead letters (docs/delivery.md)",
    after_help = "The store is the server's: the folder MAIL_LASER_SPOOL_DIR, or the PostgreSQL queue MAIL_LASER_SPOOL_URL when set (with the server's MAIL_LASER_S3_* for bodies too large for their row).\nExit status: 0 done, 1 no such entry, 2 usage error or the store cannot be used."
)]
struct Args {
    /// The spool folder (dead letters in its dead/ subfolder).
    #[arg(
        long,
        env = "MAIL_LASER_SPOOL_DIR",
        value_name = "DIR",
        default_value = "./spool",
        global = true
    )]
    spool_dir: PathBuf,

    /// The PostgreSQL queue instead of the folder (postgres://user:password@host/db).
    #[arg(
        long,
        env = "MAIL_LASER_SPOOL_URL",
        value_name = "URL",
        hide_env_values = true,
        global = true
    )]
    spool_url: Option<String>,

    /// One JSON document on standard output, for scripts.
    #[arg(long, global = true)]
    json: bool,

    /// The server's object store, where the PostgreSQL queue keeps bodies too large for their row.
    #[command(flatten)]
    s3: S3Args,

    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List waiting messages and dead letters.
    List {
        /// Only dead letters.
        #[arg(long, conflicts_with = "waiting")]
        dead: bool,
        /// Only waiting messages.
        #[arg(long)]
        waiting: bool,
    },
    /// Show one entry: its fields and its webhook body.
    Show {
        /// The entry's ID, as `list` shows it.
        id: String,
    },
    /// Make an entry (or with --dead every dead letter) due now; attempts are kept.
    Requeue {
        /// The entry's ID, as `list` shows it.
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<String>,
        /// Every dead letter.
        #[arg(long)]
        dead: bool,
    },
    /// Remove dead letters that died more than --older-than ago (never waiting mail).
    Purge {
        /// Dead letters (required: waiting mail is never purged).
        #[arg(long)]
        dead: bool,
        /// How long ago they died (1h, 7d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Option<Duration>,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text).map_err(|error| error.to_string())
}

/// What one run printed, and its exit status.
struct Outcome {
    stdout: String,
    status: u8,
}

impl Outcome {
    fn ok(stdout: String) -> Self {
        Self { stdout, status: 0 }
    }
}

/// Runs `mail-laser spool …` (`args` without the program name and `spool`)
/// and returns the exit status.
pub fn main(args: impl IntoIterator<Item = OsString>) -> u8 {
    let args = std::iter::once(OsString::from("mail-laser spool")).chain(args);
    let args = match Args::try_parse_from(args) {
        Ok(args) => args,
        Err(error) if !error.use_stderr() => {
            let _ = error.print();
            return 0;
        }
        Err(error) => return fail(&first_line(&error.to_string())),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the runtime: {error}")),
    };
    match runtime.block_on(run(args)) {
        Ok(outcome) => {
            print!("{}", outcome.stdout);
            outcome.status
        }
        Err((line, status)) => {
            eprintln!("mail-laser: {line}");
            status
        }
    }
}

fn fail(line: &str) -> u8 {
    eprintln!("mail-laser: {line}");
    FAILED
}

/// clap's message without its `error: ` and the usage lines after it.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default();
    format!(
        "spool: {} (see mail-laser spool --help)",
        line.strip_prefix("error: ").unwrap_or(line)
    )
}

async fn run(args: Args) -> Result<Outcome, (String, u8)> {
    let admin = match args
        .spool_url
        .as_deref()
        .filter(|url| !url.trim().is_empty())
    {
        Some(text) => {
            let url = PostgresUrl::parse(text).map_err(|expected| {
                (format!("MAIL_LASER_SPOOL_URL: expected {expected}"), FAILED)
            })?;
            let objects = args
                .s3
                .settings()
                .map(AttachmentStore::new)
                .transpose()
                .map_err(|error| (format!("MAIL_LASER_S3_*: {}", ErrorChain(&error)), FAILED))?;
            SpoolAdmin::postgres(&url, objects).map_err(|error| {
                (
                    format!("MAIL_LASER_SPOOL_URL: {}", ErrorChain(&error)),
                    FAILED,
                )
            })?
        }
        None => SpoolAdmin::folder(&args.spool_dir),
    };
    let failed = |error: AdminError| {
        let status = match error {
            AdminError::NotFound(_) => NOT_FOUND,
            _ => FAILED,
        };
        (
            format!(
                "spool ({} {}): {}",
                admin.kind(),
                admin.location(),
                ErrorChain(&error)
            ),
            status,
        )
    };
    let now = now_ms();
    let json = args.json;
    let document = |mut value: Value| {
        value["store"] = json!(admin.kind());
        value["location"] = json!(admin.location());
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        Outcome::ok(text)
    };
    match args.action {
        Action::List { dead, waiting } => {
            let mut entries = admin.list().await.map_err(failed)?;
            entries.retain(|entry| match entry.state {
                State::Waiting => !dead,
                State::Dead => !waiting,
            });
            let count = |state| entries.iter().filter(|entry| entry.state == state).count();
            let (waiting, dead) = (count(State::Waiting), count(State::Dead));
            Ok(if json {
                document(json!({ "waiting": waiting, "dead": dead, "entries": entries }))
            } else if entries.is_empty() {
                Outcome::ok(format!(
                    "nothing in the spool ({} {})\n",
                    admin.kind(),
                    admin.location()
                ))
            } else {
                Outcome::ok(format!(
                    "{}{waiting} waiting, {dead} dead ({} {})\n",
                    table(&entries, now),
                    admin.kind(),
                    admin.location()
                ))
            })
        }
        Action::Show { id } => {
            let shown = admin.show(&id).await.map_err(failed)?;
            Ok(if json {
                document(show_json(&shown))
            } else {
                Outcome::ok(show_text(&shown, now))
            })
        }
        Action::Requeue { id: Some(id), .. } => {
            let requeued = admin.requeue(&id).await.map_err(failed)?;
            let (list, waiting): (Vec<&str>, Vec<&str>) = match requeued {
                Requeued::AlreadyWaiting => (vec![], vec![id.as_str()]),
                Requeued::Dead | Requeued::Waiting => (vec![id.as_str()], vec![]),
            };
            Ok(if json {
                document(json!({ "requeued": list, "already_waiting": waiting }))
            } else {
                Outcome::ok(match requeued {
                    Requeued::Dead => format!("requeued dead letter {id}: due now\n"),
                    Requeued::Waiting => format!("requeued {id}: due now\n"),
                    Requeued::AlreadyWaiting => format!(
                        "{id} is already waiting; the folder's due times are the running server's (a restart makes every waiting file due now)\n"
                    ),
                })
            })
        }
        Action::Requeue { id: None, .. } => {
            let requeued = admin.requeue_dead().await.map_err(failed)?;
            Ok(if json {
                document(json!({ "requeued": requeued, "already_waiting": [] }))
            } else {
                Outcome::ok(summary("requeued", "dead letter", &requeued))
            })
        }
        Action::Purge { dead, older_than } => {
            let Some(older_than) = older_than.filter(|_| dead) else {
                return Err((
                    "spool purge: needs --dead and --older-than DURATION (waiting mail is never purged)"
                        .into(),
                    FAILED,
                ));
            };
            let purged = admin.purge_dead(older_than).await.map_err(failed)?;
            Ok(if json {
                document(json!({ "purged": purged.ids, "objects_left": purged.objects_left }))
            } else {
                let mut text = summary("purged", "dead letter", &purged.ids);
                if !purged.objects_left.is_empty() {
                    let _ = writeln!(
                        text,
                        "{} offloaded bodies stay in the object store:",
                        purged.objects_left.len()
                    );
                    for left in &purged.objects_left {
                        let _ = writeln!(text, "  {} ({})", left.key, left.reason);
                    }
                }
                Outcome::ok(text)
            })
        }
    }
}

fn summary(done: &str, what: &str, ids: &[String]) -> String {
    if ids.is_empty() {
        return format!("no {what} to be {done}\n");
    }
    let mut text = format!("{done} {} {what}(s):\n", ids.len());
    for id in ids {
        let _ = writeln!(text, "  {id}");
    }
    text
}

/// An age for people: the two largest units (`42s`, `12m5s`, `3h12m`,
/// `2d4h`).
fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn size(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let value = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes}B"),
        1024..1_048_576 => format!("{:.1}KiB", value / 1024.0),
        _ => format!("{:.1}MiB", value / 1_048_576.0),
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(width.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// The table cell for when an entry is tried next, or when it died.
fn next(entry: &EntryInfo, now: u64) -> String {
    match (entry.state, entry.dead_at_ms, entry.next_attempt_ms) {
        (State::Dead, Some(at), _) => format!("dead {} ago", age(now.saturating_sub(at))),
        (State::Dead, None, _) => "dead".into(),
        (State::Waiting, _, Some(at)) if at > now => format!("in {}", age(at - now)),
        (State::Waiting, _, Some(_)) => "now".into(),
        (State::Waiting, _, None) => "-".into(),
    }
}

fn problem(entry: &EntryInfo) -> String {
    if let Some(unreadable) = &entry.unreadable {
        return format!("unreadable: {unreadable}");
    }
    let text = match entry.state {
        State::Dead => entry.dead_reason.as_deref(),
        State::Waiting => entry.last_error.as_deref(),
    };
    text.unwrap_or("-").to_owned()
}

/// An aligned table, one row per entry.
fn table(entries: &[EntryInfo], now: u64) -> String {
    let header = [
        "STATE", "ID", "ROUTE", "ATTEMPTS", "AGE", "NEXT", "SIZE", "ERROR",
    ];
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|entry| {
            [
                entry.state.as_str().to_owned(),
                entry.id.clone(),
                entry.route.clone().unwrap_or_else(|| "-".into()),
                entry
                    .attempts
                    .map_or_else(|| "-".into(), |attempts| attempts.to_string()),
                entry
                    .first_seen_ms
                    .map_or_else(|| "-".into(), |at| age(now.saturating_sub(at))),
                next(entry, now),
                size(entry.size),
                truncate(&problem(entry), ERROR_WIDTH),
            ]
        })
        .collect();
    let mut widths = header.map(|title| title.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = width - cell.chars().count();
                let _ = write!(out, "{cell}{:pad$}  ", "");
            }
        }
        text.push_str(out.trim_end());
        text.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    text
}

fn body_value(shown: &Shown) -> Option<Value> {
    serde_json::from_slice(&shown.body).ok()
}

fn show_json(shown: &Shown) -> Value {
    let mut value = json!({ "entry": shown.info });
    match body_value(shown) {
        Some(body) => value["body"] = body,
        None => value["body_text"] = json!(String::from_utf8_lossy(&shown.body)),
    }
    value
}

fn show_text(shown: &Shown, now: u64) -> String {
    let entry = &shown.info;
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
    let when = |at: Option<u64>| {
        at.map(|at| {
            if at <= now {
                format!("{at} ({} ago)", age(now - at))
            } else {
                format!("{at} (in {})", age(at - now))
            }
        })
    };
    let mut fields = vec![
        ("id", entry.id.clone()),
        ("state", entry.state.as_str().to_owned()),
        ("route", or_dash(entry.route.clone())),
        ("attempts", or_dash(entry.attempts.map(|n| n.to_string()))),
        ("first seen (ms)", or_dash(when(entry.first_seen_ms))),
    ];
    match entry.state {
        State::Waiting => fields.push(("next attempt (ms)", or_dash(when(entry.next_attempt_ms)))),
        State::Dead => fields.push(("dead since (ms)", or_dash(when(entry.dead_at_ms)))),
    }
    fields.extend([
        ("size", format!("{} bytes", entry.size)),
        ("idempotency key", or_dash(entry.idempotency_key.clone())),
        ("last error", or_dash(entry.last_error.clone())),
    ]);
    if entry.state == State::Dead {
        fields.push(("dead reason", or_dash(entry.dead_reason.clone())));
    }
    if let Some(unreadable) = &entry.unreadable {
        fields.push(("unreadable", unreadable.clone()));
    }
    if let Some(key) = &entry.body_key {
        fields.push(("body in the object store", key.clone()));
    }
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for (name, value) in fields {
        let _ = writeln!(text, "{:width$} {value}", format!("{name}:"));
    }
    text.push_str("body:\n");
    match body_value(shown) {
        Some(body) => text.push_str(&serde_json::to_string_pretty(&body).unwrap_or_default()),
        None => text.push_str(&String::from_utf8_lossy(&shown.body)),
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: State) -> EntryInfo {
        EntryInfo {
            id: "1700000000123-9f86d081884c7d65.msg".into(),
            state,
            route: None,
            attempts: Some(3),
            first_seen_ms: Some(1_000),
            next_attempt_ms: None,
            dead_at_ms: None,
            size: 2048,
            last_error: Some("webhook answered 503".into()),
            dead_reason: None,
            idempotency_key: Some("ab".repeat(32)),
            unreadable: None,
            body_key: None,
        }
    }

    #[test]
    fn ages_and_sizes_read_well() {
        assert_eq!(age(999), "0s");
        assert_eq!(age(42_000), "42s");
        assert_eq!(age(725_000), "12m5s");
        assert_eq!(age((3 * 3600 + 12 * 60 + 7) * 1000), "3h12m");
        assert_eq!(age((2 * 86_400 + 4 * 3600) * 1000), "2d4h");
        assert_eq!(size(512), "512B");
        assert_eq!(size(2048), "2.0KiB");
        assert_eq!(size(3 * 1_048_576), "3.0MiB");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn the_table_is_aligned() {
        let mut dead = entry(State::Dead);
        dead.id = "7".into();
        dead.route = Some("support".into());
        dead.dead_at_ms = Some(5_000);
        dead.dead_reason = Some(format!("rejected by the webhook (422): {}", "x".repeat(80)));
        let now = 3_600_000 + 1_000;
        let text = table(&[entry(State::Waiting), dead], now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let column = |line: &str, word: &str| line.find(word).unwrap();
        assert_eq!(column(lines[0], "ROUTE"), column(lines[2], "support"));
        assert_eq!(
            column(lines[0], "ERROR"),
            column(lines[1], "webhook answered 503")
        );
        assert_eq!(column(lines[0], "ERROR"), column(lines[2], "rejected"));
        assert!(lines[1].contains("1h0m") && lines[2].contains("dead 59m56s ago"));
        let error = &lines[2][column(lines[0], "ERROR")..];
        assert!(
            error.ends_with('…') && error.chars().count() == ERROR_WIDTH,
            "{error}"
        );
    }

    #[test]
    fn show_pretty_prints_a_json_body() {
        let shown = Shown {
            info: entry(State::Waiting),
            body: bytes::Bytes::from_static(b"{\"subject\":\"hi\"}"),
        };
        let text = show_text(&shown, 2_000);
        assert!(
            text.contains("body:\n{\n  \"subject\": \"hi\"\n}\n"),
            "{text}"
        );
        assert_eq!(show_json(&shown)["body"]["subject"], "hi");
        let raw = Shown {
            info: entry(State::Waiting),
            body: bytes::Bytes::from_static(b"not json"),
        };
        assert_eq!(show_json(&raw)["body_text"], "not json");
    }

    #[test]
    fn clap_errors_are_one_line() {
        let error = Args::try_parse_from(["mail-laser spool", "frobnicate"]).unwrap_err();
        let line = first_line(&error.to_string());
        assert!(
            !line.contains('\n') && line.starts_with("spool: "),
            "{line}"
        );
    }
}
