//! The sender policy: which accepted messages are delivered, decided by
//! Cedar policies (`MAIL_LASER_CEDAR_POLICIES`, `docs/policy.md`).
//!
//! Cedar rather than a rules file of our own: it is the language
//! MailLaser 3's users already wrote their policies in, it is specified and
//! maintained (by AWS, with a formal model), it matches IP ranges
//! (`ip("10.0.0.0/8")`) and globs (`like "*.exe"`) out of the box, and its
//! validator checks every policy against the schema of what MailLaser
//! passes ([`SCHEMA`]) at start, so a misspelt attribute stops the start
//! instead of silently never matching. A rules file of ours would have
//! been one more language to learn, parse and keep correct.
//!
//! Without a policy file everything that passed recipient validation is
//! allowed. With one, Cedar's rule holds: a request is allowed when some
//! `permit` matches and no `forbid` does, so a policy file that only
//! forbids starts with `permit(principal, action, resource);`.

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityId, EntityTypeName, EntityUid, PolicySet,
    Request, RestrictedExpression, Schema, ValidationMode, Validator,
};

/// The schema every policy is validated against: the entities, actions and
/// context attributes MailLaser passes.
pub const SCHEMA: &str = include_str!("schema.cedarschema");

/// Why a policy file cannot be used; one line, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot be read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// What the policy sees of one message. Owned, so that a decision on a
/// message of many attachments can run off the async workers.
#[derive(Debug, Clone)]
pub struct MessageFacts {
    /// The envelope sender, `""` for the null path.
    pub sender: String,
    pub recipients: Vec<String>,
    pub client_ip: IpAddr,
    pub helo: String,
    pub tls: bool,
    pub authenticated_user: Option<String>,
    pub dmarc_result: Option<String>,
    pub authenticated_from: Option<String>,
    /// Octets of the message.
    pub size: usize,
    pub attachments: Vec<AttachmentFacts>,
}

impl MessageFacts {
    /// Cedar requests a decision takes: one per recipient and attachment
    /// (about 17 µs each in a release build).
    pub fn requests(&self) -> usize {
        self.recipients.len() + self.attachments.len()
    }
}

/// What the policy sees of one attachment.
#[derive(Debug, Clone)]
pub struct AttachmentFacts {
    pub filename: Option<String>,
    pub content_type: String,
    pub size: usize,
}

/// The policy's answer for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refused: by the `@id` (else the position) of the policies that
    /// decided, for the log; `"no permit"` when none matched.
    Deny {
        action: &'static str,
        subject: String,
        rules: String,
    },
}

/// Loaded and validated Cedar policies.
#[derive(Debug)]
pub struct SenderPolicy {
    policies: PolicySet,
    schema: Schema,
    authorizer: Authorizer,
    kinds: Kinds,
}

/// The entity types of [`SCHEMA`], parsed once.
#[derive(Debug)]
struct Kinds {
    sender: EntityTypeName,
    recipient: EntityTypeName,
    attachment: EntityTypeName,
    action: EntityTypeName,
}

impl Kinds {
    fn new() -> Result<Self, String> {
        let kind = |name: &str| EntityTypeName::from_str(name).map_err(|error| error.to_string());
        Ok(Self {
            sender: kind("Sender")?,
            recipient: kind("Recipient")?,
            attachment: kind("Attachment")?,
            action: kind("Action")?,
        })
    }
}

impl SenderPolicy {
    /// Reads and validates the policy file.
    ///
    /// # Errors
    /// The file cannot be read, does not parse, or does not validate
    /// against [`SCHEMA`] (strictly: an attribute MailLaser does not pass
    /// is an error, not a rule that never matches).
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: name.clone(),
            source,
        })?;
        Self::from_text(&text).map_err(|reason| PolicyError::Invalid { path: name, reason })
    }

    /// Parses and validates policies; the error is one line saying where.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let schema = schema().map_err(|reason| format!("the built-in schema: {reason}"))?;
        let kinds = Kinds::new().map_err(|reason| format!("the built-in schema: {reason}"))?;
        let policies = PolicySet::from_str(text)
            .map_err(|error| with_line(text, &error, error.to_string()))?;
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if let Some(error) = validation.validation_errors().next() {
            return Err(with_line(text, error, error.to_string()));
        }
        Ok(Self {
            policies,
            schema,
            authorizer: Authorizer::new(),
            kinds,
        })
    }

    /// `SendMail` for every recipient, then `Attach` for every attachment;
    /// the first refusal decides.
    pub fn decide(&self, message: &MessageFacts) -> Verdict {
        let sender = uid(&self.kinds.sender, &message.sender);
        for recipient in &message.recipients {
            let mut context = origin(message);
            context.extend([
                ("recipient", string(recipient)),
                ("recipient_domain", string(&domain_of(recipient))),
                ("size", long(message.size)),
                ("attachment_count", long(message.attachments.len())),
            ]);
            let resource = uid(&self.kinds.recipient, recipient);
            if let Some(rules) = self.refusal(&sender, "SendMail", resource, context) {
                return Verdict::Deny {
                    action: "SendMail",
                    subject: recipient.clone(),
                    rules,
                };
            }
        }
        let recipients =
            RestrictedExpression::new_set(message.recipients.iter().map(|r| string(r)));
        for (index, attachment) in message.attachments.iter().enumerate() {
            let mut context = origin(message);
            context.extend([
                ("recipients", recipients.clone()),
                (
                    "filename",
                    string(attachment.filename.as_deref().unwrap_or_default()),
                ),
                ("content_type", string(&attachment.content_type)),
                ("size", long(attachment.size)),
            ]);
            let position = (index + 1).to_string();
            let resource = uid(&self.kinds.attachment, &position);
            if let Some(rules) = self.refusal(&sender, "Attach", resource, context) {
                return Verdict::Deny {
                    action: "Attach",
                    subject: format!("attachment {position}"),
                    rules,
                };
            }
        }
        Verdict::Allow
    }

    /// `None` when allowed; else the deciding rules.
    fn refusal(
        &self,
        principal: &EntityUid,
        action: &str,
        resource: EntityUid,
        context: Vec<(&'static str, RestrictedExpression)>,
    ) -> Option<String> {
        let context = Context::from_pairs(
            context
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value)),
        );
        let request = context
            .map_err(|error| error.to_string())
            .and_then(|context| {
                Request::new(
                    principal.clone(),
                    uid(&self.kinds.action, action),
                    resource,
                    context,
                    Some(&self.schema),
                )
                .map_err(|error| error.to_string())
            });
        let request = match request {
            Ok(request) => request,
            // A defect (the facts do not fit the schema): refuse, and say so.
            Err(error) => return Some(format!("invalid request: {error}")),
        };
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &Entities::empty());
        if response.decision() == Decision::Allow {
            return None;
        }
        let rules: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| {
                self.policies
                    .annotation(id, "id")
                    .map_or_else(|| id.to_string(), str::to_owned)
            })
            .collect();
        Some(if rules.is_empty() {
            "no permit".to_owned()
        } else {
            rules.join(", ")
        })
    }
}

fn schema() -> Result<Schema, String> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| schema)
        .map_err(|error| error.to_string())
}

/// The attributes both actions share.
fn origin(message: &MessageFacts) -> Vec<(&'static str, RestrictedExpression)> {
    let optional = |value: &Option<String>| string(value.as_deref().unwrap_or_default());
    vec![
        ("sender", string(&message.sender)),
        ("sender_domain", string(&domain_of(&message.sender))),
        (
            "client_ip",
            RestrictedExpression::new_ip(message.client_ip.to_string()),
        ),
        ("helo", string(&message.helo)),
        ("tls", RestrictedExpression::new_bool(message.tls)),
        ("authenticated_user", optional(&message.authenticated_user)),
        ("dmarc_result", optional(&message.dmarc_result)),
        ("authenticated_from", optional(&message.authenticated_from)),
    ]
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

fn long(value: usize) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(value).unwrap_or(i64::MAX))
}

/// The part after the last `@`, lower case; `""` when there is none.
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_ascii_lowercase())
        .unwrap_or_default()
}

fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
}

/// `line N: reason` when the error points into the text.
fn with_line(text: &str, error: &dyn miette::Diagnostic, reason: String) -> String {
    let reason = reason.lines().next().unwrap_or_default().to_owned();
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    match offset {
        Some(offset) => {
            let line = text
                .get(..offset)
                .map_or(1, |before| before.matches('\n').count() + 1);
            format!("line {line}: {reason}")
        }
        None => reason,
    }
}

#[cfg(test)]
mod tests;
