//! The one HTML shell of the pages the routes answer with (the status page, the sign-in
//! pages, the access refusal): the frame, the escaping, the styles. Pages build only their
//! body; the frame (doctype, language, viewport, title, the heading that repeats the title)
//! is written here once.

use axum::response::Html;

/// The status page's styles: readable on a phone, presence dots, the setup box.
pub const STATUS_CSS: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem;line-height:1.4}.muted{color:#666}.setup{background:#fff7e0;border:1px solid #e8c66a;padding:.5rem 1rem;border-radius:.5rem}.user{display:flex;gap:.75rem;align-items:center;padding:.5rem 0;border-bottom:1px solid #eee}.dot{width:1.5rem;height:1.5rem;border-radius:50%;flex:none;border:1px solid #0002;display:inline-block}.dot.sm{width:.9rem;height:.9rem;vertical-align:middle;margin-right:.5rem}.now{font-weight:600}.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.2rem 1rem;font-size:.9rem}section{margin-bottom:1rem}.health:before{content:\"\\25CF  \"}.ok:before{color:#2e9e44}.bad{color:#a4262c}.warn{color:#8a5a00}code{background:#f3f3f3;padding:0 .2rem}time{white-space:nowrap}";

/// The sign-in pages' styles: one narrow column of text.
pub const SIGN_IN_CSS: &str =
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;line-height:1.5}";

/// The access refusal's styles: the status page's column, without its extras.
pub const NOTICE_CSS: &str =
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem}";

/// What a page puts into the frame besides its body.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The title and the heading (plain text: escaped here).
    pub title: &'a str,
    /// The page's styles (one of the constants above).
    pub css: &'a str,
    /// Reload the page every this many seconds.
    pub refresh_seconds: Option<u32>,
    /// A script run at the end of the body (trusted text, never user input).
    pub script: Option<&'a str>,
}

impl<'a> Frame<'a> {
    /// A page titled `title` with `css`, no refresh and no script.
    pub fn new(title: &'a str, css: &'a str) -> Self {
        Self {
            title,
            css,
            refresh_seconds: None,
            script: None,
        }
    }

    /// The whole page around `body` (HTML the caller built, with its values escaped).
    pub fn render(&self, body: &str) -> Html<String> {
        let refresh = self
            .refresh_seconds
            .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
            .unwrap_or_default();
        let script = self
            .script
            .map(|s| format!("<script>{s}</script>"))
            .unwrap_or_default();
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">{refresh}<title>{t}</title><style>{css}</style></head><body><h1>{t}</h1>{body}{script}</body></html>",
            t = esc(self.title),
            css = self.css,
        ))
    }
}

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_escapes_the_title_and_keeps_the_body_as_given() {
        let mut f = Frame::new("<A & B>", SIGN_IN_CSS);
        f.refresh_seconds = Some(10);
        f.script = Some("x()");
        let Html(page) = f.render("<p>ok</p>");
        assert!(page.starts_with("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"));
        assert!(page.contains(
            "<meta http-equiv=\"refresh\" content=\"10\"><title>&lt;A &amp; B&gt;</title>"
        ));
        assert!(page.contains(&format!("<style>{SIGN_IN_CSS}</style>")));
        assert!(
            page.ends_with("<h1>&lt;A &amp; B&gt;</h1><p>ok</p><script>x()</script></body></html>")
        );
    }

    #[test]
    fn escaping_covers_every_character_that_can_leave_text_or_an_attribute() {
        assert_eq!(
            esc(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
