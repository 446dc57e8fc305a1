//! Web pages and mail texts, rendered with minijinja.
//!
//! The built-in templates under `templates/` are compiled into the binary; a file of
//! the same name in `LISTD_TEMPLATE_DIR` (e.g. `web/list.html`) replaces one of them.
//! `.html` templates escape everything they print. Mail templates start with a
//! `Subject:` line; a rendered subject is cut to one line, whatever the data held.

use serde::Serialize;
use std::path::PathBuf;

/// The built-in templates, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("web/base.html", include_str!("../templates/web/base.html")),
    ("web/listd.css", include_str!("../templates/web/listd.css")),
    (
        "web/index.html",
        include_str!("../templates/web/index.html"),
    ),
    ("web/list.html", include_str!("../templates/web/list.html")),
    (
        "web/resume.html",
        include_str!("../templates/web/resume.html"),
    ),
    (
        "web/message.html",
        include_str!("../templates/web/message.html"),
    ),
    (
        "web/confirm.html",
        include_str!("../templates/web/confirm.html"),
    ),
    (
        "web/signin.html",
        include_str!("../templates/web/signin.html"),
    ),
    (
        "web/check_inbox.html",
        include_str!("../templates/web/check_inbox.html"),
    ),
    ("web/me.html", include_str!("../templates/web/me.html")),
    (
        "web/admin.html",
        include_str!("../templates/web/admin.html"),
    ),
    (
        "web/admin_nav.html",
        include_str!("../templates/web/admin_nav.html"),
    ),
    (
        "web/admin_list.html",
        include_str!("../templates/web/admin_list.html"),
    ),
    (
        "web/admin_held.html",
        include_str!("../templates/web/admin_held.html"),
    ),
    (
        "web/admin_members.html",
        include_str!("../templates/web/admin_members.html"),
    ),
    (
        "web/admin_requests.html",
        include_str!("../templates/web/admin_requests.html"),
    ),
    (
        "web/unsubscribe.html",
        include_str!("../templates/web/unsubscribe.html"),
    ),
    (
        "email/confirm_subscribe.txt",
        include_str!("../templates/email/confirm_subscribe.txt"),
    ),
    (
        "email/confirm_unsubscribe.txt",
        include_str!("../templates/email/confirm_unsubscribe.txt"),
    ),
    (
        "email/signin.txt",
        include_str!("../templates/email/signin.txt"),
    ),
    (
        "email/welcome.txt",
        include_str!("../templates/email/welcome.txt"),
    ),
    (
        "email/goodbye.txt",
        include_str!("../templates/email/goodbye.txt"),
    ),
    (
        "email/help.txt",
        include_str!("../templates/email/help.txt"),
    ),
    (
        "email/bounce_disabled.txt",
        include_str!("../templates/email/bounce_disabled.txt"),
    ),
    (
        "email/bounce_owner.txt",
        include_str!("../templates/email/bounce_owner.txt"),
    ),
    (
        "email/bounce_warning.txt",
        include_str!("../templates/email/bounce_warning.txt"),
    ),
    (
        "email/policy_alert.txt",
        include_str!("../templates/email/policy_alert.txt"),
    ),
    (
        "email/delivery_fault.txt",
        include_str!("../templates/email/delivery_fault.txt"),
    ),
    (
        "email/held_notice.txt",
        include_str!("../templates/email/held_notice.txt"),
    ),
    (
        "email/post_held.txt",
        include_str!("../templates/email/post_held.txt"),
    ),
    (
        "email/post_rejected.txt",
        include_str!("../templates/email/post_rejected.txt"),
    ),
    (
        "email/inbound_failed.txt",
        include_str!("../templates/email/inbound_failed.txt"),
    ),
    (
        "email/request_refused.txt",
        include_str!("../templates/email/request_refused.txt"),
    ),
];

/// The template set of one process.
#[derive(Debug)]
pub struct Templates {
    env: minijinja::Environment<'static>,
}

/// A rendered mail text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailText {
    pub subject: String,
    pub body: String,
}

impl Templates {
    /// Builds the set; `override_dir` files win over the built-in ones.
    pub fn new(override_dir: Option<PathBuf>) -> Self {
        let mut env = minijinja::Environment::new();
        env.set_loader(move |name| {
            if let Some(dir) = &override_dir {
                // names are our own constants, but refuse anything that could leave the directory
                if !name.split('/').any(|part| part == ".." || part.is_empty()) {
                    match std::fs::read_to_string(dir.join(name)) {
                        Ok(text) => return Ok(Some(text)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(minijinja::Error::new(
                                minijinja::ErrorKind::InvalidOperation,
                                format!("cannot read template override {name}"),
                            )
                            .with_source(e));
                        }
                    }
                }
            }
            Ok(BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| text.to_string()))
        });
        env.add_filter("addr", address_breaks);
        Templates { env }
    }

    /// The name of a list's own version of a template (`lists/{list-id}/{name}` in the
    /// override directory), when the operator made one; else `name`.
    pub fn for_list(&self, list_id: &str, name: &str) -> String {
        let own = format!("lists/{list_id}/{name}");
        if self.env.get_template(&own).is_ok() {
            own
        } else {
            name.to_string()
        }
    }

    /// Renders a page or any other template.
    pub fn render(&self, name: &str, ctx: impl Serialize) -> Result<String, minijinja::Error> {
        self.env
            .get_template(name)?
            .render(minijinja::value::Serde(ctx))
    }

    /// Renders a mail template: its first line is `Subject: …`, then a blank line, then
    /// the body. The subject line is rendered on its own, so no value can push text
    /// from it into the body or the headers.
    pub fn render_mail(
        &self,
        name: &str,
        ctx: impl Serialize,
    ) -> Result<MailText, minijinja::Error> {
        let source = self.env.get_template(name)?.source().replace("\r\n", "\n");
        let (first, rest) = source.split_once('\n').unwrap_or((&source, ""));
        let subject_source = first.strip_prefix("Subject:").ok_or_else(|| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("{name} must start with `Subject:`"),
            )
        })?;
        let ctx = minijinja::value::Serde(ctx);
        let ctx = minijinja::Value::from(ctx);
        let subject = self
            .env
            .render_str(subject_source, &ctx)?
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim()
            .to_string();
        let body = self.env.render_str(rest.trim_start_matches('\n'), &ctx)?;
        Ok(MailText { subject, body })
    }
}

/// `{{ address|addr }}`: a mail address, escaped, that a narrow screen may wrap after
/// its `@` and its dots (not in the middle of a name).
fn address_breaks(value: String) -> minijinja::Value {
    let mut out = String::with_capacity(value.len() + 16);
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            '@' | '.' => {
                out.push(c);
                out.push_str("<wbr>");
            }
            c => out.push(c),
        }
    }
    minijinja::Value::from_safe_string(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_template_parses() {
        let t = Templates::new(None);
        for (name, _) in BUILTIN {
            t.env
                .get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn addresses_may_wrap_after_at_and_dots_and_stay_escaped() {
        assert_eq!(
            address_breaks("a.b@x<y>.org".into()).to_string(),
            "a.<wbr>b@<wbr>x&lt;y&gt;.<wbr>org"
        );
    }

    #[test]
    fn html_is_escaped() {
        let t = Templates::new(None);
        let page = t
            .render(
                "web/message.html",
                serde_json::json!({"title": "<script>x</script>", "message": "a & b"}),
            )
            .unwrap();
        assert!(
            page.contains("&lt;script&gt;") && !page.contains("<script>x"),
            "{page}"
        );
    }

    #[test]
    fn a_subject_never_carries_a_line_break() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("email")).unwrap();
        std::fs::write(
            dir.path().join("email/welcome.txt"),
            "Subject: Hi {{ name }}\n\nBody {{ name }}\n",
        )
        .unwrap();
        let t = Templates::new(Some(dir.path().to_path_buf()));
        let m = t
            .render_mail(
                "email/welcome.txt",
                serde_json::json!({"name": "x\r\nBcc: evil@example.org"}),
            )
            .unwrap();
        assert!(
            !m.subject.contains('\n') && !m.subject.contains('\r'),
            "{:?}",
            m.subject
        );
        assert!(m.body.starts_with("Body"));
    }

    #[test]
    fn a_file_in_the_override_directory_replaces_the_builtin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("web")).unwrap();
        std::fs::write(dir.path().join("web/message.html"), "custom {{ title }}").unwrap();
        let t = Templates::new(Some(dir.path().to_path_buf()));
        assert_eq!(
            t.render("web/message.html", serde_json::json!({"title": "t"}))
                .unwrap(),
            "custom t"
        );
        // others stay built in
        assert!(
            t.render("web/index.html", serde_json::json!({"lists": []}))
                .unwrap()
                .contains("<html")
        );
    }
}
