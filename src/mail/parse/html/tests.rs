use std::cell::Cell;

use super::dom::{CHUNK, MAX_DEPTH, MAX_NODES};
use super::prune::{MAX_BLANK_LINES, MAX_LINKS, MAX_NESTING, MAX_RENDER_WORK};
use super::*;

/// Renders with no clock involved, so results do not depend on the machine.
fn render(html: &str) -> RenderedHtml {
    render_measured(html, usize::MAX, &|| true).0
}

/// Finding 4 (issue 9): on main, 100 KB of nested `<blockquote>` rendered to
/// 85–96 MB of text in 23–30 s of CPU, and 200,000 links took 465 MB.
#[test]
fn html_expansion_is_bounded() {
    let quotes = "<blockquote>x".repeat(100_000 / 13);
    let links: String = (0..200_000)
        .map(|i| format!("<a href=\"https://example.com/{i}\">link {i}</a>"))
        .collect();
    let max_text = 256 * 1024;
    for (name, html) in [("quotes", &quotes), ("links", &links)] {
        let (rendered, work) = render_measured(html, max_text, &|| true);
        assert!(rendered.truncated, "{name}");
        assert!(rendered.text.len() <= 4 * html.len(), "{name}");
        assert!(rendered.text.len() <= max_text, "{name}");
        // Parsing stops at the node limit (with at most one chunk's worth
        // more), rendering at the work limit.
        assert!(work.parsed_nodes <= MAX_NODES + CHUNK, "{name}: {work:?}");
        assert!(work.render_work <= 2 * MAX_RENDER_WORK, "{name}: {work:?}");
    }

    // The quotes keep their text; prefixes stop at MAX_NESTING levels.
    let rendered = render(&quotes);
    assert!(
        rendered.text.starts_with("> x\n"),
        "{}",
        &rendered.text[..40]
    );
    let deepest = rendered.text.lines().map(|line| line.matches('>').count());
    assert_eq!(deepest.max(), Some(MAX_NESTING));
    assert!(rendered.text.matches('x').count() > MAX_NESTING);

    // Every link keeps its text, the first MAX_LINKS their footnote.
    let few: String = links.split_inclusive("</a>").take(2 * MAX_LINKS).collect();
    let rendered = render(&few);
    assert!(rendered.truncated);
    let last = 2 * MAX_LINKS - 1;
    assert!(rendered.text.contains(&format!("link {last}")));
    assert!(
        rendered
            .text
            .contains(&format!("[{MAX_LINKS}]: https://example.com/"))
    );
    assert!(!rendered.text.contains(&format!("[{}]", MAX_LINKS + 1)));
}

/// Builds a hostile document of a given size.
type HostileHtml = fn(usize) -> String;

/// Doubling a hostile input at most about doubles the work: no measure of
/// it grows quadratically (on main the rendered text did).
#[test]
fn html_rendering_work_is_linear() {
    let shapes: [(&str, HostileHtml); 9] = [
        ("nested quotes", |n| "<blockquote>x".repeat(n)),
        ("nested lists", |n| "<ul><li>x".repeat(n)),
        ("nested ordered lists", |n| {
            "<ol start=\"-999999\"><li>x".repeat(n)
        }),
        ("nested strike-through", |n| "<s>x".repeat(n)),
        ("links", |n| {
            (0..n)
                .map(|i| format!("<a href=\"https://example.com/{i}\">{i}</a>"))
                .collect()
        }),
        ("wide table", |n| {
            format!("<table><tr>{}{}", "<td>c".repeat(n), "<tr><td>r".repeat(n))
        }),
        ("line breaks, then blocks", |n| {
            format!("{}{}", "<br>".repeat(n), "<p>x</p>".repeat(n))
        }),
        ("newlines in <pre>, then blocks", |n| {
            format!("<pre>{}</pre>{}", "\n".repeat(n), "<p>x</p>".repeat(n))
        }),
        ("fragment markers, then blocks", |n| {
            format!("{}x{}", "<i id=a></i>".repeat(n), "<p>y</p>".repeat(n))
        }),
    ];
    for (name, make) in shapes {
        let n = 200;
        let (small, large) = (make(n), make(2 * n));
        let (a, measured_small) = render_measured(&small, usize::MAX, &|| true);
        let (b, measured_large) = render_measured(&large, usize::MAX, &|| true);
        assert!(a.text.len() <= 4 * small.len(), "{name}");
        assert!(b.text.len() <= 4 * large.len(), "{name}");
        for (measure, a, b) in [
            (
                "parsed nodes",
                measured_small.parsed_nodes,
                measured_large.parsed_nodes,
            ),
            (
                "render work",
                measured_small.render_work,
                measured_large.render_work,
            ),
            (
                "rendered bytes",
                measured_small.rendered_bytes,
                measured_large.rendered_bytes,
            ),
        ] {
            assert!(
                2 * b <= 5 * a,
                "{name}: {measure} went from {a} to {b} when the input doubled"
            );
        }
    }
}

#[test]
fn html_rendering_stops_when_told() {
    let html: String = (0..10_000).map(|i| format!("<p>word{i}</p>")).collect();
    let asked = Cell::new(0);
    let three_chunks = || {
        asked.set(asked.get() + 1);
        asked.get() <= 3
    };
    let rendered = render_measured(&html, usize::MAX, &three_chunks).0;
    assert!(rendered.truncated);
    assert!(rendered.text.starts_with("word0\n\nword1\n"));
    assert!(rendered.text.len() < 3 * CHUNK, "{}", rendered.text.len());
    assert_eq!(asked.get(), 4);

    // Told to stop at once, nothing is parsed.
    let rendered = render_html(&html, usize::MAX, &|| false);
    assert_eq!(
        rendered,
        RenderedHtml {
            text: String::new(),
            truncated: true
        }
    );

    // Asked again while the parsed document is copied for rendering: here
    // after all the input is parsed.
    let chunks = html.len().div_ceil(CHUNK);
    let asked = Cell::new(0);
    let parse_only = || {
        asked.set(asked.get() + 1);
        asked.get() <= chunks
    };
    let rendered = render_measured(&html, usize::MAX, &parse_only).0;
    assert!(rendered.truncated);
    assert!(rendered.text.starts_with("word0\n"));
    assert!(!rendered.text.contains("word9999"));
    assert!(asked.get() > chunks);
}

#[test]
fn deep_nesting_stops_parsing_at_the_depth_limit() {
    // html5ever's tree building is quadratic in depth: the parse stops
    // deterministically, not when a clock runs out.
    let bomb = format!("{}deep{}", "<div>".repeat(50_000), "</div>".repeat(50_000));
    let (rendered, work) = render_measured(&bomb, usize::MAX, &|| true);
    assert_eq!(rendered.text, "");
    assert!(rendered.truncated);
    assert!(work.parsed_nodes <= MAX_DEPTH + CHUNK);
    // Shallower than the limit, everything is kept.
    let nested = format!("{}deep", "<div>".repeat(MAX_DEPTH - 10));
    assert_eq!(
        render(&nested),
        RenderedHtml {
            text: "deep".to_owned(),
            truncated: false
        }
    );
}

#[test]
fn text_is_cut_to_the_maximum_and_to_four_times_the_html() {
    let html = format!("<p>{}</p>", "é".repeat(1_000));
    let rendered = render_measured(&html, 101, &|| true).0;
    assert_eq!(rendered.text, "é".repeat(50));
    assert!(rendered.truncated);
    let whole = render_measured(&html, 2_000, &|| true).0;
    assert_eq!(whole.text, "é".repeat(1_000));
    assert!(!whole.truncated);

    // 20 levels of quote prefix on every line outgrow the HTML 4 times.
    let quoted = format!("{}{}", "<blockquote>".repeat(20), "<p>x</p>".repeat(100));
    let rendered = render(&quoted);
    assert!(rendered.truncated);
    assert!(rendered.text.len() <= 4 * quoted.len());
    assert!(rendered.text.starts_with(&format!("{}x", "> ".repeat(20))));
}

#[test]
fn blank_lines_are_collapsed() {
    for html in [
        format!("a{}b", "<br>".repeat(100)),
        format!("a{}b", "<span><br></span>".repeat(100)),
        format!("<pre>a{}b</pre>", "\n".repeat(100)),
        format!("<pre>a{}b</pre>", "\n<i></i>".repeat(100)),
    ] {
        let rendered = render(&html);
        let breaks = rendered.text.matches('\n').count();
        assert!(
            (1..=MAX_BLANK_LINES).contains(&breaks),
            "{breaks} line breaks in {:?}",
            rendered.text
        );
        assert!(rendered.text.starts_with('a') && rendered.text.ends_with('b'));
        // Only whitespace was left out.
        assert!(!rendered.truncated);
    }
}

#[test]
fn long_table_rows_read_cell_by_cell_as_before() {
    let cells: Vec<String> = (0..40).map(|i| format!("cell {i}")).collect();
    let html = format!(
        "<table><tr><td>{}</td></tr><tr><td>last</td></tr></table>",
        cells.join("</td><td>")
    );
    assert_eq!(render(&html).text, format!("{}\nlast", cells.join("\n")));
}

#[test]
fn table_spans_and_list_starts_that_break_html2text_are_ignored() {
    // html2text 0.17.4 panics on this (an unwrap in its column mapping).
    assert_eq!(render("<table><td colspan=3><td rowspan=2>x").text, "x");
    // ... and overflows on list numbers near i64::MAX.
    assert_eq!(
        render("<ol start=\"9223372036854775807\"><li>a<li>b</ol>").text,
        "1. a\n2. b"
    );
    assert_eq!(
        render("<ol start=\"-1000000\"><li>a<li>b</ol>").text,
        "-1000000. a\n-999999.  b"
    );
}

/// A newsletter renders exactly as html2text rendered it before the limits
/// (the expected text is main's output for this input).
#[test]
fn newsletter_renders_as_before() {
    let rendered = render(NEWSLETTER);
    assert!(!rendered.truncated);
    assert_eq!(rendered.text, NEWSLETTER_TEXT);
}

const NEWSLETTER: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Weekly news</title>
<style>td { padding: 4px } .hide { display: none }</style></head>
<body id="body" style="margin:0">
<!-- preheader -->
<table id="bodyTable" width="100%" cellpadding="0"><tr><td align="center" id="bodyCell">
<table width="600" class="container">
<tr><td class="header"><img src="https://cdn.example.com/logo.png" alt="Example Co" width="120"><img src="https://cdn.example.com/spacer.gif"></td></tr>
<tr><td><h1>Weekly &amp; news</h1><p>Hello <b>Ada</b>, here is <i>what&rsquo;s new</i>.<br>Read on!</p></td></tr>
<tr><td><table width="100%"><tr>
<td width="200"><a href="https://example.com/story/1?utm_source=mail&amp;utm_medium=email"><img src="https://cdn.example.com/1.jpg" alt="Story one"></a></td>
<td><h2>Story one</h2><p>Lorem ipsum dolor sit amet, <a href="https://example.com/x/1">consectetur</a> adipiscing elit.</p>
<ul><li>Point one</li><li>Point <strong>two</strong></li></ul>
<ol start="3"><li>Third</li><li>Fourth</li></ol>
<blockquote>Quoted words<blockquote>and a reply</blockquote></blockquote>
<p><a href="https://example.com/read/1" style="color:#fff">Read more &rarr;</a></p></td>
</tr></table></td></tr>
<tr><td><table><tr><td colspan="2">wide</td></tr><tr><td rowspan="2">tall</td><td>b</td></tr><tr><td>c</td></tr></table></td></tr>
<tr><td><pre>  pre formatted
    text</pre><dl><dt>Term</dt><dd>Definition</dd></dl><p>Price: <s>$20</s> $10 <del>old</del></p><p><a name="bottom"></a>x<sup>2</sup></p></td></tr>
<tr><td class="footer"><p>You received this because you subscribed.<br><br>
<a href="https://example.com/unsubscribe?id=abc">Unsubscribe</a> | <a href="https://example.com/prefs">Preferences</a></p>
<script>alert(1)</script><hr><p>&copy; 2024 Example Co &middot; 1 Main St</p></td></tr>
</table></td></tr></table></body></html>
"#;

const NEWSLETTER_TEXT: &str = "[Example Co]\n# Weekly & news\n\nHello Ada, here is what’s new.\n\
Read on!\n[[Story one]][1]\n## Story one\n\nLorem ipsum dolor sit amet, [consectetur][2] \
adipiscing elit.\n* Point one\n* Point two\n3. Third\n4. Fourth\n\n> Quoted words\n> \n> > and \
a reply\n\n[Read more →][3]\nwide\ntall\nb\nc\n  pre formatted\n    text\n\nTerm\n  Definition\n\n\
Price: $\u{336}2\u{336}0\u{336} $10 o\u{336}l\u{336}d\u{336}\n\nx²\nYou received this because \
you subscribed.\n\n[Unsubscribe][4] | [Preferences][5]\n\n© 2024 Example Co · 1 Main St\n\n\
[1]: https://example.com/story/1?utm_source=mail&utm_medium=email\n[2]: https://example.com/x/1\n\
[3]: https://example.com/read/1\n[4]: https://example.com/unsubscribe?id=abc\n\
[5]: https://example.com/prefs";
