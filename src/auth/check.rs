//! The checks of one message, within one deadline: SPF for both identities,
//! DKIM and ARC run side by side, then DMARC from their results.
//!
//! A check the deadline cuts short is a `temperror`; DMARC, which needs its
//! own lookups, is a `temperror` too when no time is left for it. The
//! message is hostile: at most [`MAX_DKIM_SIGNATURES`] signatures are
//! verified, none with more than [`MAX_SIGNED_HEADERS`] header fields, and
//! no report (RFC 6651 `r=y`) is looked up, as MailLaser sends none.

use std::future::Future;

use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput,
    DmarcResult, DnsError, Error, MessageAuthenticator, SpfOutput, SpfResult,
};
use tokio::time::{Instant, timeout_at};

use super::results::fields;
use super::{AuthReport, AuthSettings, MAX_DKIM_SIGNATURES, MAX_SIGNED_HEADERS, MessageToCheck};

/// The error a check cut short by the deadline reports.
fn timeout_error() -> Error {
    Error::Dns(DnsError::Resolver(
        "deadline for the message's lookups passed".into(),
    ))
}

/// The error of a signature over more than [`MAX_SIGNED_HEADERS`] fields.
fn too_wide_error() -> Error {
    Error::Io("too many signed header fields".into())
}

/// `output`, or what `instead` makes when the deadline cut the check
/// short (noted in `timed_out`).
fn or_timeout<T>(output: Option<T>, timed_out: &mut bool, instead: impl FnOnce() -> T) -> T {
    output.unwrap_or_else(|| {
        *timed_out = true;
        instead()
    })
}

/// `future`, or `None` once `deadline` has passed.
async fn within<T>(deadline: Instant, future: impl Future<Output = T>) -> Option<T> {
    timeout_at(deadline, future).await.ok()
}

pub(super) async fn authenticate(
    resolver: &MessageAuthenticator,
    settings: &AuthSettings,
    input: MessageToCheck<'_>,
) -> AuthReport {
    let deadline = Instant::now() + settings.dns_timeout;
    let host = settings.authserv_id.as_str();
    let MessageToCheck {
        message: raw,
        client_ip: ip,
        helo,
        mail_from,
    } = input;

    // A message without a header block has no signature and no From: DKIM,
    // ARC and DMARC find nothing; SPF still judges the envelope.
    let mut message = AuthenticatedMessage::parse(raw).unwrap_or_default();
    for header in &mut message.dkim_headers {
        header.header.r = false;
    }
    message.dkim_headers.truncate(MAX_DKIM_SIGNATURES);
    let (too_wide, verifiable): (Vec<_>, Vec<_>) = std::mem::take(&mut message.dkim_headers)
        .into_iter()
        .partition(|header| header.header.h.len() > MAX_SIGNED_HEADERS);
    message.dkim_headers = verifiable;
    let arc_too_wide = message
        .ams_headers
        .iter()
        .any(|header| header.header.h.len() > MAX_SIGNED_HEADERS);
    let message = message;

    let spf_mail_from = SpfParameters::verify_mail_from(ip, helo, host, mail_from);
    let spf_helo = SpfParameters::verify_ehlo(ip, helo, host);
    let (spf_mail_from_output, spf_helo_output, dkim, arc) = tokio::join!(
        within(deadline, resolver.verify_spf(spf_mail_from)),
        within(deadline, resolver.verify_spf(spf_helo)),
        within(deadline, resolver.verify_dkim(&message)),
        async {
            if arc_too_wide {
                return Some(
                    ArcOutput::default().with_result(DkimResult::PermError(too_wide_error())),
                );
            }
            within(deadline, resolver.verify_arc(&message)).await
        },
    );
    let mut timed_out = false;
    let mail_from_domain = mail_from
        .rsplit_once('@')
        .map_or(helo, |(_, domain)| domain);
    let spf_mail_from = or_timeout(spf_mail_from_output, &mut timed_out, || {
        SpfOutput::new(mail_from_domain.to_owned()).with_result(SpfResult::TempError)
    });
    let spf_helo = or_timeout(spf_helo_output, &mut timed_out, || {
        SpfOutput::new(helo.to_owned()).with_result(SpfResult::TempError)
    });
    let dkim = or_timeout(dkim, &mut timed_out, || {
        message
            .dkim_headers
            .iter()
            .map(|header| DkimOutput::temp_err(timeout_error()).with_signature(&header.header))
            .collect()
    });
    let arc = or_timeout(arc, &mut timed_out, || {
        ArcOutput::default().with_result(DkimResult::TempError(timeout_error()))
    });
    let dkim = body_hash_mismatch_is_fail(dkim, &message);
    let dkim: Vec<DkimOutput> =
        dkim.into_iter()
            .chain(too_wide.iter().map(|header| {
                DkimOutput::perm_err(too_wide_error()).with_signature(&header.header)
            }))
            .collect();

    let dmarc = within(
        deadline,
        resolver.verify_dmarc(DmarcParameters::new(
            &message,
            &dkim,
            spf_mail_from.domain(),
            &spf_mail_from,
        )),
    )
    .await;
    let dmarc = or_timeout(dmarc, &mut timed_out, || {
        let from_domain = message
            .from
            .first()
            .and_then(|from| from.rsplit_once('@'))
            .map_or("", |(_, domain)| domain);
        DmarcOutput::default()
            .with_domain(from_domain)
            .with_spf_result(DmarcResult::TempError(timeout_error()))
            .with_dkim_result(DmarcResult::TempError(timeout_error()))
    });

    let header_from = message.from.first().map_or("", String::as_str);
    let authentication_results = AuthenticationResults::new(host)
        .with_spf_mailfrom_result(&spf_mail_from, ip, mail_from, helo)
        .with_spf_ehlo_result(&spf_helo, ip, helo)
        .with_dkim_results(&dkim, header_from)
        .with_arc_result(&arc, ip)
        .with_dmarc_result(&dmarc)
        .to_string();
    let fields = fields(
        (&spf_mail_from, &spf_helo),
        &dkim,
        &dmarc,
        &arc,
        &authentication_results,
    );
    AuthReport { fields, timed_out }
}

/// RFC 6376 §6.3: a body hash that does not match is a PERMFAIL, `fail` in
/// RFC 8601's words (mail-auth reports it as `neutral`): the message was
/// changed after it was signed.
fn body_hash_mismatch_is_fail<'x>(
    outputs: Vec<DkimOutput<'x>>,
    message: &'x AuthenticatedMessage<'x>,
) -> Vec<DkimOutput<'x>> {
    outputs
        .into_iter()
        .map(|output| {
            let mismatch = matches!(
                output.result(),
                DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch))
            );
            let signed = output.signature().and_then(|signature| {
                message
                    .dkim_headers
                    .iter()
                    .find(|header| std::ptr::eq(&header.header, signature))
            });
            match (mismatch, signed) {
                (true, Some(header)) => {
                    DkimOutput::fail(Error::Dkim(DkimError::FailedBodyHashMatch))
                        .with_signature(&header.header)
                }
                _ => output,
            }
        })
        .collect()
}
