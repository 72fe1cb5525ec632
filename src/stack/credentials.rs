//! SMTP AUTH credentials (`docs/access.md`): the users file of Argon2id
//! hashes, their verification, and the throttle on failed attempts.
//!
//! - The file (`MAIL_LASER_AUTH_USERS`) holds `name:$argon2id$…` lines;
//!   it is read once at start and every line checked, so a typo stops the
//!   start rather than locking a user out later.
//! - Argon2 is slow on purpose: a verification runs on the blocking pool,
//!   at most one per core at a time ([`Verifier`]), so a flood of `AUTH`
//!   cannot take every core; a verification that cannot start within
//!   [`VERIFY_QUEUE_WAIT`] is answered `454`.
//! - A name that is not in the file costs a verification too (against a
//!   stand-in hash with the first user's parameters), so the reply time
//!   does not tell which names exist.
//! - [`AuthThrottle`]: a client IP with `MAIL_LASER_RATE_LIMIT_AUTH_FAILURES`
//!   failures within a minute gets `454` without a verification until its
//!   budget refills; the session itself closes after
//!   [`MAX_AUTH_FAILURES`](crate::smtp::session::MAX_AUTH_FAILURES).
//!
//! Passwords and hashes are never logged; user names are, escaped.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use futures_util::future::{BoxFuture, Either};
use governor::clock::{Clock, MonotonicClock};
use governor::nanos::Nanos;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::rate_limit::{ClientKey, Decision, IpRateLimiter, MAX_TRACKED_CLIENTS};
use crate::smtp::reply::Reply;
use crate::smtp::{AuthAttempt, Outcome, RequestKind, SmtpRequest, SmtpResponse};
use crate::telemetry::{Metrics, Printable};

/// How long an `AUTH` may wait for a free verifier before it is answered
/// `454` (the client tries again later).
pub const VERIFY_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// The costs a hash in the users file may ask for: one verification
/// takes `m` KiB of memory and time in proportion to `t × m`, and as many
/// run at once as there are cores. Far above every recommendation (OWASP:
/// m=19456, t=2; argon2-cffi: m=65536, t=3).
pub const MAX_M_COST: u32 = 256 * 1024;
pub const MAX_T_COST: u32 = 16;
pub const MAX_P_COST: u32 = 16;

/// Longest user name, in bytes.
pub const MAX_USERNAME: usize = 256;

/// Why the users file cannot be used; printed as one line at start. No
/// variant carries a hash or a line's text.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("MAIL_LASER_AUTH_USERS: cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MAIL_LASER_AUTH_USERS: {path} line {line}: {problem}")]
    Line {
        path: String,
        line: usize,
        problem: LineProblem,
    },
    #[error("MAIL_LASER_AUTH_USERS: {path} has no user (lines of the form name:$argon2id$…)")]
    Empty { path: String },
    #[error("cannot compute the stand-in hash for unknown user names")]
    StandIn(#[source] argon2::password_hash::Error),
}

/// What is wrong with one line of the users file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("expected name:hash")]
    NoSeparator,
    #[error("the user name must be 1 to 256 bytes without spaces, control characters or ':'")]
    BadName,
    #[error("the user name is listed twice")]
    Duplicate,
    #[error(
        "the hash is not an Argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash; mail-laser hash-password makes one)"
    )]
    NotArgon2id,
    #[error("the hash asks for more than m=262144 (KiB), t=16 or p=16")]
    TooCostly,
}

/// The users file, parsed: each name with its hash, and the stand-in hash
/// unknown names are verified against.
pub struct Credentials {
    users: HashMap<String, PasswordHash>,
    stand_in: PasswordHash,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads and checks the users file.
    ///
    /// # Errors
    /// The file cannot be read, a line is malformed (named by its number),
    /// or it lists no user.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let shown = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| CredentialsError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|error| match error {
            ParseError::Line(line, problem) => CredentialsError::Line {
                path: shown,
                line,
                problem,
            },
            ParseError::Empty => CredentialsError::Empty { path: shown },
            ParseError::StandIn(source) => CredentialsError::StandIn(source),
        })
    }

    /// Parses the file's octets in one pass: `name:hash` lines; blank
    /// lines and lines starting with `#` are skipped; CRLF is accepted.
    fn parse(text: &[u8]) -> Result<Self, ParseError> {
        let mut users = HashMap::new();
        let mut first: Option<Params> = None;
        for (index, line) in text.split(|&byte| byte == b'\n').enumerate() {
            let number = index + 1;
            let bad = |problem| ParseError::Line(number, problem);
            let line = std::str::from_utf8(line).map_err(|_| bad(LineProblem::NotUtf8))?;
            let line = line.strip_suffix('\r').unwrap_or(line).trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, hash, params) = parse_line(line).map_err(bad)?;
            first.get_or_insert(params);
            match users.entry(name) {
                Entry::Occupied(_) => return Err(bad(LineProblem::Duplicate)),
                Entry::Vacant(slot) => {
                    slot.insert(hash);
                }
            }
        }
        let params = first.ok_or(ParseError::Empty)?;
        let stand_in = stand_in(params).map_err(ParseError::StandIn)?;
        Ok(Self { users, stand_in })
    }

    /// Users listed.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `username`'s. Slow by design (one Argon2
    /// run, the same for a name that is not listed); run it off the async
    /// workers.
    pub fn check(&self, username: &str, password: &[u8]) -> bool {
        let (hash, listed) = match self.users.get(username) {
            Some(hash) => (hash, true),
            None => (&self.stand_in, false),
        };
        // The output comparison inside is constant-time.
        let matches = Argon2::default().verify_password(password, hash).is_ok();
        matches && listed
    }
}

/// Why [`Credentials::parse`] failed.
#[derive(Debug)]
enum ParseError {
    /// A bad line, 1-based.
    Line(usize, LineProblem),
    Empty,
    StandIn(argon2::password_hash::Error),
}

/// One `name:hash` line, trimmed and not a comment: the name, the hash
/// and its parameters.
fn parse_line(line: &str) -> Result<(String, PasswordHash, Params), LineProblem> {
    let (name, hash) = line.split_once(':').ok_or(LineProblem::NoSeparator)?;
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name.len() <= MAX_USERNAME
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid_name {
        return Err(LineProblem::BadName);
    }
    let hash = PasswordHash::new(hash.trim()).map_err(|_| LineProblem::NotArgon2id)?;
    let complete = hash.algorithm.as_str() == Algorithm::Argon2id.ident().as_str()
        && hash.salt.is_some()
        && hash.hash.is_some();
    if !complete {
        return Err(LineProblem::NotArgon2id);
    }
    let params = Params::try_from(&hash).map_err(|_| LineProblem::NotArgon2id)?;
    if hash
        .version
        .is_some_and(|version| Version::try_from(version).is_err())
    {
        return Err(LineProblem::NotArgon2id);
    }
    if params.m_cost() > MAX_M_COST || params.t_cost() > MAX_T_COST || params.p_cost() > MAX_P_COST
    {
        return Err(LineProblem::TooCostly);
    }
    Ok((name.to_owned(), hash, params))
}

/// A hash of a random password with `params`, for names not in the file:
/// verifying against it costs what verifying a listed user does.
fn stand_in(params: Params) -> Result<PasswordHash, argon2::password_hash::Error> {
    let mut secret = [0u8; 32];
    let mut salt = [0u8; 16];
    // Without randomness the stand-in is still unguessable enough: its
    // password is never compared with anything but a listed user's hash.
    let _ = getrandom::fill(&mut secret);
    let _ = getrandom::fill(&mut salt);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password_with_salt(&secret, &salt)
}

/// A `name:hash` line for the users file, with the recommended Argon2id
/// parameters (m=19456 KiB, t=2, p=1) and a random salt
/// (`mail-laser hash-password`).
///
/// # Errors
/// The user name is not one the file accepts, or the system has no
/// randomness for the salt.
pub fn user_line(name: &str, password: &[u8]) -> Result<String, UserLineError> {
    let valid_name = !name.is_empty()
        && name.len() <= MAX_USERNAME
        && !name.contains(':')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid_name {
        return Err(UserLineError::Name);
    }
    let hash = Argon2::default()
        .hash_password(password)
        .map_err(UserLineError::Hash)?;
    Ok(format!("{name}:{hash}"))
}

#[derive(Debug, thiserror::Error)]
pub enum UserLineError {
    #[error("the user name must be 1 to 256 bytes without spaces, control characters or ':'")]
    Name,
    #[error("cannot hash the password")]
    Hash(#[source] argon2::password_hash::Error),
}

// === impl Verifier ===

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    /// No verifier was free in time (or the blocking pool failed).
    Busy,
}

/// Runs verifications on the blocking pool, at most one per core at a
/// time.
#[derive(Debug, Clone)]
pub struct Verifier {
    credentials: Arc<Credentials>,
    permits: Arc<Semaphore>,
}

impl Verifier {
    /// One verification at a time per core.
    pub fn per_core(credentials: Arc<Credentials>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(credentials, cores)
    }

    pub fn new(credentials: Arc<Credentials>, concurrent: usize) -> Self {
        Self {
            credentials,
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
        }
    }

    pub async fn verify(&self, attempt: AuthAttempt) -> Verdict {
        let permit = tokio::time::timeout(VERIFY_QUEUE_WAIT, self.permits.clone().acquire_owned());
        let Ok(Ok(permit)) = permit.await else {
            return Verdict::Busy;
        };
        let credentials = self.credentials.clone();
        // The permit goes with the work: a session that gives up waiting
        // does not free a core the verification still uses.
        let checked = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            credentials.check(&attempt.username, attempt.password.expose())
        });
        match checked.await {
            Ok(true) => Verdict::Valid,
            Ok(false) => Verdict::Invalid,
            Err(_) => Verdict::Busy,
        }
    }
}

// === impl AuthThrottle ===

/// Failed `AUTH` attempts per client IP (`/64` for IPv6) across sessions:
/// N failures a minute, refilling one every 60/N seconds. A client with
/// none left is answered `454` without a verification until it has one
/// again, so a guesser gets no answer and no core.
#[derive(Debug)]
pub struct AuthThrottle<C: Clock = MonotonicClock> {
    failures: IpRateLimiter<C>,
    /// Clients with no failure left, and until when. Bounded like the
    /// limiter; when full, expired entries go first and then new ones are
    /// not added (the session cap and the verifier bound still apply).
    blocked: Mutex<HashMap<ClientKey, C::Instant>>,
}

impl AuthThrottle {
    /// `per_minute` failures per client and minute; `None` for 0 (no limit).
    pub fn per_minute(per_minute: u32) -> Option<Self> {
        IpRateLimiter::per_minute(per_minute).map(Self::new)
    }
}

impl<C: Clock> AuthThrottle<C> {
    pub fn new(failures: IpRateLimiter<C>) -> Self {
        Self {
            failures,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an `AUTH` from `ip` may be verified now.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let now = self.failures.clock().now();
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        match blocked.get(&ClientKey::from(ip)) {
            Some(&until) if until > now => false,
            Some(_) => {
                blocked.remove(&ClientKey::from(ip));
                true
            }
            None => true,
        }
    }

    /// Counts a failed attempt from `ip`; the one that uses up its budget
    /// blocks it until the next failure is allowed.
    pub fn failed(&self, ip: IpAddr) {
        let wait = match self.failures.check(ip) {
            Decision::Allowed { remaining: 0 } => self.failures.refill_interval(),
            Decision::Allowed { .. } | Decision::Untracked => return,
            Decision::Limited { retry_after } => retry_after,
        };
        let now = self.failures.clock().now();
        let until = now + Nanos::from(wait);
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        if blocked.len() >= MAX_TRACKED_CLIENTS {
            blocked.retain(|_, until| *until > now);
        }
        if blocked.len() < MAX_TRACKED_CLIENTS {
            blocked.insert(ClientKey::from(ip), until);
        }
    }

    /// Clients blocked now (or until the next sweep).
    pub fn blocked(&self) -> usize {
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

// === impl CredentialsLayer ===

/// Answers `AUTH` (`235`, `535`, `454`); passes everything else on.
/// Without credentials (`MAIL_LASER_AUTH=off`) it is a no-op: the session
/// answers `AUTH` with `502` itself.
#[derive(Debug, Clone)]
pub struct CredentialsLayer {
    verifier: Option<Verifier>,
    throttle: Option<Arc<AuthThrottle>>,
    metrics: Metrics,
}

impl CredentialsLayer {
    pub fn new(
        credentials: Option<Arc<Credentials>>,
        failures_per_minute: u32,
        metrics: Metrics,
    ) -> Self {
        Self {
            verifier: credentials.map(Verifier::per_core),
            throttle: AuthThrottle::per_minute(failures_per_minute).map(Arc::new),
            metrics,
        }
    }
}

impl<S> Layer<S> for CredentialsLayer {
    type Service = CredentialsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CredentialsService {
            inner,
            verifier: self.verifier.clone(),
            throttle: self.throttle.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CredentialsService<S> {
    inner: S,
    verifier: Option<Verifier>,
    throttle: Option<Arc<AuthThrottle>>,
    metrics: Metrics,
}

impl<S> Service<SmtpRequest> for CredentialsService<S>
where
    S: Service<SmtpRequest, Response = SmtpResponse>,
    S::Error: Send + 'static,
{
    type Response = SmtpResponse;
    type Error = S::Error;
    type Future = Either<BoxFuture<'static, Result<SmtpResponse, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: SmtpRequest) -> Self::Future {
        let RequestKind::Auth(attempt) = request.kind else {
            return Either::Right(self.inner.call(request));
        };
        let Some(verifier) = self.verifier.clone() else {
            let response = SmtpResponse::new(Outcome::Refused, Reply::not_implemented());
            return Either::Left(Box::pin(std::future::ready(Ok(response))));
        };
        let ip = request.session.peer.ip();
        let throttle = self.throttle.clone();
        let metrics = self.metrics.clone();
        Either::Left(Box::pin(async move {
            Ok(authenticate(&verifier, throttle.as_deref(), &metrics, ip, attempt).await)
        }))
    }
}

async fn authenticate(
    verifier: &Verifier,
    throttle: Option<&AuthThrottle>,
    metrics: &Metrics,
    ip: IpAddr,
    attempt: AuthAttempt,
) -> SmtpResponse {
    let user = Printable(&attempt.username).to_string();
    let mechanism = attempt.mechanism;
    if throttle.is_some_and(|throttle| !throttle.admits(ip)) {
        tracing::warn!(%ip, %user, "AUTH refused unverified: too many failures from this address");
        metrics.auth("throttled");
        metrics.rate_limited("auth");
        return SmtpResponse::new(Outcome::Deferred, Reply::auth_temporary_failure());
    }
    match verifier.verify(attempt).await {
        Verdict::Valid => {
            tracing::info!(%user, mechanism, "authenticated");
            metrics.auth("success");
            SmtpResponse::new(Outcome::Accepted, Reply::auth_succeeded())
        }
        Verdict::Invalid => {
            tracing::warn!(%ip, %user, mechanism, "AUTH failed: invalid credentials");
            metrics.auth("failure");
            if let Some(throttle) = throttle {
                throttle.failed(ip);
            }
            SmtpResponse::new(Outcome::Refused, Reply::auth_invalid())
        }
        Verdict::Busy => {
            tracing::warn!(%user, "AUTH not verified: no verifier free in time");
            metrics.auth("busy");
            SmtpResponse::new(Outcome::Deferred, Reply::auth_temporary_failure())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use proptest::prelude::*;
    use std::num::NonZeroU32;

    use crate::smtp::Password;

    /// A hash cheap enough for tests (the parameters are the file's business).
    fn cheap_hash(password: &[u8]) -> String {
        let params = Params::new(64, 1, 1, None).unwrap();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_with_salt(password, b"saltsaltsalt")
            .unwrap()
            .to_string()
    }

    fn attempt(username: &str, password: &[u8]) -> AuthAttempt {
        AuthAttempt {
            mechanism: "PLAIN",
            username: username.into(),
            password: Password::new(password.to_vec()),
        }
    }

    fn problem(text: &str) -> (usize, LineProblem) {
        match Credentials::parse(text.as_bytes()) {
            Err(ParseError::Line(line, problem)) => (line, problem),
            other => panic!("expected a bad line, got {other:?}"),
        }
    }

    #[test]
    fn a_users_file_with_comments_blank_lines_and_crlf() {
        let text = format!(
            "# MailLaser users\r\n\r\nalice:{}\r\n  bob : {}  \n",
            cheap_hash(b"wonderland"),
            cheap_hash(b"builder")
        );
        let credentials = Credentials::parse(text.as_bytes()).unwrap();
        assert_eq!(credentials.len(), 2);
        assert!(credentials.check("alice", b"wonderland"));
        assert!(credentials.check("bob", b"builder"));
        assert!(!credentials.check("alice", b"builder"));
        assert!(
            !credentials.check("Alice", b"wonderland"),
            "names are exact"
        );
        assert!(!credentials.check("carol", b"wonderland"));
        assert!(!credentials.check("carol", b""));
        assert_eq!(format!("{credentials:?}"), "Credentials { users: 2, .. }");
    }

    #[test]
    fn bad_lines_are_named_by_number_without_their_text() {
        let good = cheap_hash(b"pw");
        assert_eq!(
            problem(&format!("alice:{good}\nno separator here\n")),
            (2, LineProblem::NoSeparator)
        );
        assert_eq!(problem(&format!(":{good}")), (1, LineProblem::BadName));
        assert_eq!(
            problem(&format!("al ice:{good}")),
            (1, LineProblem::BadName)
        );
        assert_eq!(
            problem(&format!("a:{good}\n#\nb:{good}\na:{good}")),
            (4, LineProblem::Duplicate)
        );
        assert_eq!(problem("alice:hunter2"), (1, LineProblem::NotArgon2id));
        let argon2i = good.replace("$argon2id$", "$argon2i$");
        assert_eq!(
            problem(&format!("alice:{argon2i}")),
            (1, LineProblem::NotArgon2id)
        );
        let no_hash = good.rsplit_once('$').unwrap().0.to_owned();
        assert_eq!(
            problem(&format!("alice:{no_hash}")),
            (1, LineProblem::NotArgon2id)
        );
        let costly = good.replace("m=64,", "m=300000,");
        assert_eq!(
            problem(&format!("alice:{costly}")),
            (1, LineProblem::TooCostly)
        );
        let mut bytes = format!("alice:{good}\n").into_bytes();
        bytes.extend_from_slice(b"bob:\xff\n");
        assert!(matches!(
            Credentials::parse(&bytes),
            Err(ParseError::Line(2, LineProblem::NotUtf8))
        ));
        assert!(matches!(
            Credentials::parse(b"# nobody\n\n"),
            Err(ParseError::Empty)
        ));
    }

    #[test]
    fn load_errors_are_one_line_naming_the_variable_and_never_a_hash() {
        let dir = std::env::temp_dir().join(format!("ml-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing =
            CredentialsError::to_string(&Credentials::load(&dir.join("nope")).unwrap_err());
        assert!(
            missing.starts_with("MAIL_LASER_AUTH_USERS: cannot read "),
            "{missing}"
        );
        let path = dir.join("users");
        let hash = cheap_hash(b"pw").replace("$argon2id$", "$argon2d$");
        std::fs::write(&path, format!("# users\nalice:{hash}\n")).unwrap();
        let error = Credentials::load(&path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "MAIL_LASER_AUTH_USERS: {} line 2: ",
                path.display()
            )),
            "{error}"
        );
        assert!(!error.contains("argon2d$"), "{error}");
        assert!(!error.contains('\n'), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn hash_password_lines_load() {
        let line = user_line("alice@example.com", b"correct horse").unwrap();
        assert!(
            line.starts_with("alice@example.com:$argon2id$v=19$m=19456,t=2,p=1$"),
            "{line}"
        );
        let credentials = Credentials::parse(line.as_bytes()).unwrap();
        assert!(credentials.check("alice@example.com", b"correct horse"));
        assert!(!credentials.check("alice@example.com", b"correct horsE"));
        for bad in ["", "a b", "a:b", "tab\there"] {
            assert!(
                matches!(user_line(bad, b"pw"), Err(UserLineError::Name)),
                "{bad:?}"
            );
        }
    }

    proptest! {
        /// The parser takes any octets without panicking, and a file of
        /// arbitrary text lines around a good one is judged line by line.
        #[test]
        fn the_users_file_parser_never_panics(text in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Credentials::parse(&text);
        }

        #[test]
        fn phc_like_lines_never_panic(line in "[a-z]{0,4}:?\\$?(argon2id)?\\$?[v=0-9,mtp$A-Za-z+/]{0,80}") {
            let _ = Credentials::parse(line.as_bytes());
        }
    }

    #[test]
    fn the_throttle_blocks_a_client_after_n_failures_until_one_refills() {
        let clock = FakeRelativeClock::default();
        let limiter = IpRateLimiter::with_clock(NonZeroU32::new(3).unwrap(), clock.clone(), 100);
        let throttle = AuthThrottle::new(limiter);
        let guesser: IpAddr = "198.51.100.7".parse().unwrap();
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        for _ in 0..2 {
            assert!(throttle.admits(guesser));
            throttle.failed(guesser);
        }
        assert!(throttle.admits(guesser));
        throttle.failed(guesser);
        assert!(
            !throttle.admits(guesser),
            "the third failure uses up the budget"
        );
        assert!(throttle.admits(other));
        clock.advance(Duration::from_secs(19));
        assert!(!throttle.admits(guesser));
        clock.advance(Duration::from_secs(1));
        assert!(
            throttle.admits(guesser),
            "one failure refilled after 60 s / 3"
        );
        throttle.failed(guesser);
        assert!(!throttle.admits(guesser));
    }

    /// A flood of AUTH cannot queue forever for the verifiers: past
    /// `VERIFY_QUEUE_WAIT` it is answered `454`.
    #[tokio::test(start_paused = true)]
    async fn a_verification_that_cannot_start_in_time_is_busy() {
        let text = format!("alice:{}", cheap_hash(b"pw"));
        let credentials = Arc::new(Credentials::parse(text.as_bytes()).unwrap());
        let verifier = Verifier::new(credentials, 1);
        assert_eq!(
            verifier.verify(attempt("alice", b"pw")).await,
            Verdict::Valid
        );
        assert_eq!(
            verifier.verify(attempt("alice", b"no")).await,
            Verdict::Invalid
        );
        assert_eq!(
            verifier.verify(attempt("mallory", b"pw")).await,
            Verdict::Invalid
        );
        let held = verifier.permits.clone().acquire_owned().await.unwrap();
        assert_eq!(
            verifier.verify(attempt("alice", b"pw")).await,
            Verdict::Busy
        );
        drop(held);
        assert_eq!(
            verifier.verify(attempt("alice", b"pw")).await,
            Verdict::Valid
        );
    }

    #[tokio::test]
    async fn the_layer_answers_auth_and_throttles_per_address() {
        use tower::{ServiceExt, service_fn};
        let text = format!("alice:{}", cheap_hash(b"pw"));
        let credentials = Arc::new(Credentials::parse(text.as_bytes()).unwrap());
        let layer = CredentialsLayer::new(Some(credentials), 2, Metrics::disabled());
        let inner = service_fn(|_: SmtpRequest| async {
            Ok::<_, tower::BoxError>(SmtpResponse::sender_accepted())
        });
        let service = layer.layer(inner);
        let auth = |password: &[u8]| {
            let mut request = SmtpRequest::test_rcpt("x@example.com");
            request.kind = RequestKind::Auth(attempt("alice", password));
            request
        };
        let answer = |password: &'static [u8]| {
            let service = service.clone();
            async move { service.oneshot(auth(password)).await.unwrap() }
        };
        assert_eq!(answer(b"pw").await.reply, Reply::auth_succeeded());
        assert_eq!(answer(b"bad").await.reply, Reply::auth_invalid());
        assert_eq!(answer(b"bad").await.reply, Reply::auth_invalid());
        // Two failures a minute: the right password is not even checked now.
        let throttled = answer(b"pw").await;
        assert_eq!(throttled.outcome, Outcome::Deferred);
        assert_eq!(throttled.reply, Reply::auth_temporary_failure());
        // Other requests pass through.
        let rcpt = service
            .clone()
            .oneshot(SmtpRequest::test_rcpt("x@example.com"))
            .await
            .unwrap();
        assert_eq!(rcpt, SmtpResponse::sender_accepted());
    }
}
