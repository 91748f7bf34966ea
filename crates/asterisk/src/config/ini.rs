//! The Asterisk configuration file format, as far as centralita writes
//! it: `[section]` headers, `key = value` lines, `;` comments. A writer
//! that refuses anything able to inject configuration, and a small parser
//! to read our own output back (tests, and `preview` consumers).

use super::ConfigError;

/// One `[name]` section with its entries, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// Comment lines written above the header (without `;`).
    pub comments: Vec<String>,
    pub entries: Vec<(String, String)>,
}

impl Section {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            comments: Vec::new(),
            entries: Vec::new(),
        }
    }

    pub fn comment(mut self, c: impl Into<String>) -> Self {
        self.comments.push(c.into());
        self
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.entries.push((key.to_string(), value.into()));
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Checks a section name or the part of a key we build from data: ASCII
/// letters, digits and `_ - . + @`, at most 80 bytes. Anything else could
/// close the header (`]`), open another (`[`), start a comment (`;`), a
/// directive (`#`) or a new line.
pub fn check_name(what: &'static str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadName {
            what,
            value: name.chars().take(40).collect(),
        })
    }
}

/// Checks a value: no line breaks or NUL (a new line could hold any
/// setting or `#include`). `;` is escaped when written instead.
pub fn check_value(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(ConfigError::BadValue {
            key: key.to_string(),
        });
    }
    Ok(())
}

fn escape(value: &str) -> String {
    // Asterisk's config parser takes `\;` as a literal semicolon.
    value.replace(';', "\\;")
}

/// The text of `sections` under a header comment. Fails on the first
/// section name, key or value that could inject configuration.
pub fn render(header: &[String], sections: &[Section]) -> Result<String, ConfigError> {
    let mut out = String::new();
    for h in header {
        check_value("header", h)?;
        out.push_str("; ");
        out.push_str(h);
        out.push('\n');
    }
    for s in sections {
        check_name("section name", &s.name)?;
        out.push('\n');
        for c in &s.comments {
            check_value("comment", c)?;
            out.push_str("; ");
            out.push_str(c);
            out.push('\n');
        }
        out.push('[');
        out.push_str(&s.name);
        out.push_str("]\n");
        for (k, v) in &s.entries {
            let key_ok = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b'-' | b'.'));
            if !key_ok {
                return Err(ConfigError::BadName {
                    what: "key",
                    value: k.chars().take(40).collect(),
                });
            }
            check_value(k, v)?;
            out.push_str(k);
            out.push_str(" = ");
            out.push_str(&escape(v));
            out.push('\n');
        }
    }
    Ok(out)
}

/// Reads sections back: `[name]` headers (a template suffix such as
/// `(!)` or `(tpl)` is dropped), `key = value` or `key => value` lines,
/// `;` comments (`\;` is a literal semicolon). Duplicate section names are
/// kept apart (PJSIP gives an endpoint and its aor the same name).
pub fn parse(text: &str) -> Result<Vec<Section>, ConfigError> {
    let mut out: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some((name, _)) = rest.split_once(']') else {
                return Err(ConfigError::Parse { line: i + 1 });
            };
            out.push(Section::new(name.trim()));
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(ConfigError::Parse { line: i + 1 });
        };
        let v = v.strip_prefix('>').unwrap_or(v);
        let Some(sec) = out.last_mut() else {
            return Err(ConfigError::Parse { line: i + 1 });
        };
        sec.entries
            .push((k.trim().to_string(), v.trim().replace("\\;", ";")));
    }
    Ok(out)
}

fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b';' && (i == 0 || b[i - 1] != b'\\') {
            return &line[..i];
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_parse_round_trip_with_semicolons() {
        let mut s = Section::new("trunk-1").comment("a trunk");
        s.set("type", "wizard");
        s.set("outbound_auth/password", "p;ss=word");
        let text = render(&["generated".into()], &[s.clone()]).expect("render");
        assert!(text.contains("p\\;ss=word"), "{text}");
        let back = parse(&text).expect("parse");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].name, "trunk-1");
        assert_eq!(back[0].entries, s.entries);
    }

    #[test]
    fn injection_is_refused() {
        for name in ["a]\n[b", "x;y", "[x", "a b", "", "a\nb", "#include"] {
            let e = render(&[], &[Section::new(name)]);
            assert!(
                matches!(e, Err(ConfigError::BadName { .. })),
                "{name:?}: {e:?}"
            );
        }
        let mut s = Section::new("ok");
        s.set("username", "bob\n[evil]\ntype=endpoint");
        assert!(matches!(
            render(&[], &[s]),
            Err(ConfigError::BadValue { .. })
        ));
        let mut s = Section::new("ok");
        s.set("user name", "x");
        assert!(render(&[], &[s]).is_err());
    }

    #[test]
    fn parses_the_shared_examples() {
        let text = "[webrtc-endpoint](!)\ntype = endpoint\nallow = opus,ulaw ; a comment\n[1000](webrtc-endpoint)\nauth = 1000\n";
        let s = parse(text).expect("parse");
        assert_eq!(s[0].name, "webrtc-endpoint");
        assert_eq!(s[0].get("allow"), Some("opus,ulaw"));
        assert_eq!(s[1].name, "1000");
        assert!(parse("key = value without a section\n").is_err());
    }
}
