//! Object keys and their plain URLs: pure functions, unit-tested without a
//! server.
//!
//! A key is `{prefix}{YYYY}/{MM}/{DD}/{32 hex}/{name}`: the UTC date of the
//! upload groups objects for lifecycle rules, 128 random bits make the key
//! unique and unguessable, and the last segment keeps a safe form of the
//! attachment's own file name so a download still has it.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::mail::unix_to_rfc3339;

/// Longest name segment, in bytes (all ASCII after [`safe_name`]).
pub const MAX_NAME_BYTES: usize = 100;

/// The name segment when the attachment has no usable name.
pub const DEFAULT_NAME: &str = "attachment";

/// Random bytes in a key: 128 bits.
pub const RANDOM_BYTES: usize = 16;

/// The longest extension kept when a name is cut to [`MAX_NAME_BYTES`].
const MAX_KEPT_EXTENSION: usize = 16;

/// Left as they are in a URL path: what S3's own SigV4 encoding leaves
/// (RFC 3986 unreserved characters) plus the segment separator, as
/// object_store encodes the paths of its requests.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The last key segment for an attachment called `name`: `[A-Za-z0-9._-]`
/// kept, every other character (including `/`, `\` and non-ASCII) one `_`,
/// at most [`MAX_NAME_BYTES`] (a short extension survives the cut), and
/// [`DEFAULT_NAME`] for no name, an empty one, `.` or `..` — so the segment
/// can never climb out of its folder.
pub fn safe_name(name: Option<&str>) -> String {
    let mapped: String = name
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cut = if mapped.len() <= MAX_NAME_BYTES {
        mapped
    } else {
        // ASCII only from here on, so every byte index is a char boundary.
        let extension = mapped
            .rfind('.')
            .map(|dot| &mapped[dot..])
            .filter(|ext| (2..=MAX_KEPT_EXTENSION).contains(&ext.len()))
            .unwrap_or_default();
        format!("{}{extension}", &mapped[..MAX_NAME_BYTES - extension.len()])
    };
    if matches!(cut.as_str(), "" | "." | "..") {
        DEFAULT_NAME.to_owned()
    } else {
        cut
    }
}

/// `YYYY/MM/DD`, the UTC date of `unix_seconds` (years 0–9999).
pub fn date_path(unix_seconds: i64) -> Option<String> {
    let stamp = unix_to_rfc3339(unix_seconds)?;
    Some(stamp.get(..10)?.replace('-', "/"))
}

/// `{prefix}{date}/{random as lowercase hex}/{safe name}`.
pub fn object_key(
    prefix: &str,
    date: &str,
    random: &[u8; RANDOM_BYTES],
    name: Option<&str>,
) -> String {
    format!(
        "{prefix}{date}/{}/{}",
        data_encoding::HEXLOWER.encode(random),
        safe_name(name)
    )
}

/// The bucket's URL, which object URLs extend: path-style under an explicit
/// endpoint (what S3-compatible servers expect), virtual-hosted on AWS.
pub fn bucket_url(bucket: &str, region: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(endpoint) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
        None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
    }
}

/// The plain (unsigned) URL of `key` in the bucket at `bucket_url`.
pub fn object_url(bucket_url: &str, key: &str) -> String {
    format!("{bucket_url}/{}", utf8_percent_encode(key, PATH))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANDOM: [u8; RANDOM_BYTES] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];

    #[test]
    fn a_plain_name_is_kept() {
        assert_eq!(safe_name(Some("Report-2026_v2.pdf")), "Report-2026_v2.pdf");
    }

    #[test]
    fn no_name_or_an_empty_one_is_attachment() {
        assert_eq!(safe_name(None), "attachment");
        assert_eq!(safe_name(Some("")), "attachment");
        assert_eq!(safe_name(Some("   ")), "attachment");
    }

    #[test]
    fn dot_and_dot_dot_never_become_a_segment() {
        assert_eq!(safe_name(Some(".")), "attachment");
        assert_eq!(safe_name(Some("..")), "attachment");
        assert_eq!(safe_name(Some(" .. ")), "attachment");
        assert_eq!(safe_name(Some("...")), "...");
    }

    #[test]
    fn separators_cannot_climb_out() {
        assert_eq!(safe_name(Some("../../etc/passwd")), ".._.._etc_passwd");
        assert_eq!(safe_name(Some("..\\..\\boot.ini")), ".._.._boot.ini");
        assert_eq!(safe_name(Some("/")), "_");
    }

    #[test]
    fn every_other_character_is_one_underscore() {
        assert_eq!(safe_name(Some("Grüße 日本.txt")), "Gr__e___.txt");
        assert_eq!(safe_name(Some("a b\tc\r\n%00?.doc")), "a_b_c___00_.doc");
        assert_eq!(safe_name(Some("😀")), "_");
    }

    #[test]
    fn a_long_name_is_cut_keeping_a_short_extension() {
        let long = format!("{}.pdf", "x".repeat(300));
        let cut = safe_name(Some(&long));
        assert_eq!(cut.len(), MAX_NAME_BYTES);
        assert!(cut.ends_with("xx.pdf"), "{cut}");

        let no_extension = "y".repeat(300);
        assert_eq!(safe_name(Some(&no_extension)), "y".repeat(MAX_NAME_BYTES));

        // An "extension" longer than 16 bytes is just part of the name.
        let long_tail = format!("a.{}", "z".repeat(300));
        let cut = safe_name(Some(&long_tail));
        assert_eq!(cut, format!("a.{}", "z".repeat(MAX_NAME_BYTES - 2)));

        // Multi-byte characters count once each, as their `_`.
        let unicode = "é".repeat(150);
        assert_eq!(safe_name(Some(&unicode)), "_".repeat(MAX_NAME_BYTES));
    }

    #[test]
    fn the_date_is_utc_with_slashes() {
        assert_eq!(date_path(0).as_deref(), Some("1970/01/01"));
        // 2026-12-06T23:59:59Z, then one second later.
        assert_eq!(date_path(1_796_601_599).as_deref(), Some("2026/12/06"));
        assert_eq!(date_path(1_796_601_600).as_deref(), Some("2026/12/07"));
        assert_eq!(date_path(951_782_400).as_deref(), Some("2000/02/29"));
        assert_eq!(date_path(i64::MAX), None);
    }

    #[test]
    fn a_key_is_prefix_date_hex_and_name() {
        let key = object_key("mail/", "2026/12/06", &RANDOM, Some("a b.txt"));
        assert_eq!(
            key,
            "mail/2026/12/06/00112233445566778899aabbccddeeff/a_b.txt"
        );
        let key = object_key("", "2026/12/06", &RANDOM, None);
        assert_eq!(
            key,
            "2026/12/06/00112233445566778899aabbccddeeff/attachment"
        );
    }

    #[test]
    fn a_key_has_exactly_its_segments() {
        let key = object_key("p/", "2026/01/02", &[0xab; RANDOM_BYTES], Some("../../x"));
        let segments: Vec<&str> = key.split('/').collect();
        assert_eq!(segments.len(), 6, "{key}");
        assert_eq!(segments[..4], ["p", "2026", "01", "02"]);
        assert_eq!(segments[4].len(), 32);
        assert!(
            segments[4]
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert_eq!(segments[5], ".._.._x");
    }

    #[test]
    fn urls_are_path_style_under_an_endpoint_and_virtual_hosted_on_aws() {
        let key = "2026/12/06/00112233445566778899aabbccddeeff/a.txt";
        let aws = bucket_url("mail-bucket", "eu-west-1", None);
        assert_eq!(
            object_url(&aws, key),
            "https://mail-bucket.s3.eu-west-1.amazonaws.com/2026/12/06/00112233445566778899aabbccddeeff/a.txt"
        );
        let minio = bucket_url("b", "us-east-1", Some("http://127.0.0.1:9000/"));
        assert_eq!(
            object_url(&minio, key),
            "http://127.0.0.1:9000/b/2026/12/06/00112233445566778899aabbccddeeff/a.txt"
        );
    }

    #[test]
    fn key_characters_outside_the_unreserved_set_are_percent_encoded() {
        let base = bucket_url("b", "us-east-1", Some("https://s3.example"));
        assert_eq!(
            object_url(&base, "in box+ü/2026/x~y"),
            "https://s3.example/b/in%20box%2B%C3%BC/2026/x~y"
        );
    }
}
