//! SQL names that the idioms put into their statements, checked and quoted: statements are
//! built from names because PostgreSQL cannot take a table or column as a parameter.

use super::FenceError;

/// A checked, quoted SQL name: `name` or `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ident {
    /// As given, for messages.
    pub(super) given: String,
    /// Quoted, for statements: `"schema"."name"`.
    pub(super) quoted: String,
}

impl Ident {
    /// A name of one part (a column).
    pub(super) fn column(name: &str) -> Result<Self, FenceError> {
        Self::parse(name, 1)
    }

    /// A name of one part, or two joined by a dot (a table in a schema).
    pub(super) fn table(name: &str) -> Result<Self, FenceError> {
        Self::parse(name, 2)
    }

    fn parse(name: &str, parts: usize) -> Result<Self, FenceError> {
        let invalid = || FenceError::InvalidName { name: name.to_owned() };
        let segments: Vec<&str> = name.split('.').collect();
        if segments.len() > parts || !segments.iter().all(|s| plain(s)) {
            return Err(invalid());
        }
        // Quoting keeps the name's case as written and lets keywords through; only plain
        // characters are allowed, so there is nothing to escape.
        let quoted = segments.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(".");
        Ok(Self { given: name.to_owned(), quoted })
    }
}

fn plain(segment: &str) -> bool {
    let mut bytes = segment.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && segment.len() <= 63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_plain_names_and_refuses_anything_else() {
        assert_eq!(Ident::table("fences").unwrap().quoted, r#""fences""#);
        assert_eq!(Ident::table("billing.Fences").unwrap().quoted, r#""billing"."Fences""#);
        assert_eq!(Ident::column("lock").unwrap().quoted, r#""lock""#);
        for bad in ["", "a.b", "1st", "a b", "x\"; drop table y; --", "a..b", "a.b.c", "é", &"x".repeat(64)] {
            let parts = if bad == "a.b" { 1 } else { 2 };
            assert!(Ident::parse(bad, parts).is_err(), "{bad:?} accepted");
        }
    }
}
