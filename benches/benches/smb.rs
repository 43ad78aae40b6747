//! SMB throughput against a real Samba server on loopback (encrypted session),
//! beside `smbclient put` / `get` of the same file on the same server with
//! encryption forced (`--client-protection=encrypt`): the ratio is the figure
//! to watch. Needs `smbd` and `smbclient` (scripts/install-deps.sh) and root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ibs_storage::{CommitMode, ObjectPath, ReadTarget, StorageTarget};
use ibs_storage_smb::SmbTarget;
use ibs_storage_smb::testing::{SambaOptions, SambaServer};

const SIZE: usize = 256 << 20;
const CHUNK: usize = 4 << 20;

fn smbclient(server: &SambaServer, command: &str, cwd: &std::path::Path) {
    let creds = server.credentials();
    let auth = server.dir().join("bench.auth");
    std::fs::write(
        &auth,
        format!("username = {}\npassword = ibs-test-Passw0rd\n", creds.account()),
    )
    .unwrap();
    let status = Command::new("smbclient")
        .arg("//127.0.0.1/backup")
        .args(["-p", &server.port().to_string(), "--client-protection=encrypt", "-A"])
        .arg(&auth)
        .args(["-c", command])
        .current_dir(cwd)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "smbclient {command}");
}

fn smb(c: &mut Criterion) {
    let server = SambaServer::start(SambaOptions::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = SmbTarget::new(server.config().timeout(std::time::Duration::from_secs(60))).unwrap();
    let data: Vec<u8> = (0..SIZE as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("src.bin"), &data).unwrap();
    let path = ObjectPath::parse("ibs.bin").unwrap();

    let mut group = c.benchmark_group("smb_256MiB_encrypted");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.bench_function("ibs_put", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut w = target.put(&path, CommitMode::Overwrite).await.unwrap();
                for piece in data.chunks(CHUNK) {
                    w.write(Bytes::copy_from_slice(piece)).await.unwrap();
                }
                w.commit().await.unwrap();
            })
        })
    });
    group.bench_function("smbclient_put", |b| {
        b.iter(|| smbclient(&server, "put src.bin peer.bin", local.path()))
    });
    group.bench_function("ibs_get", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut at = 0u64;
                while at < SIZE as u64 {
                    let end = (at + 8 * CHUNK as u64).min(SIZE as u64);
                    target.read_range(&path, at..end).await.unwrap();
                    at = end;
                }
            })
        })
    });
    group.bench_function("smbclient_get", |b| {
        b.iter(|| smbclient(&server, "get peer.bin got.bin", local.path()))
    });
    group.finish();
}

criterion_group!(benches, smb);
criterion_main!(benches);
