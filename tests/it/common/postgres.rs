//! A private PostgreSQL cluster — a real server, Debian's `postgresql` —
//! in a temporary folder on a free loopback port, stopped and removed on
//! drop. Each test starts its own, so tests share no tables and may run in
//! parallel; never the machine's own PostgreSQL service.
//!
//! Find the programs with `let [initdb, pg_ctl] = require_tool!("initdb",
//! "pg_ctl");` (`scripts/test` installs the package; its programs live in
//! `/usr/lib/postgresql/<version>/bin`, which [`super::tool`] searches).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The user a root test runs the server as (`initdb` refuses root).
const SERVER_USER: &str = "postgres";

pub struct Postgres {
    dir: PathBuf,
    pg_ctl: PathBuf,
    as_user: Option<&'static str>,
    /// The server's options (`pg_ctl -o`), kept for a restart.
    options: String,
    pub port: u16,
}

/// A server certificate and key, PEM.
pub struct ServerTls<'a> {
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
}

impl Postgres {
    /// `initdb` and `pg_ctl start` in a new folder, on a port the system
    /// just handed out (bound and released; the cluster binds it at once).
    pub fn start(initdb: &Path, pg_ctl: &Path) -> Self {
        Self::start_with(initdb, pg_ctl, None)
    }

    /// [`Self::start`], with TLS (`ssl=on`) when `tls` is given.
    pub fn start_with(initdb: &Path, pg_ctl: &Path, tls: Option<ServerTls<'_>>) -> Self {
        let is_root = std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0);
        let as_user = is_root.then_some(SERVER_USER);
        let dir = std::env::temp_dir().join(format!(
            "maillaser-pg-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(user) = as_user {
            let status = Command::new("chown")
                .args([&format!("{user}:"), dir.to_str().unwrap()])
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown {user} {}", dir.display());
        }
        let data = dir.join("data");
        let port = free_port();
        run(
            as_user,
            initdb,
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "maillaser",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        // fsync off: the server's own durability is not what the tests
        // check, and it makes them several times quicker on a busy disk.
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.display()
        );
        if let Some(tls) = tls {
            let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
            std::fs::write(&cert, tls.cert_pem).unwrap();
            std::fs::write(&key, tls.key_pem).unwrap();
            // The server refuses a key others can read.
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            if let Some(user) = as_user {
                for file in [&cert, &key] {
                    let status = Command::new("chown")
                        .args([&format!("{user}:"), file.to_str().unwrap()])
                        .status()
                        .expect("chown runs");
                    assert!(status.success());
                }
            }
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            ));
        }
        let postgres = Self {
            dir,
            pg_ctl: pg_ctl.to_owned(),
            as_user,
            options,
            port,
        };
        postgres.restart();
        postgres
    }

    /// A URL for database `name` (created on first use by [`Self::create`]).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://maillaser@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub async fn create(&self, name: &str) -> String {
        let client = self.connect("postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        self.url(name)
    }

    /// A client of database `name`, for a test's own queries.
    pub async fn connect(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.url(database), tokio_postgres::NoTls)
                .await
                .expect("the test cluster accepts connections");
        tokio::spawn(connection);
        client
    }

    /// Stops the server at once (as a crash would), keeping its files.
    pub fn kill(&self) {
        let output = self.stop_command().output().expect("pg_ctl runs");
        assert!(output.status.success(), "pg_ctl stop: {output:?}");
    }

    /// `pg_ctl stop -m immediate`, waiting for the server to be gone.
    fn stop_command(&self) -> Command {
        let data = self.dir.join("data");
        command(
            self.as_user,
            &self.pg_ctl,
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// Starts the server (again, after [`Self::kill`]), on the same port.
    pub fn restart(&self) {
        let data = self.dir.join("data");
        let options = &self.options;
        run(
            self.as_user,
            &self.pg_ctl,
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                options,
                "-l",
                self.dir.join("server.log").to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop_command().output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn command(as_user: Option<&str>, program: &Path, args: &[&str]) -> Command {
    match as_user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program).args(args);
            command
        }
        None => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
    }
}

fn run(as_user: Option<&str>, program: &Path, args: &[&str]) -> Output {
    let output = command(as_user, program, args)
        .output()
        .unwrap_or_else(|error| panic!("{} runs: {error}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?}: {output:?}",
        program.display()
    );
    output
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
