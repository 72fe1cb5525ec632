//! Who really sent a message: SPF (the `MAIL FROM` and `HELO` identities),
//! DKIM (every signature), DMARC (result, policy, alignment) and ARC (the
//! chain), computed with Stalwart's `mail-auth` over a DNS resolver of our
//! own settings (`docs/authentication.md`).
//!
//! [`Authenticator::authenticate`] never fails and never waits longer than
//! the settings' one deadline per message: a lookup that errs or runs out of
//! time is a `temperror` result, which [`Authenticator::verdict`] turns into
//! a decision. In mode `off` no resolver exists, so no query can be sent.

mod check;
mod resolver;
mod results;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::MessageAuthenticator;

use crate::mail::{AuthFields, DmarcPolicy, DmarcResult};

/// `MAIL_LASER_DMARC_DNS_TIMEOUT`'s default.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many `DKIM-Signature` fields of a message are verified
/// (each costs a DNS lookup); later ones are ignored, as if absent. Real
/// mail carries one to three.
pub const MAX_DKIM_SIGNATURES: usize = 10;

/// A DKIM signature (or the last ARC message signature) covering more
/// header fields than this is not verified (`permerror`): hashing a
/// signature's `h=` list costs its length times the message's header
/// count, both in the sender's hands. Real signatures list 5 to 40.
pub const MAX_SIGNED_HEADERS: usize = 64;

/// `MAIL_LASER_DMARC_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DmarcMode {
    /// No checks, no DNS traffic, nothing added to the payload.
    #[default]
    Off,
    /// Every check; the results go in the payload, nothing is refused.
    Monitor,
    /// As `monitor`, and a DMARC `fail` under a `reject` or `quarantine`
    /// policy is refused (`550 5.7.1`).
    Enforce,
}

impl DmarcMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Monitor => "monitor",
            Self::Enforce => "enforce",
        }
    }
}

/// `MAIL_LASER_DMARC_TEMPERROR_ACTION`: what `enforce` does when DMARC
/// could not be evaluated (a DNS timeout or SERVFAIL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TempErrorAction {
    /// Deliver, with `dmarc_result` `temperror`.
    Accept,
    /// `451 4.7.0`: the sender keeps the message and retries later.
    #[default]
    Reject,
}

/// How messages are authenticated, parsed once from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub mode: DmarcMode,
    pub temperror_action: TempErrorAction,
    /// One deadline for all the lookups of one message.
    pub dns_timeout: Duration,
    /// The DNS servers to ask; empty: the system's (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
    /// The `authserv-id` of `Authentication-Results`: MailLaser's host name.
    pub authserv_id: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: DmarcMode::Off,
            temperror_action: TempErrorAction::Reject,
            dns_timeout: DEFAULT_DNS_TIMEOUT,
            dns_servers: Vec::new(),
            authserv_id: "localhost".to_owned(),
        }
    }
}

/// Why the DNS resolver cannot be built (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the system's DNS configuration")]
    SystemResolver(#[source] mail_auth::hickory_resolver::net::NetError),
    #[error("cannot build the DNS resolver")]
    Resolver(#[source] mail_auth::hickory_resolver::net::NetError),
}

/// The decision a message's results lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it on, with its results.
    Accept,
    /// `550 5.7.1`: the From domain asks for it.
    Reject,
    /// `451 4.7.0`: DMARC could not be evaluated now.
    Defer,
}

impl Verdict {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Reject => "reject",
            Self::Defer => "defer",
        }
    }
}

/// What the checks found about one message: the payload's `auth` object
/// and what the decision and the logs read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthReport {
    fields: AuthFields,
    /// The deadline cut at least one check short.
    timed_out: bool,
}

impl AuthReport {
    pub fn fields(&self) -> &AuthFields {
        &self.fields
    }

    pub fn into_fields(self) -> AuthFields {
        self.fields
    }

    pub fn dmarc_result(&self) -> DmarcResult {
        self.fields.dmarc.result
    }

    /// The From domain's policy, when it publishes one.
    pub fn policy(&self) -> Option<DmarcPolicy> {
        self.fields.dmarc.policy
    }

    /// The From domain, when DMARC passed.
    pub fn authenticated_from(&self) -> Option<&str> {
        self.fields.authenticated_from()
    }

    /// The one deadline cut a check short (its result is `temperror`).
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }
}

/// What is checked: the message and what the client said around it.
#[derive(Debug, Clone, Copy)]
pub struct MessageToCheck<'a> {
    /// The message as received (headers and body).
    pub message: &'a [u8],
    pub client_ip: IpAddr,
    /// The `EHLO`/`HELO` name.
    pub helo: &'a str,
    /// The `MAIL FROM` address; `""` for the null path.
    pub mail_from: &'a str,
}

/// Authenticates messages under one set of settings. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    settings: Arc<AuthSettings>,
    /// `None` in mode `off`: no resolver is built, no query is ever sent.
    resolver: Option<MessageAuthenticator>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("settings", &self.settings)
            .field("resolver", &self.resolver.is_some())
            .finish()
    }
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::off()
    }
}

impl Authenticator {
    /// Builds the resolver unless the mode is `off` (no I/O beyond reading
    /// the system's resolver configuration when no server is given).
    ///
    /// # Errors
    /// [`AuthError`] when the resolver cannot be built.
    pub fn new(settings: AuthSettings) -> Result<Self, AuthError> {
        let resolver = match settings.mode {
            DmarcMode::Off => None,
            DmarcMode::Monitor | DmarcMode::Enforce => Some(resolver::build(&settings)?),
        };
        Ok(Self {
            settings: Arc::new(settings),
            resolver,
        })
    }

    /// Mode `off`.
    pub fn off() -> Self {
        Self {
            settings: Arc::new(AuthSettings::default()),
            resolver: None,
        }
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub fn mode(&self) -> DmarcMode {
        self.settings.mode
    }

    /// Every check on `message`, within the settings' deadline; `None` in
    /// mode `off`.
    pub async fn authenticate(&self, message: MessageToCheck<'_>) -> Option<AuthReport> {
        let resolver = self.resolver.as_ref()?;
        Some(check::authenticate(resolver, &self.settings, message).await)
    }

    /// What the mode makes of `report` (see [`verdict`]).
    pub fn verdict(&self, report: &AuthReport) -> Verdict {
        verdict(&self.settings, report.dmarc_result(), report.policy())
    }
}

/// The decision, from the mode and the DMARC result alone:
///
/// - `off` and `monitor` never refuse anything.
/// - `enforce` refuses a `fail` when the policy is `reject` **or
///   `quarantine`**: RFC 7489 §6.6.3 leaves what quarantine means to the
///   receiver, and MailLaser has no spam folder to put a message in.
/// - `enforce` answers a `temperror` with `451 4.7.0` when
///   `TempErrorAction::Reject` is set, unless the policy is known to be
///   `none` (then even a `fail` would be delivered: a retry changes nothing).
/// - `none` (no record, or no From domain) and `permerror` (a broken
///   record) are delivered: there is no policy to apply (RFC 7489 §6.6.3).
pub fn verdict(
    settings: &AuthSettings,
    result: DmarcResult,
    policy: Option<DmarcPolicy>,
) -> Verdict {
    if settings.mode != DmarcMode::Enforce {
        return Verdict::Accept;
    }
    match (result, policy) {
        (DmarcResult::Fail, Some(DmarcPolicy::Reject | DmarcPolicy::Quarantine)) => Verdict::Reject,
        (DmarcResult::Temperror, Some(DmarcPolicy::None)) => Verdict::Accept,
        (DmarcResult::Temperror, _) if settings.temperror_action == TempErrorAction::Reject => {
            Verdict::Defer
        }
        _ => Verdict::Accept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: DmarcMode, temperror_action: TempErrorAction) -> AuthSettings {
        AuthSettings {
            mode,
            temperror_action,
            ..AuthSettings::default()
        }
    }

    #[test]
    fn only_enforce_refuses() {
        use DmarcPolicy::{None as NoPolicy, Quarantine, Reject};
        use DmarcResult::{Fail, None, Pass, Permerror, Temperror};
        let enforce = settings(DmarcMode::Enforce, TempErrorAction::Reject);
        let cases = [
            (Pass, Some(Reject), Verdict::Accept),
            (Fail, Some(Reject), Verdict::Reject),
            (Fail, Some(Quarantine), Verdict::Reject),
            (Fail, Some(NoPolicy), Verdict::Accept),
            (None, Option::None, Verdict::Accept),
            (Permerror, Option::None, Verdict::Accept),
            (Temperror, Option::None, Verdict::Defer),
            (Temperror, Some(Reject), Verdict::Defer),
            (Temperror, Some(NoPolicy), Verdict::Accept),
        ];
        for (result, policy, expected) in cases {
            assert_eq!(
                verdict(&enforce, result, policy),
                expected,
                "{result:?} {policy:?}"
            );
        }
        let accepting = settings(DmarcMode::Enforce, TempErrorAction::Accept);
        assert_eq!(
            verdict(&accepting, Temperror, Some(Reject)),
            Verdict::Accept
        );
        assert_eq!(verdict(&accepting, Fail, Some(Reject)), Verdict::Reject);
        for mode in [DmarcMode::Off, DmarcMode::Monitor] {
            let quiet = settings(mode, TempErrorAction::Reject);
            for (result, policy, _) in cases {
                assert_eq!(verdict(&quiet, result, policy), Verdict::Accept);
            }
        }
    }

    #[tokio::test]
    async fn off_builds_no_resolver_and_checks_nothing() {
        let off = Authenticator::new(AuthSettings {
            // Unreachable on purpose: nothing may be sent there.
            dns_servers: vec!["192.0.2.1:53".parse().unwrap()],
            ..AuthSettings::default()
        })
        .unwrap();
        assert!(off.resolver.is_none());
        let report = off
            .authenticate(MessageToCheck {
                message: b"From: a@example.com\r\n\r\nbody",
                client_ip: IpAddr::from([127, 0, 0, 1]),
                helo: "client.example",
                mail_from: "a@example.com",
            })
            .await;
        assert_eq!(report, Option::None);
    }
}
