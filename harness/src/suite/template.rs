//! Manifest templates: `{{ name }}` placeholders from a small, closed set of variables.

use std::collections::BTreeMap;

/// Every variable a manifest may use. Anything else is an error at load time.
pub const VARIABLES: &[&str] = &[
    "app_namespace",
    "ingress_namespace",
    "app_image",
    "host",
    "injection_label_key",
    "injection_label_value",
    "pki_ca_cert",
    "pki_server_cert",
    "pki_server_key",
];

/// Variables that carry private key material: a manifest using one is written 0600.
pub const SECRET_VARIABLES: &[&str] = &["pki_server_key"];

/// Variables that exist only once the run's PKI has been issued.
pub const PKI_VARIABLES: &[&str] = &["pki_ca_cert", "pki_server_cert", "pki_server_key"];

/// A placeholder found in a template, with its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub name: String,
    pub line: u64,
    pub column: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Finds every placeholder, refusing unknown names and unclosed braces.
pub fn placeholders(template: &str) -> Result<Vec<Placeholder>, TemplateError> {
    let mut found = Vec::new();
    for (index, line) in template.lines().enumerate() {
        let mut rest = line;
        let mut offset = 0;
        while let Some(start) = rest.find("{{") {
            let column = (offset + start + 1) as u64;
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(TemplateError {
                    line: index as u64 + 1,
                    column,
                    message: "`{{` without a closing `}}` on the same line".into(),
                });
            };
            let name = after[..end].trim();
            if !VARIABLES.contains(&name) {
                return Err(TemplateError {
                    line: index as u64 + 1,
                    column,
                    message: format!(
                        "unknown variable `{name}` (known: {})",
                        VARIABLES.join(", ")
                    ),
                });
            }
            found.push(Placeholder {
                name: name.to_string(),
                line: index as u64 + 1,
                column,
            });
            let consumed = start + 2 + end + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
    }
    Ok(found)
}

/// Values for the variables of one run.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: BTreeMap<&'static str, String>,
}

impl Variables {
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        debug_assert!(
            VARIABLES.contains(&name),
            "{name} is not a template variable"
        );
        self.values.insert(name, value.into());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

/// A rendered manifest and whether it holds private key material.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub text: String,
    pub holds_secret: bool,
}

pub fn render(template: &str, variables: &Variables) -> Result<Rendered, TemplateError> {
    let found = placeholders(template)?;
    let mut out = String::with_capacity(template.len());
    let mut holds_secret = false;
    for (index, line) in template.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            // placeholders() already proved every `{{` on this line is closed and known.
            let end = after.find("}}").unwrap_or(after.len());
            let name = after[..end].trim();
            let value = variables.get(name).ok_or_else(|| TemplateError {
                line: index as u64 + 1,
                column: (line.len() - rest.len() + start + 1) as u64,
                message: format!("variable `{name}` has no value in this run yet"),
            })?;
            holds_secret |= SECRET_VARIABLES.contains(&name);
            out.push_str(&rest[..start]);
            out.push_str(value);
            rest = &after[(end + 2).min(after.len())..];
        }
        out.push_str(rest);
    }
    debug_assert!(found.iter().all(|p| variables.get(&p.name).is_some()));
    Ok(Rendered {
        text: out,
        holds_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        let mut v = Variables::default();
        v.set("app_namespace", "sentences");
        v.set("pki_server_key", "S3CR3T");
        v
    }

    #[test]
    fn renders_known_variables() {
        let r = render("ns: {{ app_namespace }}\nx: {{app_namespace}}!\n", &vars()).unwrap();
        assert_eq!(r.text, "ns: sentences\nx: sentences!\n");
        assert!(!r.holds_secret);
    }

    #[test]
    fn marks_manifests_holding_keys() {
        let r = render("key: {{ pki_server_key }}", &vars()).unwrap();
        assert_eq!(r.text, "key: S3CR3T");
        assert!(r.holds_secret);
    }

    #[test]
    fn unknown_variable_names_line_and_column() {
        let err = placeholders("a: 1\nb: x{{ nope }}\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 5));
        assert!(
            err.message.contains("unknown variable `nope`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unclosed_placeholder_is_an_error() {
        let err = placeholders("a: {{ app_namespace\n").unwrap_err();
        assert_eq!((err.line, err.column), (1, 4));
    }

    #[test]
    fn variable_without_value_is_an_error() {
        let err = render("a: {{ app_image }}", &vars()).unwrap_err();
        assert!(err.message.contains("app_image"), "{}", err.message);
    }
}
