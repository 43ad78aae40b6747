//! What an operator is told about the share's name itself: a file server
//! name that does not resolve, and credentials that are missing. Needs no
//! Samba server: the name is looked up for real, and `.invalid` never
//! resolves (RFC 2606).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ibs_storage::{ErrorKind, Location, ObjectPath, ReadTarget, StorageTarget};
use ibs_storage_smb::{SmbConfig, SmbCredentials, SmbTarget};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_that_does_not_resolve_is_a_path_failure_naming_the_host() {
    let location = Location::parse("smb://no-such-host.invalid/share/folder").unwrap();
    let config = SmbConfig::from_location(&location, SmbCredentials::new("", "svc", "S3cret-pw")).unwrap();
    let target = SmbTarget::new(config).unwrap();
    let started = std::time::Instant::now();
    for err in [
        target.list(&ObjectPath::root()).await.err().unwrap(),
        target.head(&ObjectPath::parse("a").unwrap()).await.unwrap_err(),
        target
            .create_dir_all(&ObjectPath::parse("b").unwrap())
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::PathNotFound, "{err}");
        let text = err.to_string();
        assert!(text.contains("no-such-host.invalid"), "names the host: {text}");
        assert!(text.contains("cannot be resolved"), "{text}");
        assert!(!text.contains("Invalid argument"), "{text}");
        assert!(
            !text.contains("S3cret-pw") && !format!("{err:?}").contains("S3cret-pw"),
            "{text}"
        );
        assert_eq!(err.alert().title, ErrorKind::PathNotFound.alert().title);
        assert!(err.alert().remediation.contains("name"), "{}", err.alert().remediation);
    }
    assert!(started.elapsed().as_secs() < 30, "fails fast: {:?}", started.elapsed());
}

#[test]
fn the_credentials_rule_needs_user_and_password_and_not_a_domain() {
    let rule = ibs_storage_smb::CREDENTIALS_NEEDED;
    assert!(rule.contains("a user name and a password"), "{rule}");
    assert!(rule.contains("a domain is optional"), "{rule}");
    assert!(!rule.contains("domain, user and password"), "{rule}");
    // The rule as the parsers apply it: no domain is fine, no password is not.
    let c = SmbCredentials::from_auth_file("username = svc\npassword = pw\n").unwrap();
    assert_eq!(c.account(), "svc");
    let err = SmbCredentials::from_auth_file("username = svc\ndomain = CONTOSO\n").unwrap_err();
    assert!(err.to_string().contains("password"), "{err}");
}
