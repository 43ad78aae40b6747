//! The name rules a reader relies on before it uses a name on a file system
//! (FORMAT.md §7; `check_source_name`, `check_entry_path`): whatever string
//! they accept is safe to join under a restore folder, and every string the
//! rules allow is accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Component, Path};

use ibs_archive::fuzzing::format::{MAX_PATH_LEN, MAX_SOURCE_LEN, check_entry_path, check_source_name};
use proptest::prelude::*;

/// Strings made of the pieces that matter to the rules, and anything else.
fn tricky() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/"),
        Just("//"),
        Just("."),
        Just(".."),
        Just("\\"),
        Just("\0"),
        Just("\n"),
        Just("\u{7f}"),
        Just("\u{85}"),
        Just("\u{9f}"),
        Just("\u{a0}"),
        Just("\u{2028}"),
        Just("\u{202e}"),
        Just("é"),
        Just("😀"),
        Just(" "),
        Just("a"),
        Just("C:"),
        Just("~"),
    ];
    prop_oneof![
        proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat()),
        any::<String>(),
        ".{0,5000}",
    ]
}

fn is_control(c: char) -> bool {
    ('\u{0}'..='\u{1f}').contains(&c) || ('\u{7f}'..='\u{9f}').contains(&c)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// An accepted path is 1–4096 bytes with no empty, `.` or `..` segment and
    /// no backslash, NUL or control character; joined under a restore folder
    /// (and its source's folder) it stays inside, one folder per segment.
    #[test]
    fn an_accepted_path_stays_inside_the_restore_folder(path in tricky()) {
        if check_entry_path(&path).is_err() {
            return Ok(());
        }
        prop_assert!(!path.is_empty() && path.len() <= MAX_PATH_LEN);
        prop_assert!(!path.chars().any(|c| c == '\\' || is_control(c)), "{:?}", path);
        let segments: Vec<&str> = path.split('/').collect();
        prop_assert!(segments.iter().all(|s| !s.is_empty() && *s != "." && *s != ".."), "{:?}", path);
        let base = Path::new("/restore/here");
        let joined = base.join("identity").join(&path);
        prop_assert!(joined.starts_with(base));
        let below: Vec<Component> = joined.strip_prefix(base).unwrap().components().collect();
        prop_assert_eq!(below.len(), 1 + segments.len(), "{:?}", path);
        prop_assert!(below.iter().all(|c| matches!(c, Component::Normal(_))), "{:?}", path);
    }

    /// An accepted source name is 1–64 ASCII letters, digits, `.`, `_`, `-`,
    /// not `.` or `..`: one plain folder name.
    #[test]
    fn an_accepted_source_name_is_one_plain_folder(name in prop_oneof![tricky(), "[A-Za-z0-9._/-]{0,70}"]) {
        if check_source_name(&name).is_err() {
            return Ok(());
        }
        prop_assert!((1..=MAX_SOURCE_LEN).contains(&name.len()));
        prop_assert!(name != "." && name != "..");
        prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "{:?}", name);
        let below: Vec<Component> = Path::new(&name).components().collect();
        prop_assert!(matches!(below.as_slice(), [Component::Normal(_)]), "{:?}", name);
    }

    /// Every path the rules allow is accepted: segments of any Unicode but
    /// '/', '\\' and control characters, not `.` or `..`, up to 4096 bytes.
    #[test]
    fn every_path_the_rules_allow_is_accepted(
        segments in proptest::collection::vec("[^/\\\\\\p{Cc}]{1,40}", 1..30),
    ) {
        let path = segments.join("/");
        let allowed = path.len() <= MAX_PATH_LEN && segments.iter().all(|s| s != "." && s != "..");
        prop_assert_eq!(check_entry_path(&path).is_ok(), allowed, "{:?}", path);
    }

    /// Every source name the rules allow is accepted.
    #[test]
    fn every_source_name_the_rules_allow_is_accepted(name in "[A-Za-z0-9._-]{1,64}") {
        prop_assert_eq!(check_source_name(&name).is_ok(), name != "." && name != "..");
    }
}
