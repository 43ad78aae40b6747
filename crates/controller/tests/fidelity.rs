//! Issue #17's round trip through the library: a tree with every kind of
//! entry and metadata (`common/tree.rs`) backed up by a [`DirectorySource`]
//! with [`write_backup`], then restored with `ibs_recovery` as root,
//! compares equal but for the FIFO, which the job reports as skipped. On a
//! local folder, a real Samba share and Azurite (Azure Blob).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/tree.rs"]
mod tree;

use std::sync::{Arc, OnceLock};

use ibs_controller::job::write_backup;
use ibs_controller::{BackupSource, CaptureProblem, DirectorySource, JobSpec};
use ibs_envelope::{Certificate, Identity, Password, keygen};
use ibs_recovery::{Choice, Recovery, RestoreOptions};
use ibs_repository::InstanceLayout;
use ibs_retention::Policy;
use ibs_storage::StorageTarget;

const T0: i64 = 1_763_769_600;

fn pair() -> &'static (Certificate, Identity) {
    static P: OnceLock<(Certificate, Identity)> = OnceLock::new();
    P.get_or_init(|| {
        let pw = Password::new("pw");
        let p = keygen::generate(&keygen::KeygenOptions::new("fidelity", T0 - 86_400), &pw).unwrap();
        (
            Certificate::parse(&p.cer).unwrap(),
            Identity::from_pkcs12(&p.pfx, &pw).unwrap(),
        )
    })
}

fn instance() -> InstanceLayout {
    InstanceLayout::new("azs.contoso.com", "local").unwrap()
}

/// Builds the tree, backs it up to `target`, restores it and compares.
async fn round_trip(target: Arc<dyn StorageTarget>) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let owners = tree::build(&src);
    let spec = JobSpec {
        target: Arc::clone(&target),
        instance: instance(),
        certificates: vec![pair().0.clone()],
        producer_version: "1.2408.0".into(),
        policy: Policy::default(),
        checks: Default::default(),
        signer: None,
    };
    let source: Arc<dyn BackupSource> = Arc::new(DirectorySource::new("state", &src));
    let summary = write_backup(&spec, &[source], T0, None).await.unwrap();
    // The FIFO, and nothing else, is reported as skipped.
    let warnings: Vec<_> = summary
        .warnings
        .kept()
        .iter()
        .map(|w| (w.path.clone(), w.problem))
        .collect();
    assert_eq!(
        warnings,
        [(src.join(tree::FIFO).display().to_string(), CaptureProblem::SpecialFile)]
    );
    // The sparse file's 256 MiB are not in the archive.
    assert!(summary.data_bytes < 1 << 20, "{summary:?}");
    let backup = Recovery::new(target, instance())
        .open_choice(&Choice::Newest, &[&pair().1])
        .await
        .unwrap();
    let out = work.path().join("out");
    let report = backup.restore_to(&out, &RestoreOptions::default()).await.unwrap();
    assert_eq!(report.hard_links, 1, "{report:?}");
    assert_eq!(report.symlinks, 3, "{report:?}");
    tree::compare(&src, &out.join("state"), owners);
    if !owners {
        ibs_storage::conformance::skip_or_fail("not root: owners (uid 1234, gid 5678) and setuid not checked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_and_metadata_survives_backup_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(Arc::new(ibs_storage::LocalTarget::new(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_and_metadata_survives_a_samba_share() {
    use ibs_storage_smb::SmbTarget;
    use ibs_storage_smb::testing::{SambaOptions, SambaServer};
    let server = SambaServer::start(SambaOptions::default()).unwrap();
    round_trip(Arc::new(SmbTarget::new(server.config()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_and_metadata_survives_azure_blob() {
    use ibs_storage_object::ObjectOptions;
    use ibs_storage_object::testing::{Azurite, AzuriteOptions};
    let azurite = Azurite::start(AzuriteOptions::default()).unwrap();
    azurite.create_container("backups").await.unwrap();
    round_trip(Arc::new(azurite.target("backups", "lab", ObjectOptions::default()))).await;
}
