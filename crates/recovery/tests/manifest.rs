//! Manifests: round trips, and clear errors on malformed input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ibs_archive::ArchiveId;
use ibs_envelope::Thumbprint;
use ibs_recovery::layout::{BackupId, Manifest};

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
