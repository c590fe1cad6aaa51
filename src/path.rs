//! Validation of the znode paths users hand to recipes.
//!
//! ZooKeeper rejects bad paths too, but only after a round trip and with a terse
//! `BadArguments`; checking up front gives a typed error that says what to fix.

use crate::error::Error;

/// Checks that `path` can be a recipe directory: absolute, canonical, allowed characters,
/// not the root and not under `/zookeeper` — what every recipe's `new` checks, for checking a
/// configured path before connecting.
///
/// ```
/// assert!(zk_recipes::validate_recipe_path("/locks/nightly").is_ok());
/// let err = zk_recipes::validate_recipe_path("locks/nightly").unwrap_err();
/// assert!(err.to_string().contains("must be absolute"));
/// ```
///
/// # Errors
///
/// [`Error::InvalidPath`], saying what to fix.
pub fn validate_recipe_path(path: &str) -> Result<(), Error> {
    let invalid = |reason: &'static str| Err(Error::InvalidPath { path: path.to_owned(), reason });
    if path.is_empty() {
        return invalid("the path is empty; use an absolute path such as \"/locks/nightly\"");
    }
    if !path.starts_with('/') {
        return invalid("the path must be absolute (start with '/'), such as \"/locks/nightly\"");
    }
    if path == "/" {
        return invalid("the root cannot hold a recipe; use a path below it such as \"/locks/nightly\"");
    }
    if path.ends_with('/') {
        return invalid("the path must not end with '/'");
    }
    if path.contains('\0') {
        return invalid("the path contains a NUL character");
    }
    if !path.chars().all(allowed_char) {
        return invalid(
            "the path contains a character ZooKeeper does not allow \
             (control characters, U+007F-U+009F, U+D800-U+F8FF, U+FFF0-U+FFFF)",
        );
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return invalid("the path has an empty segment (\"//\")"),
            "." | ".." => return invalid("relative segments (\".\" or \"..\") are not allowed"),
            _ => {}
        }
    }
    if path == "/zookeeper" || path.starts_with("/zookeeper/") {
        return invalid("paths under /zookeeper are reserved for ZooKeeper itself");
    }
    Ok(())
}

/// ZooKeeper's `PathUtils.validatePath` character rules.
fn allowed_char(c: char) -> bool {
    let u = u32::from(c);
    !matches!(u, 0x0000..=0x001f | 0x007f..=0x009f | 0xd800..=0xf8ff | 0xfff0..=0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(path: &str) -> &'static str {
        match validate_recipe_path(path) {
            Err(Error::InvalidPath { reason, path: p }) => {
                assert_eq!(p, path);
                reason
            }
            other => panic!("{path:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn accepts_canonical_absolute_paths() {
        for ok in ["/a", "/locks/nightly", "/a/b/c", "/zookeeper-not-reserved", "/x/zookeeper", "/ü/日本"] {
            assert_eq!(validate_recipe_path(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_each_kind_of_bad_path_with_its_own_reason() {
        assert!(reason("").contains("empty"));
        assert!(reason("relative").contains("absolute"));
        assert!(reason("/").contains("root"));
        assert!(reason("/trailing/").contains("end with '/'"));
        assert!(reason("/a//b").contains("empty segment"));
        assert!(reason("/a\0b").contains("NUL"));
        assert!(reason("/a\u{1}b").contains("character"));
        assert!(reason("/a/./b").contains("relative segments"));
        assert!(reason("/a/..").contains("relative segments"));
        assert!(reason("/zookeeper").contains("reserved"));
        assert!(reason("/zookeeper/quota").contains("reserved"));
    }
}
