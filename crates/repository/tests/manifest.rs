//! Manifests: round trips, and clear errors on malformed input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ibs_archive::ArchiveId;
use ibs_envelope::Thumbprint;
use ibs_repository::{BackupId, Manifest};

fn sample() -> Manifest {
    Manifest {
        id: "20261122T051530Z-1a2b3c4d".parse().unwrap(),
        archive_id: ArchiveId([7; 16]),
        archive_size: 123_456,
        archive_sha256: [0x9a; 32],
        created: 1_763_788_530,
        producer_version: "1.2408.0.21".into(),
        fqdn: "azs.contoso.com".into(),
        region: "local".into(),
        recipients: vec![Thumbprint([0xAD; 20]), Thumbprint([0x01; 20])],
    }
}

#[test]
fn manifests_round_trip_and_ids_carry_their_time() {
    let m = sample();
    assert_eq!(Manifest::parse(&m.encode()).unwrap(), m);
    assert_eq!(m.id.created(), 1_795_324_530); // 2026-11-22T05:15:30Z
    let fresh = BackupId::generate(1_763_788_530).unwrap();
    assert!(fresh.as_str().starts_with("20251122T051530Z-"), "{fresh}");
    assert_eq!(fresh.as_str().parse::<BackupId>().unwrap(), fresh);
    // CRLF line endings (a manifest copied through Windows tools) still parse.
    let crlf = String::from_utf8(m.encode()).unwrap().replace('\n', "\r\n");
    assert_eq!(Manifest::parse(crlf.as_bytes()).unwrap(), m);
}

#[test]
fn control_characters_are_refused_and_never_written() {
    // Found by the manifest_parse fuzz target: a CR inside a value did not round-trip.
    let mut m = sample();
    m.fqdn = "a\rb\nc".into();
    let parsed = Manifest::parse(&m.encode()).unwrap();
    assert_eq!(parsed.fqdn, "a b c");
    let text = String::from_utf8(sample().encode())
        .unwrap()
        .replace("fqdn: azs", "fqdn: a\u{1}zs");
    let err = Manifest::parse(text.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("control character"), "{err}");
}

#[test]
fn malformed_manifests_say_what_is_wrong() {
    let good = String::from_utf8(sample().encode()).unwrap();
    for (text, says) in [
        (String::new(), "first line"),
        ("ibs-backup-manifest 2\n".to_string(), "first line"),
        (good.replace("id: 2026", "id: 1999x"), "not a backup id"),
        (
            good.replace("archive-size: 123456", "archive-size: lots"),
            "archive-size",
        ),
        (
            good.replace("archive-sha256: 9a", "archive-sha256: zz"),
            "archive-sha256",
        ),
        (good.replace("created: ", "created: soon"), "created"),
        (good.replace("recipient: ", "recipient: nothex"), "thumbprint"),
        (
            good.lines()
                .filter(|l| !l.starts_with("recipient"))
                .map(|l| format!("{l}\n"))
                .collect(),
            "no recipient",
        ),
        (good.replace("region: local\n", ""), "missing region"),
        (format!("{good}fqdn: again\n"), "appears twice"),
        (good.replace("region: local", "region local"), "key: value"),
    ] {
        let err = Manifest::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(says), "{says}: {err}");
    }
    assert!(Manifest::parse(&[0xff, 0xfe]).is_err());
    assert!(Manifest::parse(&vec![b'a'; 70_000]).is_err());
}

mod properties {
    use ibs_archive::ArchiveId;
    use ibs_envelope::Thumbprint;
    use ibs_repository::{BackupId, MANIFEST_MAGIC, Manifest, check_manifest_value};
    use proptest::prelude::*;

    /// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the times an id's
    /// four-digit year can name.
    const FIRST: i64 = -62_167_219_200;
    const LAST: i64 = 253_402_300_799;

    fn time() -> impl Strategy<Value = i64> {
        prop_oneof![FIRST..=LAST, Just(0i64), Just(FIRST), Just(LAST), -1i64..=1]
    }

    /// A value `check_manifest_value` accepts (and so a writer may record):
    /// any Unicode but control characters, with `: ` and other separators inside.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{1,40}",
            "[a-z0-9.:-]{1,20}",
            Just("a: b: c".to_owned()),
            Just("x\u{2028}y\u{a0}z".to_owned()),
            Just("v".repeat(256)),
        ]
        .prop_filter("a value a writer records", |v| check_manifest_value("field", v).is_ok())
    }

    fn manifest() -> impl Strategy<Value = Manifest> {
        (
            time(),
            any::<[u8; 16]>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<i64>(),
            (value(), value(), value()),
            proptest::collection::vec(any::<[u8; 20]>(), 1..5),
        )
            .prop_map(
                |(t, archive_id, size, sha, created, (producer, fqdn, region), recipients)| Manifest {
                    id: BackupId::generate(t).unwrap(),
                    archive_id: ArchiveId(archive_id),
                    archive_size: size,
                    archive_sha256: sha,
                    created,
                    producer_version: producer,
                    fqdn,
                    region,
                    recipients: recipients.into_iter().map(Thumbprint).collect(),
                },
            )
    }

    /// Lines a manifest might hold: known keys with odd values, unknown keys,
    /// lines without `: `, control characters, CRs, blank lines.
    fn line() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("id"),
            Just("archive-id"),
            Just("archive-size"),
            Just("archive-sha256"),
            Just("created"),
            Just("producer-version"),
            Just("fqdn"),
            Just("region"),
            Just("recipient"),
            Just("unknown-key"),
            Just(""),
        ];
        let val = prop_oneof![
            any::<String>(),
            "[0-9a-fA-F+-]{0,70}",
            Just("20261122T051530Z-1a2b3c4d".to_owned()),
            Just("19700101T000000Z-00abcdef".to_owned()),
            Just("AD35BAAAAC9E231A422478BFAE81A1AEB02A3425".to_owned()),
            Just("-9223372036854775808".to_owned()),
            Just("18446744073709551616".to_owned()),
        ];
        prop_oneof![
            (key, val).prop_map(|(k, v)| format!("{k}: {v}")),
            any::<String>(),
            Just(String::new()),
            Just("\r".to_owned()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        /// Whatever a writer may record comes back unchanged.
        #[test]
        fn a_manifest_of_recordable_values_round_trips(m in manifest()) {
            let bytes = m.encode();
            prop_assert_eq!(Manifest::parse(&bytes).unwrap(), m.clone());
            // Through Windows tools (CRLF) too.
            let crlf = String::from_utf8(bytes).unwrap().replace('\n', "\r\n");
            prop_assert_eq!(Manifest::parse(crlf.as_bytes()).unwrap(), m);
        }

        /// An id made for any time an id can name parses back to the same id
        /// and carries that time.
        #[test]
        fn ids_round_trip_and_carry_their_time(t in prop_oneof![time(), any::<i64>(), FIRST - 5..FIRST, LAST..LAST + 5]) {
            let Ok(id) = BackupId::generate(t) else {
                // Only a time a four-digit year cannot name is refused.
                prop_assert!(!(FIRST..=LAST).contains(&t), "{}", t);
                return Ok(());
            };
            let parsed: BackupId = id.as_str().parse().unwrap();
            prop_assert_eq!(&parsed, &id);
            prop_assert_eq!(id.created(), t);
        }

        /// Untrusted ids (folder names) parse or are refused, never panic; one
        /// that parses names a real time and prints as it was read.
        #[test]
        fn id_parse_never_panics(s in prop_oneof![any::<String>(), "[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}", "[0-9T:Z+-]{20,30}"]) {
            if let Ok(id) = s.parse::<BackupId>() {
                prop_assert_eq!(id.as_str(), s.as_str());
                prop_assert!((FIRST..=LAST).contains(&id.created()));
                prop_assert_eq!(BackupId::generate(id.created()).unwrap().as_str()[..17].to_owned(), s[..17].to_owned());
            }
        }

        /// Untrusted bytes give a manifest or an error, never a panic; what
        /// parses encodes to a manifest that parses to the same.
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(m) = Manifest::parse(&bytes) {
                prop_assert_eq!(Manifest::parse(&m.encode()).unwrap(), m);
            }
            let mut prefixed = format!("{MANIFEST_MAGIC}\n").into_bytes();
            prefixed.extend_from_slice(&bytes);
            if let Ok(m) = Manifest::parse(&prefixed) {
                prop_assert_eq!(Manifest::parse(&m.encode()).unwrap(), m);
            }
        }

        #[test]
        fn parse_never_panics_on_arbitrary_lines(
            lines in proptest::collection::vec(line(), 0..24),
            base in manifest(),
            keep in proptest::collection::vec(any::<bool>(), 12),
            crlf in any::<bool>(),
        ) {
            // A valid manifest with some lines dropped and odd ones mixed in.
            let good = String::from_utf8(base.encode()).unwrap();
            let mut text: Vec<String> = good
                .lines()
                .enumerate()
                .filter(|(i, _)| *i == 0 || keep.get(*i).copied().unwrap_or(true))
                .map(|(_, l)| l.to_owned())
                .collect();
            text.extend(lines);
            let text = text.join(if crlf { "\r\n" } else { "\n" });
            if let Ok(m) = Manifest::parse(text.as_bytes()) {
                prop_assert_eq!(Manifest::parse(&m.encode()).unwrap(), m);
            }
        }

        /// A value the check accepts is one line with no control character
        /// and no leading or trailing white space, at most 256 bytes.
        #[test]
        fn recordable_values_are_single_clean_lines(v in prop_oneof![any::<String>(), value()]) {
            if check_manifest_value("field", &v).is_ok() {
                prop_assert!(!v.is_empty() && v.len() <= 256);
                prop_assert!(!v.chars().any(char::is_control));
                prop_assert_eq!(v.trim(), v.as_str());
            }
        }
    }
}
