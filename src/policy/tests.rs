//! The policy's decisions on the facts of a message.

use super::*;

fn facts(recipients: &[String], attachments: Vec<AttachmentFacts>) -> MessageFacts {
    MessageFacts {
        sender: "alice@partner.example".into(),
        recipients: recipients.to_vec(),
        client_ip: "192.0.2.10".parse().unwrap(),
        helo: "mx.partner.example".into(),
        tls: true,
        authenticated_user: None,
        dmarc_result: Some("pass".into()),
        authenticated_from: Some("partner.example".into()),
        size: 2_000,
        attachments,
    }
}

fn exe() -> AttachmentFacts {
    AttachmentFacts {
        filename: Some("setup.EXE".into()),
        content_type: "application/octet-stream".into(),
        size: 4_096,
    }
}

const BASE: &str = "permit(principal, action, resource);\n";

#[test]
fn permit_all_allows() {
    let policy = SenderPolicy::from_text(BASE).unwrap();
    let recipients = ["ops@example.com".to_owned()];
    assert_eq!(
        policy.decide(&facts(&recipients, vec![exe()])),
        Verdict::Allow
    );
}

#[test]
fn no_permit_refuses() {
    let policy = SenderPolicy::from_text("").unwrap();
    let recipients = ["ops@example.com".to_owned()];
    assert_eq!(
        policy.decide(&facts(&recipients, vec![])),
        Verdict::Deny {
            action: "SendMail",
            subject: "ops@example.com".into(),
            rules: "no permit".into()
        }
    );
}

#[test]
fn forbids_by_sender_ip_dmarc_recipient_and_attachment() {
    let policy = SenderPolicy::from_text(&format!(
        "{BASE}\
         @id(\"no-exe\")\n\
         forbid(principal, action == Action::\"Attach\", resource)\n\
           when {{ context.filename like \"*.exe\" || context.filename like \"*.EXE\" }};\n\
         @id(\"internal-only\")\n\
         forbid(principal, action == Action::\"SendMail\", resource)\n\
           when {{ context.recipient_domain == \"internal.example\" && !context.client_ip.isInRange(ip(\"10.0.0.0/8\")) }};\n\
         @id(\"dmarc-fail\")\n\
         forbid(principal, action, resource) when {{ context.dmarc_result == \"fail\" }};\n"
    ))
    .unwrap();
    let outside = ["ops@example.com".to_owned()];
    let internal = ["ops@internal.example".to_owned()];
    assert_eq!(
        policy.decide(&facts(&outside, vec![exe()])),
        Verdict::Deny {
            action: "Attach",
            subject: "attachment 1".into(),
            rules: "no-exe".into()
        }
    );
    assert_eq!(policy.decide(&facts(&outside, vec![])), Verdict::Allow);
    let Verdict::Deny { rules, .. } = policy.decide(&facts(&internal, vec![])) else {
        panic!("internal mail from outside 10/8 is refused");
    };
    assert_eq!(rules, "internal-only");
    let mut from_inside = facts(&internal, vec![]);
    from_inside.client_ip = "10.1.2.3".parse().unwrap();
    assert_eq!(policy.decide(&from_inside), Verdict::Allow);
    let mut failed = facts(&outside, vec![]);
    failed.dmarc_result = Some("fail".into());
    assert!(matches!(policy.decide(&failed), Verdict::Deny { rules, .. } if rules == "dmarc-fail"));
}

#[test]
fn errors_name_the_line_and_unknown_attributes_are_errors() {
    let error = SenderPolicy::from_text(&format!("{BASE}\nforbid(principal, action, resource\n"))
        .unwrap_err();
    assert!(
        error.starts_with("line 2:") || error.starts_with("line 3:"),
        "{error}"
    );
    let error = SenderPolicy::from_text(&format!(
        "{BASE}forbid(principal, action, resource) when {{ context.spam_score > 5 }};\n"
    ))
    .unwrap_err();
    assert!(error.starts_with("line 2:"), "{error}");
    assert!(!error.contains('\n'), "{error}");
}

/// A figure, not an assertion: what a message of 1,000 attachments costs
/// (`cargo test --release --lib policy::tests::cost -- --ignored --nocapture`).
#[test]
#[ignore = "prints a figure"]
fn cost_of_a_thousand_attachments() {
    let policy = SenderPolicy::from_text(&format!(
        "{BASE}forbid(principal, action == Action::\"Attach\", resource) when {{ context.filename like \"*.exe\" }};\n"
    ))
    .unwrap();
    let recipients = ["ops@example.com".to_owned()];
    let attachments = vec![
        AttachmentFacts {
            filename: Some("report.pdf".into()),
            content_type: "application/pdf".into(),
            size: 1,
        };
        1000
    ];
    let facts = facts(&recipients, attachments);
    let start = std::time::Instant::now();
    assert_eq!(policy.decide(&facts), Verdict::Allow);
    println!("1,000 attachments: {:?}", start.elapsed());
}
