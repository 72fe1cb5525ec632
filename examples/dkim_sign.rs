//! Signs one message with DKIM for measurements (`scripts/measure-auth`),
//! with mail-auth's own signer, the library MailLaser verifies with: prints
//! the signed message on stdout and the DNS TXT record of the key
//! (`v=DKIM1; …`) on stderr.
//!
//! ```sh
//! cargo run --release --example dkim_sign -- ed25519 DOMAIN SELECTOR < message > signed 2> record
//! openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -outform DER -out key.der
//! cargo run --release --example dkim_sign -- rsa=key.der DOMAIN SELECTOR < message > signed 2> record
//! ```
//!
//! `ed25519` makes a fresh key; `rsa=FILE` reads an RSA key, PKCS#8 or
//! PKCS#1 DER (rsa-sha256). The message is read as bytes and must end in CRLF; the
//! signature covers From, To, Subject, Date and Message-ID, relaxed/relaxed.

use std::io::{Read, Write};

use anyhow::{Context, bail};
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};

const SIGNED_HEADERS: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key, domain, selector] = args.as_slice() else {
        bail!("usage: dkim_sign ed25519|rsa=DER_FILE DOMAIN SELECTOR < message");
    };
    let mut message = Vec::new();
    std::io::stdin().read_to_end(&mut message)?;
    if !message.ends_with(b"\r\n") {
        bail!("the message must end in CRLF");
    }

    let (header, record) = if key == "ed25519" {
        let key = Ed25519Key::from_pkcs8_der(&Ed25519Key::generate_pkcs8()?)?;
        let record = format!(
            "v=DKIM1; k=ed25519; p={}",
            data_encoding::BASE64.encode(&key.public_key())
        );
        (sign(key, domain, selector, &message)?, record)
    } else if let Some(path) = key.strip_prefix("rsa=") {
        let der = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        // from_key_der, which replaces these, takes rustls-pki-types' type,
        // not a dependency here.
        #[allow(deprecated)]
        let key = RsaKey::<Sha256>::from_pkcs8_der(&der).or_else(|_| RsaKey::from_der(&der))?;
        // The public key as PKCS#1 RSAPublicKey, which verifiers accept in `p=`.
        let record = format!(
            "v=DKIM1; k=rsa; p={}",
            data_encoding::BASE64.encode(&key.public_key())
        );
        (sign(key, domain, selector, &message)?, record)
    } else {
        bail!("unknown key {key:?}: ed25519 or rsa=FILE");
    };

    let mut out = std::io::stdout().lock();
    out.write_all(header.as_bytes())?;
    out.write_all(&message)?;
    eprintln!("{record}");
    Ok(())
}

/// The `DKIM-Signature` header field, CRLF-terminated.
fn sign<K: SigningKey>(
    key: K,
    domain: &str,
    selector: &str,
    message: &[u8],
) -> anyhow::Result<String> {
    let signature = DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)?;
    Ok(signature.to_header())
}
