//! mail-auth's outputs as the payload's `auth` fields, in RFC 8601's words.

use mail_auth::dmarc::Policy;
use mail_auth::{ArcOutput, DkimOutput, DmarcOutput, SpfOutput};

use crate::mail::{
    ArcFields, AuthFields, DkimSignature, DmarcFields, DmarcPolicy, DmarcResult, SignatureResult,
    SpfCheck, SpfFields, SpfResult,
};

pub(super) fn fields(
    (spf_mail_from, spf_helo): (&SpfOutput, &SpfOutput),
    dkim: &[DkimOutput<'_>],
    dmarc: &DmarcOutput,
    arc: &ArcOutput<'_>,
    authentication_results: &str,
) -> AuthFields {
    AuthFields {
        spf: SpfFields {
            mail_from: spf_check(spf_mail_from),
            helo: spf_check(spf_helo),
        },
        dkim: dkim
            .iter()
            .filter_map(|output| {
                let signature = output.signature()?;
                Some(DkimSignature {
                    domain: signature.d.clone(),
                    selector: signature.s.clone(),
                    result: signature_result(output.result()),
                })
            })
            .collect(),
        dmarc: DmarcFields {
            result: dmarc_result(&dmarc.result()),
            policy: dmarc.dmarc_record().map(|_| match dmarc.policy() {
                Policy::Reject => DmarcPolicy::Reject,
                Policy::Quarantine => DmarcPolicy::Quarantine,
                Policy::None | Policy::Unspecified => DmarcPolicy::None,
            }),
            from_domain: Some(dmarc.domain().to_owned()).filter(|domain| !domain.is_empty()),
            spf_aligned: *dmarc.spf_result() == mail_auth::DmarcResult::Pass,
            dkim_aligned: *dmarc.dkim_result() == mail_auth::DmarcResult::Pass,
        },
        arc: ArcFields {
            result: signature_result(arc.result()),
        },
        authentication_results: one_line(authentication_results),
    }
}

fn spf_check(output: &SpfOutput) -> SpfCheck {
    SpfCheck {
        result: match output.result() {
            mail_auth::SpfResult::Pass => SpfResult::Pass,
            mail_auth::SpfResult::Fail => SpfResult::Fail,
            mail_auth::SpfResult::SoftFail => SpfResult::Softfail,
            mail_auth::SpfResult::Neutral => SpfResult::Neutral,
            mail_auth::SpfResult::TempError => SpfResult::Temperror,
            mail_auth::SpfResult::PermError => SpfResult::Permerror,
            mail_auth::SpfResult::None => SpfResult::None,
        },
        domain: output.domain().to_owned(),
    }
}

/// A DKIM signature's or an ARC chain's result.
fn signature_result(result: &mail_auth::DkimResult) -> SignatureResult {
    match result {
        mail_auth::DkimResult::Pass => SignatureResult::Pass,
        mail_auth::DkimResult::Fail(_) => SignatureResult::Fail,
        mail_auth::DkimResult::Neutral(_) => SignatureResult::Neutral,
        mail_auth::DkimResult::TempError(_) => SignatureResult::Temperror,
        mail_auth::DkimResult::PermError(_) => SignatureResult::Permerror,
        mail_auth::DkimResult::None => SignatureResult::None,
    }
}

fn dmarc_result(result: &mail_auth::DmarcResult) -> DmarcResult {
    match result {
        mail_auth::DmarcResult::Pass => DmarcResult::Pass,
        mail_auth::DmarcResult::Fail(_) => DmarcResult::Fail,
        mail_auth::DmarcResult::TempError(_) => DmarcResult::Temperror,
        mail_auth::DmarcResult::PermError(_) => DmarcResult::Permerror,
        mail_auth::DmarcResult::None => DmarcResult::None,
    }
}

/// The header value unfolded: every line break and tab (and any other
/// control character a sender's name could bring) becomes one space.
fn one_line(value: &str) -> String {
    let mut line = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() {
            if !line.ends_with(' ') {
                line.push(' ');
            }
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_value_on_one_line() {
        assert_eq!(
            one_line("mx.example;\r\n\tspf=pass (ok) smtp.mailfrom=a@b;\r\n\tdmarc=none"),
            "mx.example; spf=pass (ok) smtp.mailfrom=a@b; dmarc=none"
        );
        assert_eq!(one_line("a\u{0}\u{7f}b"), "a b");
    }
}
