//! Server-rendered HTML: escaping, the page layout, and plain words for egard's terms.
//!
//! Every text that is not a literal of this file goes through [`escape`] (or [`Html::text`]);
//! pages need no JavaScript, and the Content-Security-Policy allows none.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use egard::LawfulBasis;

/// Escapes `text` for an HTML text node or a double-quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// An HTML fragment being written: literal markup with [`raw`](Html::raw), any other text with
/// [`text`](Html::text), which escapes it.
#[derive(Default)]
pub struct Html(String);

impl Html {
    /// An empty fragment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends markup written in this crate (never text that came from outside).
    pub fn raw(&mut self, markup: &str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Appends `text`, escaped.
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.0.push_str(&escape(text));
        self
    }

    /// A hidden CSRF field, for every form.
    pub fn csrf(&mut self, token: &str) -> &mut Self {
        let _ = write!(self.0, r#"<input type="hidden" name="csrf" value="{}">"#, escape(token));
        self
    }

    /// The fragment's markup.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Which section of the navigation a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Not signed in: no navigation.
    None,
    /// Your consents.
    Consents,
    /// Your data.
    Data,
    /// Who used your data.
    Activity,
    /// Delete my account.
    Delete,
}

/// A whole page: the layout around `body`, with the heading `title` (the only `h1`).
///
/// `notices` are shown at the top of the main content in a polite live region (a GPC notice,
/// the result of the last form). `csrf` is needed for the sign-out button when `nav` is not
/// [`Nav::None`].
pub fn page(title: &str, nav: Nav, csrf: Option<&str>, notices: &[String], body: &str) -> String {
    let mut h = Html::new();
    h.raw("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>")
        .text(title)
        .raw(" · Preference center</title>\n<link rel=\"stylesheet\" href=\"/style.css\">\n</head>\n<body>\n")
        .raw("<a class=\"skip\" href=\"#main\">Skip to the content</a>\n<header>\n")
        .raw("<p class=\"brand\">Rides &amp; Food Co. · <span>preference center</span></p>\n");
    if nav != Nav::None {
        h.raw("<nav aria-label=\"Your preference center\"><ul>\n");
        for (item, href, label) in [
            (Nav::Consents, "/consents", "Your consents"),
            (Nav::Data, "/data", "Your data"),
            (Nav::Activity, "/activity", "Who used your data"),
            (Nav::Delete, "/delete", "Delete my account"),
        ] {
            if item == nav {
                h.raw(&format!(
                    "<li><a href=\"{href}\" aria-current=\"page\">{label}</a></li>\n"
                ));
            } else {
                h.raw(&format!("<li><a href=\"{href}\">{label}</a></li>\n"));
            }
        }
        h.raw("</ul>");
        if let Some(token) = csrf {
            h.raw("<form method=\"post\" action=\"/signout\" class=\"signout\">")
                .csrf(token)
                .raw("<button type=\"submit\">Sign out</button></form>");
        }
        h.raw("</nav>\n");
    }
    h.raw("</header>\n<main id=\"main\" tabindex=\"-1\">\n<h1>")
        .text(title)
        .raw("</h1>\n");
    if !notices.is_empty() {
        h.raw("<div class=\"notices\" role=\"status\">\n");
        for notice in notices {
            h.raw("<p class=\"notice\">").text(notice).raw("</p>\n");
        }
        h.raw("</div>\n");
    }
    h.raw(body)
        .raw("</main>\n<footer><p>A demo of <a href=\"https://crates.io/crates/egard\">egard</a>: ")
        .raw("every value is sealed and opens only for a purpose you agreed to.</p></footer>\n</body>\n</html>\n");
    h.into_string()
}

/// The style sheet: readable, high-contrast, with a visible keyboard focus.
pub const STYLE: &str = r#"
:root { --ink: #1b1b1f; --muted: #4a4a55; --line: #c9c9d3; --accent: #0b57d0; --ok: #146c2e; --warn: #8a1c1c; --bg: #fbfbfd; }
* { box-sizing: border-box; }
body { margin: 0; font: 17px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink); background: var(--bg); }
.skip { position: absolute; left: -999px; top: 0; background: #fff; padding: .5rem 1rem; }
.skip:focus { left: 1rem; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: .75rem 1.5rem; display: flex; flex-wrap: wrap; align-items: center; gap: 1rem 2rem; }
.brand { margin: 0; font-weight: 700; } .brand span { font-weight: 400; color: var(--muted); }
nav { display: flex; align-items: center; gap: 1rem; flex-wrap: wrap; }
nav ul { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: .25rem 1rem; }
nav a { color: var(--accent); text-decoration: none; padding: .25rem .1rem; }
nav a[aria-current="page"] { color: var(--ink); font-weight: 700; border-bottom: 3px solid var(--accent); }
main { max-width: 52rem; margin: 0 auto; padding: 1.5rem; }
main:focus { outline: none; }
h1 { font-size: 1.9rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.3rem; margin: 1.75rem 0 .5rem; }
.card h2 { margin: 0 0 .25rem; }
dt { font-weight: 600; } dd { margin: 0 0 .6rem 1.5rem; }
h3 { font-size: 1.05rem; margin: 1rem 0 .25rem; }
a { color: var(--accent); }
:focus-visible { outline: 3px solid #e8a400; outline-offset: 2px; }
button, input, select { font: inherit; }
button { background: var(--accent); color: #fff; border: 2px solid var(--accent); border-radius: 6px; padding: .45rem 1rem; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); }
button.danger { background: var(--warn); border-color: var(--warn); }
input[type="email"] { width: 100%; max-width: 24rem; padding: .45rem .6rem; border: 2px solid var(--muted); border-radius: 6px; }
label { cursor: pointer; }
.field { margin: 0 0 1rem; } .field label { display: block; font-weight: 600; margin-bottom: .25rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 1rem 1.25rem; margin: 0 0 1rem; }
.meta { color: var(--muted); font-size: .93rem; margin: 0 0 .5rem; }
.notice-text { border-left: 4px solid var(--line); padding-left: .75rem; margin: .5rem 0; }
.state { display: inline-block; font-weight: 700; border-radius: 999px; padding: .05rem .65rem; font-size: .9rem; }
.state.on { background: #dff3e4; color: var(--ok); } .state.off { background: #f3e1e1; color: var(--warn); } .state.neutral { background: #e8eaf2; color: var(--muted); }
.actions { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin-top: .75rem; }
fieldset { border: 1px solid var(--line); border-radius: 8px; margin: .5rem 0; padding: .5rem .9rem; }
legend { font-weight: 600; padding: 0 .3rem; }
fieldset label { margin-right: 1.25rem; white-space: nowrap; }
.notices .notice { background: #fff7d6; border: 1px solid #e8c95a; border-radius: 8px; padding: .6rem .9rem; }
.error { background: #fdecec; border: 1px solid #e0a0a0; border-radius: 8px; padding: .6rem .9rem; }
table { border-collapse: collapse; width: 100%; background: #fff; margin: 0 0 1rem; }
caption { text-align: left; }
th, td { text-align: left; border-bottom: 1px solid var(--line); padding: .5rem .6rem; vertical-align: top; }
th { background: #f0f1f6; }
ol.log { padding-left: 1.25rem; } ol.log li { margin: 0 0 .6rem; }
.signout { margin: 0; } .signout button { padding: .2rem .8rem; }
footer { max-width: 52rem; margin: 2rem auto; padding: 0 1.5rem; color: var(--muted); font-size: .9rem; }
code { background: #eef0f6; padding: 0 .25rem; border-radius: 4px; }
"#;

/// A purpose id in words: `partner_offers` → `Partner offers`.
pub fn title_of(id: &str) -> String {
    let words = id.replace(['_', '-', '.'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A field name in words: `first_name` → `first name`.
pub fn field_words(field: &str) -> String {
    field.replace(['_', '-', '.'], " ")
}

/// A list in words: `a`, `a and b`, `a, b and c`.
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// What a lawful basis means to the customer.
pub fn basis_words(basis: LawfulBasis) -> &'static str {
    match basis {
        LawfulBasis::Consent => "Only with your consent",
        LawfulBasis::Contract => "Needed to deliver what you ordered (contract)",
        LawfulBasis::LegalObligation => "Required by law",
        LawfulBasis::VitalInterests => "To protect someone's life",
        LawfulBasis::PublicTask => "A task in the public interest (you may object)",
        LawfulBasis::LegitimateInterests => "Our legitimate interests (you may object)",
    }
}

/// A moment in words: `2 Dec 2026 at 14:03 UTC`.
pub fn when(at: DateTime<Utc>) -> String {
    at.format("%-d %b %Y at %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn words() {
        assert_eq!(title_of("partner_offers"), "Partner offers");
        assert_eq!(field_words("first_name"), "first name");
        assert_eq!(and_list(&["a".into(), "b".into(), "c".into()]), "a, b and c");
        assert_eq!(and_list(&["a".into()]), "a");
    }

    #[test]
    fn a_page_has_a_language_and_one_h1() {
        let html = page("Sign in", Nav::None, None, &["<b>".into()], "<p>x</p>");
        assert!(html.contains("<html lang=\"en\">"));
        assert_eq!(html.matches("<h1>").count(), 1);
        assert!(html.contains("&lt;b&gt;"));
    }
}
