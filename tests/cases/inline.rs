//! `--inline FILE`: images the HTML shows by `cid:NAME`, in a
//! multipart/related with the HTML part; read back with mailparse.

use mailparse::{MailHeaderMap, ParsedMail};

use super::*;
use crate::support::cmd::Mailsend;

/// The tree of content types, depth first.
fn tree(mail: &ParsedMail) -> Vec<String> {
    let mut out = vec![mail.ctype.mimetype.clone()];
    for part in &mail.subparts {
        out.extend(tree(part));
    }
    out
}

fn find<'a>(mail: &'a ParsedMail<'a>, mimetype: &str) -> Vec<&'a ParsedMail<'a>> {
    let mut out = Vec::new();
    if mail.ctype.mimetype == mimetype {
        out.push(mail);
    }
    for part in &mail.subparts {
        out.extend(find(part, mimetype));
    }
    out
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR-not-really-an-image";

#[test]
fn text_html_inline_images_and_attachments_make_the_right_tree() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let html = m.file(
        "page.html",
        "<p>Logo: <img src=\"cid:logo.png\"> <img src=\"cid:icon.gif\"></p>\n",
    );
    let logo = m.file("logo.png", PNG);
    let icon = m.file("icon.gif", b"GIF89a...");
    let report = m.file("report.csv", "a,b\n");
    m.args([
        "--from",
        "me@example.com",
        "--to",
        "a@example.net",
        "--body",
        "text version",
    ])
    .args(["--html", html.to_str().unwrap()])
    .args([
        "--inline",
        logo.to_str().unwrap(),
        "--inline",
        icon.to_str().unwrap(),
    ])
    .args(["--attach", report.to_str().unwrap()])
    .run()
    .expect(0);
    let tx = only_transaction(&server);
    let mail = mailparse::parse_mail(&tx.data).expect("parsable");
    assert_eq!(
        tree(&mail),
        [
            "multipart/mixed",
            "multipart/alternative",
            "text/plain",
            "multipart/related",
            "text/html",
            "image/png",
            "image/gif",
            "text/csv"
        ]
    );
    let related = &find(&mail, "multipart/related")[0];
    assert_eq!(
        related.ctype.params.get("type").map(String::as_str),
        Some("text/html")
    );
    let png = find(&mail, "image/png")[0];
    let headers = png.get_headers();
    assert_eq!(
        headers.get_first_value("Content-ID").as_deref(),
        Some("<logo.png>")
    );
    let disposition = png.get_content_disposition();
    assert_eq!(disposition.disposition, mailparse::DispositionType::Inline);
    assert_eq!(
        disposition.params.get("filename").map(String::as_str),
        Some("logo.png")
    );
    assert_eq!(png.get_body_raw().unwrap(), PNG);
    let gif = find(&mail, "image/gif")[0];
    assert_eq!(
        gif.get_headers().get_first_value("Content-ID").as_deref(),
        Some("<icon.gif>")
    );
    let csv = find(&mail, "text/csv")[0];
    assert_eq!(
        csv.get_content_disposition().disposition,
        mailparse::DispositionType::Attachment
    );
}

#[test]
fn html_alone_with_an_image_is_a_related_message() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    let html = m.file("page.html", "<img src=\"cid:logo.png\">\n");
    let big: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let logo = m.file("logo.png", &big);
    m.args(["--from", "me@example.com", "--to", "a@example.net"])
        .args([
            "--html",
            html.to_str().unwrap(),
            "--inline",
            logo.to_str().unwrap(),
        ])
        .run()
        .expect(0);
    let tx = only_transaction(&server);
    let mail = mailparse::parse_mail(&tx.data).expect("parsable");
    assert_eq!(tree(&mail), ["multipart/related", "text/html", "image/png"]);
    assert_eq!(find(&mail, "image/png")[0].get_body_raw().unwrap(), big);
    assert!(
        find(&mail, "text/html")[0]
            .get_body()
            .unwrap()
            .contains("cid:logo.png")
    );
}

#[test]
fn inline_mistakes_are_refused_before_sending() {
    let server = submission();
    let base = |m: &mut Mailsend| {
        m.args([
            "--from",
            "me@example.com",
            "--to",
            "a@example.net",
            "--body",
            "x",
        ]);
    };

    // Without --html: usage.
    let mut m = Mailsend::to(&server);
    let logo = m.file("logo.png", PNG);
    base(&mut m);
    m.args(["--inline", logo.to_str().unwrap()])
        .run()
        .expect(64)
        .error_mentions("--inline needs --html");

    // A missing file: 66.
    let mut m = Mailsend::to(&server);
    let html = m.file("page.html", "<p>x</p>");
    base(&mut m);
    m.args([
        "--html",
        html.to_str().unwrap(),
        "--inline",
        "/nonexistent/logo.png",
    ])
    .run()
    .expect(66)
    .error_mentions("/nonexistent/logo.png");

    // Two files with the same name: their Content-IDs would clash.
    let mut m = Mailsend::to(&server);
    let html = m.file("page.html", "<p>x</p>");
    let one = m.file("logo.png", PNG);
    std::fs::create_dir(m.path().join("other")).unwrap();
    let two = m.file("other/logo.png", PNG);
    base(&mut m);
    m.args(["--html", html.to_str().unwrap()])
        .args([
            "--inline",
            one.to_str().unwrap(),
            "--inline",
            two.to_str().unwrap(),
        ])
        .run()
        .expect(64)
        .error_mentions("two files named logo.png");

    // A name that cannot be a Content-ID as it is.
    let mut m = Mailsend::to(&server);
    let html = m.file("page.html", "<p>x</p>");
    let spaced = m.file("my logo.png", PNG);
    base(&mut m);
    m.args([
        "--html",
        html.to_str().unwrap(),
        "--inline",
        spaced.to_str().unwrap(),
    ])
    .run()
    .expect(64)
    .error_mentions("Content-ID");

    assert!(server.sessions().is_empty(), "nothing was sent");
}

#[test]
fn a_campaign_takes_inline_image_templates() {
    let server = submission();
    let mut m = Mailsend::to(&server);
    m.file(
        "list.csv",
        "email,name,logo\nu1@example.com,One,a.png\nu2@example.com,Two,b.png\n",
    );
    m.file("a.png", b"image A");
    m.file("b.png", b"image B");
    let html = m.file(
        "letter.html",
        "<p>Hi {{ name }} <img src=\"cid:{{ logo }}\"></p>\n",
    );
    let dir = m.path().to_owned();
    m.home(&dir)
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args(["--subject", "Hello", "--body", "Dear {{ name }}"])
        .args(["--html", html.to_str().unwrap(), "--inline", "{{ logo }}"])
        .args(["--unsubscribe-mailto", "u@example.com", "--yes"])
        .run()
        .expect(0);
    let sessions = server.wait_sessions(1, std::time::Duration::from_secs(20));
    let mut seen = Vec::new();
    for tx in sessions.iter().flat_map(|s| &s.transactions) {
        let mail = mailparse::parse_mail(&tx.data).expect("parsable");
        assert_eq!(
            tree(&mail),
            [
                "multipart/alternative",
                "text/plain",
                "multipart/related",
                "text/html",
                "image/png"
            ]
        );
        let png = find(&mail, "image/png")[0];
        let cid = png.get_headers().get_first_value("Content-ID").unwrap();
        let bytes = png.get_body_raw().unwrap();
        let html = find(&mail, "text/html")[0].get_body().unwrap();
        assert!(
            html.contains(&format!("cid:{}", &cid[1..cid.len() - 1])),
            "{html}"
        );
        seen.push((tx.rcpt_to.clone(), cid, bytes));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                vec!["u1@example.com".to_owned()],
                "<a.png>".to_owned(),
                b"image A".to_vec()
            ),
            (
                vec!["u2@example.com".to_owned()],
                "<b.png>".to_owned(),
                b"image B".to_vec()
            ),
        ]
    );

    // Without --html: a usage error before anything else.
    let mut m = Mailsend::to(&server);
    m.file("list.csv", "email\nu1@example.com\n");
    let dir = m.path().to_owned();
    m.home(&dir)
        .args(["bulk", "--data", "list.csv", "--from", "news@example.com"])
        .args(["--body", "x", "--inline", "logo.png", "--yes"])
        .run()
        .expect(64)
        .error_mentions("--inline needs --html");
}

/// A `cid:` URL is a URL (RFC 2392): `%hh` is decoded, `#` starts a
/// fragment and `?` a query, so `cid:logo#2.png` would not name the part
/// `<logo#2.png>`. Such names are refused like a space.
#[test]
fn names_a_cid_url_would_change_are_refused() {
    let server = submission();
    for name in ["logo#2.png", "a%41.png", "logo?.png"] {
        let mut m = Mailsend::to(&server);
        let html = m.file("page.html", "<p>x</p>");
        let file = m.file(name, PNG);
        m.args(["--from", "me@example.com", "--to", "a@example.net"])
            .args(["--body", "x", "--html", html.to_str().unwrap()])
            .args(["--inline", file.to_str().unwrap()])
            .run()
            .expect(64)
            .error_mentions("Content-ID");
    }
    assert!(server.sessions().is_empty(), "nothing was sent");
}
