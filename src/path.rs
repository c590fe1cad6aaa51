//! Validation of the znode paths users hand to recipes (and of a connect string's chroot).
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
    let reason = match path {
        "/" => Some("the root cannot hold a recipe; use a path below it such as \"/locks/nightly\""),
        _ => path_problem(path).or_else(|| {
            (path == "/zookeeper" || path.starts_with("/zookeeper/"))
                .then_some("paths under /zookeeper are reserved for ZooKeeper itself")
        }),
    };
    match reason {
        Some(reason) => Err(Error::InvalidPath { path: path.to_owned(), reason }),
        None => Ok(()),
    }
}

/// What ZooKeeper's `PathUtils.validatePath` (which the server and the Java client apply to
/// every path, and the Java client to a connect string's chroot) would reject `path` for, if
/// anything. The root is a valid path here.
pub(crate) fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("the path is empty; use an absolute path such as \"/locks/nightly\"");
    }
    if !path.starts_with('/') {
        return Some("the path must be absolute (start with '/'), such as \"/locks/nightly\"");
    }
    if path == "/" {
        return None;
    }
    if path.ends_with('/') {
        return Some("the path must not end with '/'");
    }
    if path.contains('\0') {
        return Some("the path contains a NUL character");
    }
    if let Some(c) = path.chars().find(|&c| !allowed_char(c)) {
        return Some(if u32::from(c) > 0xffff {
            // Java strings are UTF-16: such a character is a surrogate pair, U+D800-U+DFFF.
            "the path contains a character above U+FFFF (such as an emoji or a mathematical \
             letter); ZooKeeper sees it as two UTF-16 surrogates (U+D800-U+DFFF), which it \
             does not allow"
        } else {
            "the path contains a character ZooKeeper does not allow \
             (control characters, U+007F-U+009F, U+D800-U+F8FF, U+FFF0-U+FFFF)"
        });
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return Some("the path has an empty segment (\"//\")"),
            "." | ".." => return Some("relative segments (\".\" or \"..\") are not allowed"),
            _ => {}
        }
    }
    None
}

/// ZooKeeper's `PathUtils.validatePath` character rules, for one `char` (a Unicode scalar
/// value) where Java checks UTF-16 code units: a character above U+FFFF is two code units in
/// U+D800-U+DFFF, inside the rejected U+D800-U+F8FF, so it is rejected too.
fn allowed_char(c: char) -> bool {
    let u = u32::from(c);
    !matches!(u, 0x0000..=0x001f | 0x007f..=0x009f | 0xd800..=0xf8ff | 0xfff0..)
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
        for ok in [
            "/a",
            "/locks/nightly",
            "/a/b/c",
            "/zookeeper-not-reserved",
            "/x/zookeeper",
            "/ü/日本",
            "/a/.../b",
            "/.hidden",
            "/a..b",
            // The edges of the ranges ZooKeeper rejects.
            "/\u{20}\u{7e}\u{a0}\u{d7ff}\u{f900}\u{ffef}",
        ] {
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
        assert!(reason("/.").contains("relative segments"));
        assert!(reason("/zookeeper").contains("reserved"));
        assert!(reason("/zookeeper/quota").contains("reserved"));
    }

    #[test]
    fn rejects_every_range_zookeeper_rejects() {
        for c in ['\u{1}', '\u{1f}', '\u{7f}', '\u{9f}', '\u{e000}', '\u{f8ff}', '\u{fff0}', '\u{ffff}'] {
            assert!(reason(&format!("/a{c}b")).contains("does not allow"), "{:#x}", u32::from(c));
        }
    }

    #[test]
    fn rejects_characters_above_u_ffff_saying_why() {
        for c in ['😀', '𝔸', '\u{10000}', '\u{10ffff}'] {
            let why = reason(&format!("/locks/{c}"));
            assert!(why.contains("above U+FFFF") && why.contains("surrogates"), "{:#x}: {why}", u32::from(c));
        }
    }

    #[test]
    fn the_root_is_a_zookeeper_path_but_not_a_recipe_path() {
        assert_eq!(path_problem("/"), None);
        assert_eq!(path_problem("/zookeeper"), None);
        assert!(path_problem("/chroot/").is_some());
    }
}
