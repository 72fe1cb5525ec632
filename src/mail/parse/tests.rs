//! Parser tests: the payload fields of real and hostile messages.

use super::*;

/// Fixtures are written with `\n`; SMTP delivers `\r\n`.
fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

fn parse_str(text: &str) -> ParsedMail {
    parse(&crlf(text), &[])
}

fn prefixes(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| (*p).to_owned()).collect()
}

#[test]
fn plain_message() {
    let mail = parse_str(
        "From: Alice Example <alice@example.com>\n\
         To: ops@example.com\n\
         Subject: Server down\n\
         Message-ID: <abc@example.com>\n\
         \n\
         The server is down.\n",
    );
    assert_eq!(
        mail,
        ParsedMail {
            subject: "Server down".into(),
            body: "The server is down.\r\n".into(),
            html_body: None,
            sender_name: Some("Alice Example".into()),
            headers: vec![],
            message_id: Some("<abc@example.com>".into()),
            from: vec![Mailbox {
                name: Some("Alice Example".into()),
                address: "alice@example.com".into(),
            }],
            to: vec![Mailbox {
                name: None,
                address: "ops@example.com".into(),
            }],
            ..ParsedMail::default()
        }
    );
}

/// Issue 11, message fields: addresses (decoded, groups flattened), the
/// date in UTC, threading.
#[test]
fn addresses_date_and_threading() {
    let mail = parse_str(
        "From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\n\
         To: a@example.com, \"Doe, B\" <b@example.com>\n\
         Cc: Team: c@example.com, d@example.com;\n\
         Reply-To: replies@example.org\n\
         Date: Sun, 6 Dec 2026 22:08:04 +0100 (CET)\n\
         In-Reply-To: <parent@example.org> (the parent)\n\
         References: <root@example.org>\n <parent@example.org>\n\
         \n\
         body\n",
    );
    let mailbox = |name: Option<&str>, address: &str| Mailbox {
        name: name.map(str::to_owned),
        address: address.to_owned(),
    };
    assert_eq!(mail.from, [mailbox(Some("Jörg"), "j@example.org")]);
    assert_eq!(mail.sender_name.as_deref(), Some("Jörg"));
    assert_eq!(
        mail.to,
        [
            mailbox(None, "a@example.com"),
            mailbox(Some("Doe, B"), "b@example.com")
        ]
    );
    assert_eq!(
        mail.cc,
        [
            mailbox(None, "c@example.com"),
            mailbox(None, "d@example.com")
        ]
    );
    assert_eq!(mail.reply_to, [mailbox(None, "replies@example.org")]);
    assert_eq!(mail.date.as_deref(), Some("2026-12-06T21:08:04Z"));
    assert_eq!(mail.in_reply_to.as_deref(), Some("<parent@example.org>"));
    assert_eq!(
        mail.references,
        ["<root@example.org>", "<parent@example.org>"]
    );

    let bare = parse_str("Date: not a date\nIn-Reply-To: none\n\nx");
    assert_eq!((bare.date, bare.in_reply_to), (None, None));
    assert!(bare.from.is_empty() && bare.references.is_empty());
}

#[test]
fn plain_message_with_bare_lf() {
    let mail = parse(b"Subject: lf\n\nline one\nline two", &[]);
    assert_eq!(mail.subject, "lf");
    assert_eq!(mail.body, "line one\nline two");
}

#[test]
fn multipart_alternative_takes_text_and_html() {
    let mail = parse_str(
        "Subject: alt\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/alternative; boundary=\"XYZ\"\n\
         \n\
         preamble is ignored\n\
         --XYZ\n\
         Content-Type: text/plain; charset=utf-8\n\
         \n\
         Plain version\n\
         --XYZ\n\
         Content-Type: text/html; charset=utf-8\n\
         \n\
         <p>HTML version</p>\n\
         --XYZ--\n\
         epilogue is ignored\n",
    );
    assert_eq!(mail.subject, "alt");
    assert_eq!(mail.body, "Plain version");
    assert_eq!(mail.html_body.as_deref(), Some("<p>HTML version</p>"));
}

#[test]
fn html_only_is_rendered_to_text() {
    let mail = parse_str(
        "Subject: html\n\
         Content-Type: text/html; charset=utf-8\n\
         \n\
         <html><head><style>p { color: red }</style></head><body>\
         <h1>Welcome</h1><p>Hello <b>there</b>, friend &amp; colleague.</p>\
         <p><a href=\"https://example.com/confirm\">Confirm</a></p></body></html>\n",
    );
    let html = mail.html_body.as_deref().unwrap();
    assert!(html.starts_with("<html><head>"));
    for words in ["Welcome", "Hello there, friend & colleague.", "Confirm"] {
        assert!(
            mail.body.contains(words),
            "{words:?} missing in {:?}",
            mail.body
        );
    }
    assert!(
        mail.body.contains("https://example.com/confirm"),
        "{:?}",
        mail.body
    );
    assert!(
        !mail.body.contains('<') && !mail.body.contains('>'),
        "{:?}",
        mail.body
    );
    assert!(
        !mail.body.contains("color"),
        "style leaked: {:?}",
        mail.body
    );
    assert_eq!(mail.body, mail.body.trim());
}

#[test]
fn only_html_bodies_are_left_for_rendering() {
    let plain = crlf("Subject: p\n\nhello\n");
    let html = crlf("Content-Type: text/html\n\n<p>hi</p>\n");
    let blank_text = crlf(
        "Content-Type: multipart/alternative; boundary=b\n\n\
         --b\nContent-Type: text/plain\n\n \n\
         --b\nContent-Type: text/html\n\n<p>hi</p>\n--b--\n",
    );
    for (raw, renders) in [(&plain, false), (&html, true), (&blank_text, true)] {
        let budget = ParseBudget::for_size(raw.len());
        let unrendered = parse_unrendered(raw, &[], false, &budget);
        assert_eq!(unrendered.needs_rendering(), renders);
        assert_eq!(unrendered.render(&budget), parse(raw, &[]));
    }
    assert_eq!(parse(&html, &[]).body, "hi");
}

#[test]
fn blank_text_part_falls_back_to_rendered_html() {
    let mail = parse_str(
        "Content-Type: multipart/alternative; boundary=b\n\
         \n\
         --b\n\
         Content-Type: text/plain\n\
         \n\
         \x20\n\
         --b\n\
         Content-Type: text/html\n\
         \n\
         <div>Only here</div>\n\
         --b--\n",
    );
    assert_eq!(mail.body, "Only here");
    assert_eq!(mail.html_body.as_deref(), Some("<div>Only here</div>"));
}

#[test]
fn nested_mixed_with_alternative_and_binary_attachment() {
    let mail = parse_str(
        "Subject: report\n\
         Content-Type: multipart/mixed; boundary=outer\n\
         \n\
         --outer\n\
         Content-Type: multipart/alternative; boundary=inner\n\
         \n\
         --inner\n\
         Content-Type: text/plain; charset=us-ascii\n\
         Content-Transfer-Encoding: 7bit\n\
         \n\
         See attached.\n\
         --inner\n\
         Content-Type: text/html\n\
         \n\
         <p>See <i>attached</i>.</p>\n\
         --inner--\n\
         \n\
         --outer\n\
         Content-Type: application/octet-stream; name=\"secret.bin\"\n\
         Content-Transfer-Encoding: base64\n\
         Content-Disposition: attachment; filename=\"secret.bin\"\n\
         \n\
         U0VDUkVUQVRUQUNITUVOVEJZVEVTAAEC\n\
         --outer--\n",
    );
    assert_eq!(mail.body, "See attached.");
    assert_eq!(
        mail.html_body.as_deref(),
        Some("<p>See <i>attached</i>.</p>")
    );
    for leaked in ["SECRET", "U0VDUkVU", "secret.bin"] {
        assert!(!mail.body.contains(leaked));
        assert!(!mail.html_body.as_deref().unwrap().contains(leaked));
    }
}

#[test]
fn text_attachment_is_not_the_body() {
    let mail = parse_str(
        "Content-Type: multipart/mixed; boundary=m\n\
         \n\
         --m\n\
         Content-Type: text/plain\n\
         Content-Disposition: attachment; filename=\"notes.txt\"\n\
         \n\
         attachment text\n\
         --m\n\
         Content-Type: text/html\n\
         \n\
         <p>the real message</p>\n\
         --m--\n",
    );
    assert_eq!(mail.body, "the real message");
    assert_eq!(mail.html_body.as_deref(), Some("<p>the real message</p>"));
}

#[test]
fn named_text_part_inside_multipart_is_an_attachment() {
    let mail = parse_str(
        "Content-Type: multipart/mixed; boundary=m\n\
         \n\
         --m\n\
         Content-Type: text/plain; name=\"log.txt\"\n\
         \n\
         log lines\n\
         --m\n\
         Content-Type: text/plain\n\
         Content-Disposition: inline\n\
         \n\
         body text\n\
         --m--\n",
    );
    assert_eq!(mail.body, "body text");
}

#[test]
fn rfc2047_subjects() {
    let cases = [
        ("=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=", "Grüße aus Köln"),
        (
            "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=",
            "Grüße aus Köln",
        ),
        ("=?ISO-8859-1?Q?Caf=E9?=", "Café"),
        ("=?iso-8859-1?B?Q2Fm6Q==?=", "Café"),
        (
            "Re: =?UTF-8?B?0J/RgNC40LLQtdGCINC80LjRgA==?= !",
            "Re: Привет мир !",
        ),
        ("  padded  ", "padded"),
    ];
    for (encoded, expected) in cases {
        let mail = parse_str(&format!("Subject: {encoded}\n\nx"));
        assert_eq!(mail.subject, expected, "for {encoded}");
    }
}

#[test]
fn folded_subject_is_unfolded() {
    let mail = parse_str("Subject: a long\n subject line\n\nx");
    assert_eq!(mail.subject, "a long subject line");
}

#[test]
fn quoted_printable_body_with_soft_breaks() {
    let mail = parse_str(
        "Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: quoted-printable\n\
         \n\
         Price: 5 =E2=82=AC, and this line is so=\n\
         ft-broken.\n",
    );
    assert_eq!(mail.body, "Price: 5 €, and this line is soft-broken.\r\n");
}

#[test]
fn base64_body() {
    let mail = parse_str(
        "Content-Type: text/plain; charset=UTF-8\n\
         Content-Transfer-Encoding: BASE64\n\
         \n\
         SGVsbG8sIGJhc2U2\n\
         NCB3b3JsZCEK\n",
    );
    assert_eq!(mail.body, "Hello, base64 world!\n");
}

#[test]
fn iso_8859_1_body() {
    let mut raw =
        crlf("Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n\n");
    raw.extend_from_slice(b"Caf\xe9 cr\xe8me");
    assert_eq!(parse(&raw, &[]).body, "Café crème");
}

#[test]
fn iso_8859_1_quoted_printable_body() {
    let mail = parse_str(
        "Content-Type: text/plain; charset=iso-8859-1\n\
         Content-Transfer-Encoding: quoted-printable\n\
         \n\
         Caf=E9",
    );
    assert_eq!(mail.body, "Café");
}

#[test]
fn undeclared_charset_utf8_body_is_utf8() {
    let mail = parse("Subject: x\r\n\r\nGrüße €".as_bytes(), &[]);
    assert_eq!(mail.body, "Grüße €");
}

#[test]
fn invalid_base64_falls_back_to_raw_text() {
    let mail = parse_str(
        "Content-Transfer-Encoding: base64\n\
         \n\
         this is *not* base64!",
    );
    assert_eq!(mail.body, "this is *not* base64!");
}

#[test]
fn invalid_utf8_in_utf8_body_is_replaced_not_dropped() {
    let mut raw = crlf("Content-Type: text/plain; charset=utf-8\n\n");
    raw.extend_from_slice(b"ok \xff\xfe end");
    assert_eq!(parse(&raw, &[]).body, "ok \u{fffd}\u{fffd} end");
}

#[test]
fn missing_subject_is_empty() {
    let mail = parse_str("From: a@b.example\n\nhello");
    assert_eq!(mail.subject, "");
    assert_eq!(mail.body, "hello");
}

#[test]
fn display_names() {
    let cases: [(&str, Option<&str>); 8] = [
        ("\"Doe, John\" <j@x.example>", Some("Doe, John")),
        ("=?UTF-8?B?SsO2aG4gRMWT?= <a@b.example>", Some("Jöhn Dœ")),
        (
            "=?ISO-8859-1?Q?Andr=E9?= Pirard <pirard@vm1.ulg.ac.be>",
            Some("André Pirard"),
        ),
        ("Plain Name <p@n.example>", Some("Plain Name")),
        ("j@x.example", None),
        ("<j@x.example>", None),
        ("\"\" <j@x.example>", None),
        ("Broken Name <unterminated@x", Some("Broken Name")),
    ];
    for (from, expected) in cases {
        let mail = parse_str(&format!("From: {from}\n\nx"));
        assert_eq!(mail.sender_name.as_deref(), expected, "for {from}");
    }
    assert_eq!(parse_str("Subject: none\n\nx").sender_name, None);
}

#[test]
fn header_passthrough_on() {
    let raw = crlf(
        "X-Custom-Ticket: 42\n\
         Subject: s\n\
         x-custom-lower:   spaced value  \n\
         X-App-Name: =?UTF-8?Q?caf=C3=A9?=\n\
         X-Other: not forwarded\n\
         X-APPLICATION: folded\n  value\n\
         \n\
         body",
    );
    let mail = parse(&raw, &prefixes(&["X-Custom-", "x-app"]));
    assert_eq!(
        mail.headers,
        vec![
            ("X-Custom-Ticket".to_owned(), "42".to_owned()),
            ("x-custom-lower".to_owned(), "spaced value".to_owned()),
            ("X-App-Name".to_owned(), "café".to_owned()),
            ("X-APPLICATION".to_owned(), "folded value".to_owned()),
        ]
    );
    assert_eq!(mail.subject, "s");
}

#[test]
fn header_passthrough_off() {
    let raw = crlf("X-Custom-Ticket: 42\nX-App: y\n\nbody");
    assert!(parse(&raw, &[]).headers.is_empty());
    assert!(
        parse(&raw, &prefixes(&[""])).headers.is_empty(),
        "empty prefix forwards nothing"
    );
}

#[test]
fn duplicate_headers_are_all_kept_in_order() {
    let raw = crlf("X-App-Id: 1\nSubject: first\nx-app-id: 2\nSubject: second\n\nb");
    let mail = parse(&raw, &prefixes(&["X-App-"]));
    assert_eq!(mail.subject, "first");
    assert_eq!(
        mail.headers,
        vec![
            ("X-App-Id".to_owned(), "1".to_owned()),
            ("x-app-id".to_owned(), "2".to_owned())
        ]
    );
}

#[test]
fn eight_bit_utf8_headers() {
    let raw = "Subject: Grüße, ça va? 日本語\r\nFrom: Jöhn Dœ <j@x.example>\r\nX-App-Note: naïve\r\n\r\nbody";
    let mail = parse(raw.as_bytes(), &prefixes(&["x-app-"]));
    assert_eq!(mail.subject, "Grüße, ça va? 日本語");
    assert_eq!(mail.sender_name.as_deref(), Some("Jöhn Dœ"));
    assert_eq!(
        mail.headers,
        vec![("X-App-Note".to_owned(), "naïve".to_owned())]
    );
}

#[test]
fn latin1_8bit_header_is_still_decoded() {
    let mail = parse(b"Subject: Caf\xe9\r\n\r\nb", &[]);
    assert_eq!(mail.subject, "Café");
}

#[test]
fn message_id_trimmed_with_brackets() {
    let mail = parse_str("Message-ID:    <id.123@host.example>   \nMessage-ID: <second@x>\n\nb");
    assert_eq!(mail.message_id.as_deref(), Some("<id.123@host.example>"));
    assert_eq!(parse_str("Message-ID:   \n\nb").message_id, None);
    assert_eq!(parse_str("Subject: x\n\nb").message_id, None);
}

#[test]
fn headerless_input_is_all_body() {
    let mail = parse(b"just some text, no headers\r\nsecond line", &[]);
    assert_eq!(mail.subject, "");
    assert_eq!(mail.body, "just some text, no headers\r\nsecond line");
    let mail = parse(b"\r\nbody after blank line", &[]);
    assert_eq!(mail.body, "body after blank line");
}

#[test]
fn header_only_message() {
    let mail = parse(b"Subject: only headers\r\nMessage-ID: <h@x>\r\n", &[]);
    assert_eq!(mail.subject, "only headers");
    assert_eq!(mail.message_id.as_deref(), Some("<h@x>"));
    assert_eq!(mail.body, "");
    assert_eq!(mail.html_body, None);
}

#[test]
fn mbox_from_line_is_skipped() {
    let mail = parse(
        b"From alice@example.com Mon Jan  1 00:00:00 2024\nSubject: mbox\n\nb",
        &[],
    );
    assert_eq!(mail.subject, "mbox");
    assert_eq!(mail.body, "b");
}

#[test]
fn unparseable_header_lines_are_skipped() {
    let mail = parse(
        b" leading continuation\r\nSubject: kept\r\n\rstray\r\n\r\nbody",
        &[],
    );
    assert_eq!(mail.subject, "kept");
    assert_eq!(mail.body, "body");
}

#[test]
fn boundary_that_never_closes() {
    let mail = parse_str(
        "Subject: open\n\
         Content-Type: multipart/alternative; boundary=b\n\
         \n\
         --b\n\
         Content-Type: text/plain\n\
         \n\
         still delivered\n\
         --b\n\
         Content-Type: text/html\n\
         \n\
         <p>cut off",
    );
    assert_eq!(mail.body, "still delivered");
    assert_eq!(mail.html_body.as_deref(), Some("<p>cut off"));
}

#[test]
fn missing_boundary_parameter_is_guessed() {
    let mail = parse_str(
        "Content-Type: multipart/mixed\n\
         \n\
         --guess\n\
         Content-Type: text/plain\n\
         \n\
         found anyway\n\
         --guess--\n",
    );
    assert_eq!(mail.body, "found anyway");
}

#[test]
fn boundary_prefix_of_nested_boundary() {
    let mail = parse_str(
        "Content-Type: multipart/mixed; boundary=b1\n\
         \n\
         --b1\n\
         Content-Type: multipart/alternative; boundary=b10\n\
         \n\
         --b10\n\
         Content-Type: text/plain\n\
         \n\
         inner text\n\
         --b10--\n\
         --b1--\n",
    );
    assert_eq!(mail.body, "inner text");
}

#[test]
fn empty_part_does_not_shadow_body() {
    let mail = parse_str(
        "Content-Type: multipart/mixed; boundary=b\n\
         \n\
         --b\n\
         --b\n\
         Content-Type: text/plain\n\
         \n\
         real\n\
         --b--\n",
    );
    assert_eq!(mail.body, "real");
}

/// `levels` nested multiparts around a text part, built with distinct
/// boundaries as a real generator would.
fn nested(levels: usize, leaf: &str) -> Vec<u8> {
    let mut raw = String::from("Subject: deep\r\nMessage-ID: <deep@x>\r\n");
    for level in 0..levels {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
        ));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\n");
    raw.push_str(leaf);
    for level in (0..levels).rev() {
        raw.push_str(&format!("\r\n--b{level}--"));
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

#[test]
fn five_thousand_levels_deep_keeps_top_level_fields() {
    // Default test thread, default stack: the walk must not recurse.
    let mail = parse(&nested(5_000, "too deep"), &[]);
    assert_eq!(mail.subject, "deep");
    assert_eq!(mail.message_id.as_deref(), Some("<deep@x>"));
    assert_eq!(mail.body, "", "text beyond the depth bound is not reached");
}

#[test]
fn text_within_depth_bound_is_found() {
    let mail = parse(&nested(MAX_MULTIPART_DEPTH, "reachable"), &[]);
    assert_eq!(mail.body, "reachable");
    let mail = parse(&nested(MAX_MULTIPART_DEPTH + 1, "unreachable"), &[]);
    assert_eq!(mail.body, "");
}

#[test]
fn shallow_text_next_to_a_deep_bomb_is_found() {
    let bomb = nested(5_000, "x");
    let bomb_start = bomb.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let mut raw = crlf(
        "Subject: s\n\
         Content-Type: multipart/mixed; boundary=top\n\
         \n\
         --top\n\
         Content-Type: text/plain\n\
         \n\
         shallow text\n\
         --top\n",
    );
    // Drop the bomb's own Subject line so it starts with its headers.
    let bomb = &bomb[bomb_start..];
    let bomb = &bomb[bomb.windows(2).position(|w| w == b"\r\n").unwrap() + 2..];
    raw.extend_from_slice(bomb);
    raw.extend_from_slice(b"\r\n--top--\r\n");
    let mail = parse(&raw, &[]);
    assert_eq!(mail.body, "shallow text");
}

/// The HTML rendering is bounded (src/mail/parse/html/tests.rs); the message
/// around a nesting bomb is delivered with its HTML intact.
#[test]
fn html_nesting_bomb_keeps_its_html_body() {
    let html = format!("{}deep{}", "<div>".repeat(50_000), "</div>".repeat(50_000));
    let mail = parse(
        format!("Content-Type: text/html\r\n\r\n{html}").as_bytes(),
        &[],
    );
    assert_eq!(mail.body, "");
    assert_eq!(mail.html_body.as_deref(), Some(html.as_str()));
}

/// Deterministic xorshift64 so failures reproduce.
fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let alphabet: &[u8] = b"-\r\n:=?\"<>; \tabBQ=/\x00\xff\xc3";
    for round in 0..300 {
        let len = (xorshift(&mut seed) % 2048) as usize;
        let bytes: Vec<u8> = if round % 2 == 0 {
            (0..len).map(|_| xorshift(&mut seed) as u8).collect()
        } else {
            // Bytes biased towards MIME syntax reach deeper code paths.
            (0..len)
                .map(|_| alphabet[(xorshift(&mut seed) % alphabet.len() as u64) as usize])
                .collect()
        };
        let _ = parse(&bytes, &prefixes(&["x-", ""]));
    }
    for input in [
        &b""[..],
        b"\r",
        b"\n",
        b"\r\n\r\n",
        b":",
        b"\xff\xfe\x00",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--",
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n",
        b"Content-Type: multipart/mixed\r\n\r\nno delimiter at all",
        b"Content-Type: text/plain; charset=\"\r\n\r\nx",
        b"Content-Type: text/plain; charset=bogus-42\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\xff=",
        b"Content-Transfer-Encoding: base64\r\n\r\n====",
        b"Content-Type: text/html\r\n\r\n<<<</>>></",
        b"From: \"unterminated\r\nSubject: =?utf-8?B?####?=\r\n\r\n",
        b"From: group: a@b, c@d;\r\n\r\n",
    ] {
        let _ = parse(input, &prefixes(&["x-"]));
    }
}

#[test]
fn truncated_multipart_still_yields_top_level_fields() {
    let full = crlf(
        "Subject: cut\n\
         Message-ID: <cut@x>\n\
         Content-Type: multipart/mixed; boundary=b\n\
         \n\
         --b\n\
         Content-Type: text/plain\n\
         Content-Transfer-Encoding: base64\n\
         \n\
         SGVsbG8sIGJhc2U2NCB3b3JsZCEK\n\
         --b--\n",
    );
    for cut in 0..full.len() {
        let mail = parse(&full[..cut], &[]);
        if cut > 80 {
            assert_eq!(mail.subject, "cut", "cut at {cut}");
            assert_eq!(mail.message_id.as_deref(), Some("<cut@x>"));
        }
    }
    assert_eq!(parse(&full, &[]).body, "Hello, base64 world!\n");
}

/// Work units a full parse of `raw` is charged (no limit).
fn work(raw: &[u8], prefixes: &[String]) -> u64 {
    let budget = ParseBudget::with_limit(u64::MAX);
    let mail = parse_unrendered(raw, prefixes, true, &budget).render(&budget);
    assert!(!mail.truncated);
    budget.charged()
}

/// Finding 1 (issue 9): every step from bytes to fields is linear. Each
/// hostile shape is parsed at two sizes, the second twice the first; the
/// work (octets examined, as charged to the budget by the code that examines
/// them) may grow at most 2.5 times. mailparse's `get_value`, which these
/// shapes made quadratic, is no longer called.
#[test]
fn quadratic_header_decoding_is_linear() {
    type Shape = fn(usize) -> Vec<u8>;
    let shapes: [(&str, Shape); 18] = [
        ("Subject of =?", |n| {
            crlf(&format!("Subject: {}\n\nx", "=?".repeat(n)))
        }),
        ("From of =?", |n| {
            crlf(&format!("From: {}\n\nx", "=?".repeat(n)))
        }),
        ("From of unterminated words", |n| {
            crlf(&format!("From: {}\n\nx", " =?utf-8?q?a".repeat(n)))
        }),
        ("Subject of words", |n| {
            crlf(&format!("Subject: {}\n\nx", "=?utf-8?q?a?= ".repeat(n)))
        }),
        ("Subject of adjacent words", |n| {
            crlf(&format!("Subject: {}\n\nx", "=?utf-8?b?YQ==?=".repeat(n)))
        }),
        ("Subject of ?= closers", |n| {
            crlf(&format!("Subject: =?utf-8?q?{}\n\nx", "?=x".repeat(n)))
        }),
        ("folded Subject", |n| {
            crlf(&format!("Subject: a{}\n\nx", "\n =?".repeat(n)))
        }),
        ("many header fields", |n| {
            crlf(&format!("{}\nx", "X-A: =?\n".repeat(n)))
        }),
        ("Content-Type of =?", |n| {
            crlf(&format!(
                "Content-Type: text/plain; name=\"{}\"\n\nx",
                "=?".repeat(n)
            ))
        }),
        ("Content-Disposition of =?", |n| {
            crlf(&format!(
                "Content-Disposition: inline; filename={}\n\nx",
                "=?".repeat(n)
            ))
        }),
        ("Content-Transfer-Encoding of =?", |n| {
            crlf(&format!(
                "Content-Transfer-Encoding: {}\n\nx",
                "=?".repeat(n)
            ))
        }),
        ("From of nested comments", |n| {
            crlf(&format!("From: {}a@b{}\n\nx", "(".repeat(n), ")".repeat(n)))
        }),
        ("From of quotes and brackets", |n| {
            crlf(&format!("From: {}\n\nx", "\"<a>\",".repeat(n)))
        }),
        ("From of groups", |n| {
            crlf(&format!("From: {}\n\nx", "g: =?a@b;".repeat(n)))
        }),
        ("To of quoted names", |n| {
            crlf(&format!("To: {}\n\nx", "\"=?a\" <b@c>, ".repeat(n)))
        }),
        ("References of ids", |n| {
            crlf(&format!("References: {}\n\nx", "<a@b> <".repeat(n)))
        }),
        ("many parts", |n| {
            let mut raw = String::from("Content-Type: multipart/mixed; boundary=b\n\n");
            for _ in 0..n {
                raw.push_str("--b\nContent-Type: image/png; name==?\n\nx\n");
            }
            crlf(&raw)
        }),
        ("many bare lines", |n| {
            crlf(&format!("Subject: s\n\n{}", "=?\n".repeat(n)))
        }),
    ];
    let prefixes = prefixes(&["X-"]);
    for (name, shape) in shapes {
        let small = work(&shape(20_000), &prefixes);
        let large = work(&shape(40_000), &prefixes);
        assert!(
            large * 2 <= small * 5,
            "{name}: doubling the input took {large} / {small} = {:.2}× the work",
            large as f64 / small as f64
        );
    }
}

/// The budget is a real bound: a message whose parse would cost more stops
/// where it was spent, keeps what it had found and says so.
#[test]
fn a_spent_budget_truncates_the_parse() {
    let raw = crlf(&format!(
        "Subject: kept\nX-Big: {}\n\nbody\n",
        "=?".repeat(10_000)
    ));
    let budget = ParseBudget::with_limit(1_000);
    let mail = parse_unrendered(&raw, &prefixes(&["X-"]), false, &budget).render(&budget);
    assert!(mail.truncated);
    assert_eq!(mail.body, "", "the body lies beyond the budget");
    let full = parse(&raw, &prefixes(&["X-"]));
    assert!(!full.truncated);
    assert_eq!(
        (full.subject.as_str(), full.body.as_str()),
        ("kept", "body\r\n")
    );
}

/// Finding 4 (issue 9), through the whole parse: an HTML-only nesting
/// bomb renders within 4× its HTML and says it was cut.
#[test]
fn html_expansion_is_bounded_and_flagged() {
    let html = "<blockquote>x".repeat(8_000);
    let raw = format!("Subject: bomb\r\nContent-Type: text/html\r\n\r\n{html}");
    let mail = parse(raw.as_bytes(), &[]);
    assert!(mail.truncated);
    assert!(mail.body.len() <= 4 * html.len());
    assert!(mail.body.contains('x'));
    assert_eq!(mail.html_body.as_deref(), Some(html.as_str()));
    let plain = parse(b"Content-Type: text/html\r\n\r\n<p>fine</p>", &[]);
    assert!(!plain.truncated);
    assert_eq!(plain.body, "fine");
}

/// Issue 11, attachments: every leaf that is not a chosen body, in message
/// order, with its decoded name, type, Content-ID, disposition and octets.
#[test]
fn every_other_leaf_is_an_attachment() {
    let png = [0x89u8, b'P', b'N', b'G', 0, 1, 2, 255];
    let png_base64 = data_encoding::BASE64_MIME.encode(&png);
    let mail = parse_str(&format!(
        "Subject: report\n\
         Content-Type: multipart/mixed; boundary=outer\n\
         \n\
         --outer\n\
         Content-Type: multipart/related; boundary=rel\n\
         \n\
         --rel\n\
         Content-Type: multipart/alternative; boundary=alt\n\
         \n\
         --alt\n\
         Content-Type: text/plain; charset=utf-8\n\
         \n\
         See the chart.\n\
         --alt\n\
         Content-Type: text/html; charset=utf-8\n\
         \n\
         <p>See <img src=\"cid:chart@x\"></p>\n\
         --alt--\n\
         --rel\n\
         Content-Type: image/png\n\
         Content-Transfer-Encoding: base64\n\
         Content-ID: <chart@x>\n\
         \n\
         {png_base64}\
         --rel--\n\
         --outer\n\
         Content-Type: application/pdf; name=\"=?utf-8?q?R=C3=A9sum=C3=A9.pdf?=\"\n\
         Content-Disposition: attachment; filename*=utf-8''Q3%20r%C3%A9sum%C3%A9.pdf\n\
         Content-Transfer-Encoding: quoted-printable\n\
         \n\
         %PDF=0A=FF\n\
         --outer\n\
         Content-Type: text/plain; name=notes.txt\n\
         \n\
         more text\n\
         --outer\n\
         Content-Type: message/rfc822\n\
         \n\
         Subject: forwarded\n\
         \n\
         inner body\n\
         --outer--\n"
    ));
    assert_eq!(mail.body, "See the chart.");
    assert_eq!(
        mail.html_body.as_deref(),
        Some("<p>See <img src=\"cid:chart@x\"></p>")
    );
    let found: Vec<_> = mail
        .attachments
        .iter()
        .map(|a| {
            (
                a.filename.as_deref(),
                a.content_type.as_str(),
                a.content_id.as_deref(),
                a.disposition,
                &a.data[..],
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                None,
                "image/png",
                Some("chart@x"),
                Disposition::Inline,
                &png[..]
            ),
            (
                Some("Q3 résumé.pdf"),
                "application/pdf",
                None,
                Disposition::Attachment,
                &b"%PDF\n\xFF"[..]
            ),
            (
                Some("notes.txt"),
                "text/plain",
                None,
                Disposition::Attachment,
                &b"more text"[..]
            ),
            (
                None,
                "message/rfc822",
                None,
                Disposition::Attachment,
                &b"Subject: forwarded\r\n\r\ninner body"[..]
            ),
        ]
    );
}

/// Issue 11, multi-part texts: the first text leaf is the body; a second
/// text leaf between attachments (Apple Mail writes text, image, text) is
/// an inline attachment, so nothing the sender wrote is lost.
#[test]
fn a_second_text_part_is_an_inline_attachment() {
    let mail = parse_str(
        "Content-Type: multipart/mixed; boundary=b\n\
         \n\
         --b\n\
         Content-Type: text/plain\n\
         \n\
         before\n\
         --b\n\
         Content-Type: image/gif\n\
         Content-Disposition: inline; filename=a.gif\n\
         \n\
         GIF89a\n\
         --b\n\
         Content-Type: text/plain\n\
         Content-Disposition: inline\n\
         \n\
         after\n\
         --b--\n",
    );
    assert_eq!(mail.body, "before");
    let kinds: Vec<_> = mail
        .attachments
        .iter()
        .map(|a| (a.content_type.as_str(), a.disposition, &a.data[..]))
        .collect();
    assert_eq!(
        kinds,
        [
            ("image/gif", Disposition::Inline, &b"GIF89a"[..]),
            ("text/plain", Disposition::Inline, &b"after"[..]),
        ]
    );
}

#[test]
fn a_single_part_file_is_an_attachment_and_an_empty_message_has_none() {
    let mail = parse_str(
        "Content-Type: application/octet-stream\n\
         Content-Transfer-Encoding: base64\n\
         \n\
         AAEC\n",
    );
    assert_eq!(mail.body, "");
    assert_eq!(mail.attachments.len(), 1);
    assert_eq!(&mail.attachments[0].data[..], [0, 1, 2]);
    assert!(
        parse_str("Content-Type: image/png\n\n\n")
            .attachments
            .is_empty()
    );
    assert!(parse_str("Subject: x\n\nbody\n").attachments.is_empty());
}

/// Issue 11, exactness: every charset encoding_rs knows decodes in encoded
/// words and in bodies (8-bit and base64), each character kept.
#[test]
fn every_charset_decodes_in_words_and_bodies() {
    use encoding_rs::*;
    let encodings: [&'static Encoding; 38] = [
        BIG5,
        EUC_JP,
        EUC_KR,
        GBK,
        GB18030,
        IBM866,
        ISO_2022_JP,
        ISO_8859_2,
        ISO_8859_3,
        ISO_8859_4,
        ISO_8859_5,
        ISO_8859_6,
        ISO_8859_7,
        ISO_8859_8,
        ISO_8859_8_I,
        ISO_8859_10,
        ISO_8859_13,
        ISO_8859_14,
        ISO_8859_15,
        ISO_8859_16,
        KOI8_R,
        KOI8_U,
        MACINTOSH,
        SHIFT_JIS,
        UTF_8,
        WINDOWS_874,
        WINDOWS_1250,
        WINDOWS_1251,
        WINDOWS_1252,
        WINDOWS_1253,
        WINDOWS_1254,
        WINDOWS_1255,
        WINDOWS_1256,
        WINDOWS_1257,
        WINDOWS_1258,
        X_MAC_CYRILLIC,
        UTF_16BE,
        UTF_16LE,
    ];
    // Candidate characters; each encoding is tested with those it can write.
    let candidates = "Grüße Ærø ĄČĘ Привет Γειά שלום مرحبا ไทย 日本語 한국어 中文 ẞ€";
    for encoding in encodings {
        let text: String = candidates
            .chars()
            .filter(|c| {
                if encoding == UTF_16BE || encoding == UTF_16LE {
                    return true;
                }
                let one = c.to_string();
                let (bytes, _, unmappable) = encoding.encode(&one);
                !unmappable && encoding.decode_without_bom_handling(&bytes).0 == one
            })
            .collect();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(text.chars().count() >= 4, "{}: {text:?}", encoding.name());
        let label = encoding.name();
        let octets = if encoding == UTF_16BE || encoding == UTF_16LE {
            // encoding_rs encodes UTF-16 as UTF-8 (the WHATWG rule); write it by hand.
            let units = text.encode_utf16();
            if encoding == UTF_16BE {
                units.flat_map(u16::to_be_bytes).collect()
            } else {
                units.flat_map(u16::to_le_bytes).collect()
            }
        } else {
            encoding.encode(&text).0.into_owned()
        };
        let word = format!("=?{label}?B?{}?=", data_encoding::BASE64.encode(&octets));
        let base64_body = data_encoding::BASE64_MIME.encode(&octets);
        let mut message = format!(
            "Subject: {word}\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain; charset={label}\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{base64_body}\r\n\
             --b\r\nContent-Type: text/html; charset=\"{label}\"\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n"
        )
        .into_bytes();
        message.extend_from_slice(&octets);
        message.extend_from_slice(b"\r\n--b--\r\n");
        let mail = parse(&message, &[]);
        assert_eq!(mail.subject, text, "{label} in an encoded word");
        assert_eq!(mail.body, text, "{label} in a base64 body");
        assert_eq!(
            mail.html_body.as_deref(),
            Some(text.as_str()),
            "{label} in an 8-bit body"
        );
    }
}

/// A charset nobody knows loses no octet: the word stays as written, the
/// body is read as UTF-8 where valid, else Windows-1252.
#[test]
fn an_unknown_charset_drops_nothing() {
    let mail = parse_str(
        "Subject: =?x-unknown?Q?caf=E9?=\n\
         Content-Type: text/plain; charset=x-unknown\n\
         \n\
         café\n",
    );
    assert_eq!(mail.subject, "=?x-unknown?Q?caf=E9?=");
    assert_eq!(mail.body, "café\r\n");
    let latin1 = parse(
        b"Content-Type: text/plain; charset=x-unknown\r\n\r\ncaf\xE9",
        &[],
    );
    assert_eq!(latin1.body, "café");
}

/// Issue 11, reply text: `stripped_text` is the new text, only when
/// something was stripped.
#[test]
fn stripped_text_is_the_new_text_of_a_reply() {
    let reply = parse_str(
        "Subject: Re: outage\n\
         \n\
         Fixed now, thanks.\n\
         \n\
         On Sun, 6 Dec 2026 at 21:08, Alice <alice@example.org> wrote:\n\
         > The server is down.\n\
         > -- \n\
         > Alice\n",
    );
    assert_eq!(reply.stripped_text.as_deref(), Some("Fixed now, thanks."));
    assert!(reply.body.contains("> The server is down."));
    let signed = parse_str("Subject: s\n\nHello.\n-- \nBob, Ops\n");
    assert_eq!(signed.stripped_text.as_deref(), Some("Hello."));
    assert_eq!(
        parse_str("Subject: s\n\nNothing quoted.\n").stripped_text,
        None
    );
    assert_eq!(
        parse_str("Subject: s\n\n> only a quote\n").stripped_text,
        None
    );
}
