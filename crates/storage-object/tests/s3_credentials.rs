//! An `s3://` location with no credentials in the environment fails at once,
//! naming the variables, instead of asking the cloud's instance-metadata
//! endpoint. The environment is real: the test runs itself again as a child
//! process with every AWS credential variable removed (changing this
//! process's environment would race the other tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

use std::process::Command;
use std::time::{Duration, Instant};

use ibs_storage::{ErrorKind, Location};
use ibs_storage_object::{ObjectOptions, ObjectTarget};

const CHILD: &str = "IBS_TEST_S3_CREDENTIALS_CHILD";

/// Every variable through which `object_store` could find credentials.
const CREDENTIAL_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_SKIP_SIGNATURE",
    "IBS_S3_INSTANCE_CREDENTIALS",
];

/// Runs `test` of this binary in a child with the credential variables
/// removed and `extra` set; returns whether it passed, and its output.
fn run_child(test: &str, extra: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1");
    for var in CREDENTIAL_VARS {
        cmd.env_remove(var);
    }
    // Were the metadata endpoint asked after all, it would be a closed port
    // on loopback, never the cloud's.
    cmd.env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9");
    cmd.envs(extra.iter().copied());
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains("1 passed"), text)
}

fn open(location: &str) -> ibs_storage::Result<ObjectTarget> {
    ObjectTarget::from_location(&Location::parse(location).unwrap(), ObjectOptions::default())
}

#[test]
fn s3_without_credentials_in_the_environment_fails_fast_naming_the_variables() {
    if std::env::var_os(CHILD).is_none() {
        let (ok, out) = run_child(
            "s3_without_credentials_in_the_environment_fails_fast_naming_the_variables",
            &[],
        );
        assert!(ok, "{out}");
        return;
    }
    let started = Instant::now();
    let err = open("s3://ibs-backups/lab").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(err.kind(), ErrorKind::Authentication, "{err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "IBS_S3_INSTANCE_CREDENTIALS",
    ] {
        assert!(text.contains(var), "names {var}: {text}");
    }
    assert!(text.contains("s3://ibs-backups/lab"), "{text}");
    assert!(
        err.alert().remediation.contains("AWS_ACCESS_KEY_ID"),
        "{}",
        err.alert().remediation
    );
}

#[test]
fn instance_credentials_are_used_only_when_asked_for() {
    if std::env::var_os(CHILD).is_none() {
        for extra in [
            &[("IBS_S3_INSTANCE_CREDENTIALS", "1")][..],
            &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x")],
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "not-a-real-secret"),
            ],
        ] {
            let (ok, out) = run_child("instance_credentials_are_used_only_when_asked_for", extra);
            assert!(ok, "{extra:?}: {out}");
        }
        return;
    }
    // Asked for (by the variable the parent set, or keys given): the target
    // is built, and nothing is requested until it is used.
    open("s3://ibs-backups/lab").unwrap();
    // The option asks for it too, whatever the environment.
    ObjectTarget::from_location(
        &Location::parse("s3://ibs-backups/lab").unwrap(),
        ObjectOptions::default().instance_credentials(true),
    )
    .unwrap();
}
