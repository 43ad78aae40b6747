//! Locations are untrusted text (a command line, a settings file): parsing
//! never panics, what it accepts prints as text that parses back to the same
//! location, and credentials in it are refused without being repeated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use ibs_storage::{Location, ObjectPath, ObjectProvider};
use proptest::prelude::*;

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9._-]{0,20}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        Just("::1".to_owned()),
        Just("fe80::1:2".to_owned()),
        "[0-9a-f]{1,4}(:[0-9a-f]{1,4}){7}",
    ]
}

/// A share name the parser accepts: no `"*+,:;<=>?[]|`, '/', '\\', '@' or
/// control character, at most 80 bytes.
fn share() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9$._ -]{1,20}", "[^\"*+,:;<=>?\\[\\]|/\\\\@\\p{Cc}]{1,20}"]
}

/// An object-path segment: no '/', '\\' or control character, not `.` or `..`.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9 @._-]{1,12}",
        "[^/\\\\\\p{Cc}]{1,12}",
        Just(" x ".to_owned())
    ]
    .prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn object_path() -> impl Strategy<Value = ObjectPath> {
    proptest::collection::vec(segment(), 0..4).prop_map(|segments| {
        let mut p = ObjectPath::root();
        for s in segments {
            p = p.child(&s).unwrap();
        }
        p
    })
}

fn container(provider: ObjectProvider) -> impl Strategy<Value = String> {
    match provider {
        ObjectProvider::Azure => "[a-z0-9][a-z0-9-]{1,20}[a-z0-9]",
        ObjectProvider::S3 => "[a-z0-9][a-z0-9.-]{1,20}[a-z0-9]",
    }
}

/// A location as a value, as `Location::parse` could return it.
fn location() -> impl Strategy<Value = Location> {
    prop_oneof![
        (host(), proptest::option::of(1u16..), share(), object_path()).prop_map(|(host, port, share, path)| {
            Location::Smb {
                host,
                port,
                share,
                path,
            }
        }),
        (container(ObjectProvider::Azure), object_path()).prop_map(|(container, path)| Location::Object {
            provider: ObjectProvider::Azure,
            container,
            path,
        }),
        (container(ObjectProvider::S3), object_path()).prop_map(|(container, path)| Location::Object {
            provider: ObjectProvider::S3,
            container,
            path,
        }),
    ]
}

/// Text in every syntax a location is written in (not ending in white
/// space, which is trimmed as padding around the text).
fn location_text() -> impl Strategy<Value = String> {
    location_text_padded().prop_filter("no trailing white space", |t| !t.ends_with(char::is_whitespace))
}

fn location_text_padded() -> impl Strategy<Value = String> {
    let sep = prop_oneof![Just("\\"), Just("/")];
    prop_oneof![
        // A UNC path names no port, so no IPv6 address either.
        (
            host().prop_filter("no ':'", |h| !h.contains(':')),
            share(),
            proptest::collection::vec(segment(), 0..3),
            sep.clone()
        )
            .prop_map(|(h, s, p, sep)| {
                let mut t = if sep == "\\" {
                    format!(r"\\{h}\{s}")
                } else {
                    format!("//{h}/{s}")
                };
                for seg in p {
                    t.push_str(sep);
                    t.push_str(&seg);
                }
                t
            }),
        (
            host(),
            proptest::option::of(1u16..),
            share(),
            proptest::collection::vec(segment(), 0..3),
            any::<bool>()
        )
            .prop_map(|(h, port, s, p, slash)| {
                let h = if h.contains(':') { format!("[{h}]") } else { h };
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                let mut t = format!("smb://{h}{port}/{s}");
                for seg in p {
                    t.push('/');
                    t.push_str(&seg);
                }
                if slash {
                    t.push('/');
                }
                t
            }),
        (
            prop_oneof![Just("az"), Just("s3"), Just("AZ"), Just("S3")],
            "[a-z0-9.-]{3,12}",
            proptest::collection::vec(segment(), 0..3)
        )
            .prop_map(|(scheme, c, p)| {
                let mut t = format!("{scheme}://{c}");
                for seg in p {
                    t.push('/');
                    t.push_str(&seg);
                }
                t
            }),
    ]
}

/// Strings made of the pieces the parser looks at, and anything else.
fn tricky() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\\\\"),
        Just("//"),
        Just("smb://"),
        Just("az://"),
        Just("s3://"),
        Just("://"),
        Just("["),
        Just("]"),
        Just(":"),
        Just("@"),
        Just("/"),
        Just("\\"),
        Just(" "),
        Just("."),
        Just(".."),
        Just("65536"),
        Just("0"),
        Just("é"),
        Just("host"),
        Just("\0"),
    ];
    prop_oneof![
        proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat()),
        any::<String>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Any location prints as text that parses back to it.
    #[test]
    fn a_location_prints_as_text_that_parses_back(loc in location()) {
        let text = loc.to_string();
        let back = Location::parse(&text);
        prop_assert!(back.is_ok(), "{:?} printed as {:?}: {}", loc, text, back.unwrap_err());
        prop_assert_eq!(back.unwrap(), loc, "{:?}", text);
    }

    /// Text in any of the syntaxes parses, and prints as text that parses to
    /// the same location.
    #[test]
    fn parse_then_display_round_trips(text in location_text()) {
        let loc = Location::parse(&text);
        let loc = match loc {
            Ok(loc) => loc,
            // Containers and buckets have stricter rules than the generator.
            Err(e) if text.to_ascii_lowercase().starts_with("az://") || text.to_ascii_lowercase().starts_with("s3://") => {
                prop_assert!(e.to_string().contains("not a valid"), "{:?}: {}", text, e);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("{text:?}: {e}"))),
        };
        let shown = loc.to_string();
        let again = Location::parse(&shown);
        prop_assert!(again.is_ok(), "{:?} -> {:?}: {}", text, shown, again.unwrap_err());
        prop_assert_eq!(again.unwrap(), loc, "{:?} -> {:?}", text, shown);
    }

    /// Untrusted text gives a location or an error, never a panic; what parses
    /// prints as text that parses to the same.
    #[test]
    fn parse_never_panics(text in tricky()) {
        if let Ok(loc) = Location::parse(&text)
            && !matches!(loc, Location::Local(_))
        {
            let shown = loc.to_string();
            prop_assert_eq!(Location::parse(&shown).ok(), Some(loc), "{:?} -> {:?}", text, shown);
        }
    }

    /// `user:password@` (or `user@`) in a location is refused, and neither
    /// the password nor the user appears in the error's message or `Debug`.
    #[test]
    fn credentials_are_refused_and_never_echoed(
        user in "U[a-z]{2,8}",
        password in "P[A-Za-z0-9!#$%^&*()_+=;,.?~@/-]{5,16}",
        with_password in any::<bool>(),
        form in 0usize..6,
        host in "[a-z]{3,8}",
        port in proptest::option::of(1u16..),
        lead in prop_oneof![Just(""), Just("  ")],
    ) {
        let userinfo = if with_password { format!("{user}:{password}") } else { user.clone() };
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let text = match form {
            0 => format!("smb://{userinfo}@{host}{port}/share/x"),
            1 => format!(r"\\{userinfo}@{host}\share\x"),
            2 => format!("//{userinfo}@{host}/share"),
            3 => format!("az://{userinfo}@{host}/prefix"),
            4 => format!("s3://{userinfo}@{host}"),
            _ => format!("SMB://CONTOSO;{userinfo}@{host}{port}/share"),
        };
        let text = format!("{lead}{text}");
        let err = Location::parse(&text).expect_err(&text);
        let (msg, debug) = (err.to_string(), format!("{err:?}"));
        prop_assert!(msg.contains("cannot carry credentials"), "{:?}: {}", text, msg);
        for secret in [&password, &user] {
            prop_assert!(!msg.contains(secret.as_str()) && !debug.contains(secret.as_str()), "{:?}: {} / {}", text, msg, debug);
        }
        // Not even a piece of the password between its '/' or '@'.
        for piece in password.split(['/', '@']).filter(|p| p.len() >= 4) {
            prop_assert!(!msg.contains(piece) && !debug.contains(piece), "{:?}: {:?} in {}", text, piece, msg);
        }
    }
}
