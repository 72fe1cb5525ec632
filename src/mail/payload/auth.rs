//! The authentication results a payload carries (`dmarc_result`,
//! `authenticated_from`, `auth`; `docs/authentication.md`): plain data,
//! filled in by the `auth` module, which computes them.
//!
//! Result names are RFC 8601's, lower case, so a consumer can compare them
//! with what it reads in an `Authentication-Results` header.

use schemars::JsonSchema;
use serde::Serialize;

/// An SPF result (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpfResult {
    Pass,
    Fail,
    Softfail,
    Neutral,
    None,
    Temperror,
    Permerror,
}

impl SpfResult {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Softfail => "softfail",
            Self::Neutral => "neutral",
            Self::None => "none",
            Self::Temperror => "temperror",
            Self::Permerror => "permerror",
        }
    }
}

/// The result of verifying signatures: one DKIM signature (RFC 8601
/// §2.7.1) or an ARC chain (RFC 8617 §4.4, with the verifier's `neutral`
/// for a chain whose last set cannot be checked). One type, as both are
/// verified the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureResult {
    Pass,
    Fail,
    Neutral,
    None,
    Temperror,
    Permerror,
}

impl SignatureResult {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Neutral => "neutral",
            Self::None => "none",
            Self::Temperror => "temperror",
            Self::Permerror => "permerror",
        }
    }
}

/// A DMARC result (RFC 7489 §11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DmarcResult {
    Pass,
    Fail,
    None,
    Temperror,
    Permerror,
}

impl DmarcResult {
    /// The label used in logs, spans and `maillaser_auth_results_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::None => "none",
            Self::Temperror => "temperror",
            Self::Permerror => "permerror",
        }
    }
}

/// The policy a DMARC record asks for (`p=`, or `sp=` for a subdomain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

impl DmarcPolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Quarantine => "quarantine",
            Self::Reject => "reject",
        }
    }
}

/// `auth`: every check MailLaser made, for consumers that want more than
/// `dmarc_result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct AuthFields {
    pub spf: SpfFields,
    /// One entry per `DKIM-Signature` checked, in message order (at most the
    /// first 10); empty for an unsigned message.
    pub dkim: Vec<DkimSignature>,
    pub dmarc: DmarcFields,
    pub arc: ArcFields,
    /// The RFC 8601 `Authentication-Results` header value a downstream MTA
    /// would add, on one line: `authserv-id; method=result …; …`.
    pub authentication_results: String,
}

/// SPF for both identities the client gave (RFC 7208 §2.3, §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SpfFields {
    /// The `MAIL FROM` identity (for the null path: `postmaster@` the HELO name).
    pub mail_from: SpfCheck,
    /// The `HELO`/`EHLO` identity.
    pub helo: SpfCheck,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SpfCheck {
    pub result: SpfResult,
    /// The domain whose SPF record was evaluated.
    pub domain: String,
}

/// One DKIM signature and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct DkimSignature {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    pub result: SignatureResult,
}

/// DMARC (RFC 7489) for the domain of `From:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct DmarcFields {
    pub result: DmarcResult,
    /// The policy the domain's record asks for; left out when no record was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<DmarcPolicy>,
    /// The domain of `From:`; left out when the message has none (or
    /// several domains there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_domain: Option<String>,
    /// SPF passed for a `MAIL FROM` domain aligned with `from_domain`.
    pub spf_aligned: bool,
    /// A DKIM signature passed for a domain aligned with `from_domain`.
    pub dkim_aligned: bool,
}

/// ARC (RFC 8617): the chain of custody of a forwarded message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ArcFields {
    pub result: SignatureResult,
}

impl AuthFields {
    /// The From domain, when DMARC passed: the sender proved it.
    pub fn authenticated_from(&self) -> Option<&str> {
        match self.dmarc.result {
            DmarcResult::Pass => self.dmarc.from_domain.as_deref(),
            _ => None,
        }
    }

    /// Bytes the fields take, for the payload's memory estimate.
    pub fn size_in_memory(&self) -> usize {
        let spf = self.spf.mail_from.domain.len() + self.spf.helo.domain.len();
        let dkim: usize = self
            .dkim
            .iter()
            .map(|signature| signature.domain.len() + signature.selector.len() + 32)
            .sum();
        let dmarc = self.dmarc.from_domain.as_ref().map_or(0, String::len);
        256 + spf + dkim + 2 * dmarc + self.authentication_results.len()
    }
}
