//! Uploads one local file to an SMB share the way `ibs backup` uploads its
//! archive, for timing against `smbclient put` of the same bytes
//! (benches/compare/compare.py).
//!
//! ```text
//! cargo build --release -p ibs-storage-smb --example put
//! target/release/examples/put FILE smb://HOST[:PORT]/SHARE/FOLDER/NAME --credentials-file F [--piece BYTES]
//! ```
//!
//! The same path as a backup's upload: the target opened as the controller
//! opens it (`SmbConfig::from_location` defaults: SMB 3 encryption requested,
//! 4 MiB writes, 30 s limit; wrapped in `ObservedTarget`), the folder created,
//! the object put with `CommitMode::CreateNew` (written under a temporary
//! name, renamed at commit), and the bytes handed over in pieces through a
//! queue of 8 (the backup's `UPLOAD_QUEUE`) to an upload task that hashes
//! each piece (SHA-256, as the manifest's hash is made) before it writes it.
//! A backup's pieces are its sealed frames (1 MiB of data compressed, ~256 KiB
//! for infrastructure state); `--piece` sets their size here (default 256 KiB).
//! The file is read on a thread of its own, as a backup's capture feeds the
//! queue. The credentials file is the CLI's `--credentials-file` (smbclient's
//! `username = …` / `password = …` / `domain = …` format).
//!
//! Prints the bytes, seconds and MB/s of the upload (connect to commit) and
//! the SHA-256 of what was sent.

use std::error::Error;
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ibs_storage::{CommitMode, Location, ObjectPath, ObservedTarget, StorageTarget};
use ibs_storage_smb::{SmbConfig, SmbCredentials, SmbTarget};
use sha2::{Digest, Sha256};

/// Pieces queued between the reader and the upload (the backup's `UPLOAD_QUEUE`).
const QUEUE: usize = 8;

type Failure = Box<dyn Error + Send + Sync>;

struct Args {
    file: String,
    location: String,
    credentials: String,
    piece: usize,
}

fn args() -> Result<Args, Failure> {
    let usage = "usage: put FILE smb://HOST[:PORT]/SHARE/FOLDER/NAME --credentials-file F [--piece BYTES]";
    let mut positional = Vec::new();
    let (mut credentials, mut piece) = (None, 256 << 10);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--credentials-file" => credentials = Some(it.next().ok_or(usage)?),
            "--piece" => piece = it.next().ok_or(usage)?.parse::<usize>()?.max(1),
            "-h" | "--help" => return Err(usage.into()),
            _ => positional.push(a),
        }
    }
    let [file, location] = <[String; 2]>::try_from(positional).map_err(|_| usage)?;
    Ok(Args {
        file,
        location,
        credentials: credentials.ok_or(usage)?,
        piece,
    })
}

fn main() -> Result<(), Failure> {
    let args = args()?;
    let credentials = SmbCredentials::from_auth_file(&std::fs::read_to_string(&args.credentials)?)?;
    let location = Location::parse(&args.location)?;
    let Location::Smb { path, .. } = &location else {
        return Err("the location must be an SMB one (smb://host/share/folder/name)".into());
    };
    let folder = path
        .parent()
        .ok_or("the location must name the file: smb://host/share/[folder/]name")?;
    let object = path.clone();
    // The share's root as the target's base; the folder made as a backup makes its own.
    let config = SmbConfig::from_location(&location, credentials)?.base(ObjectPath::root());
    let target: Arc<dyn StorageTarget> = Arc::new(ObservedTarget::new(Arc::new(SmbTarget::new(config)?)));
    // The CLI's runtime (few blocking threads).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(2)
        .enable_all()
        .build()?;
    let file = std::fs::File::open(&args.file)?;
    let started = Instant::now();
    let (bytes, sha) = rt.block_on(upload(target, folder, object, file, args.piece))?;
    let secs = started.elapsed().as_secs_f64();
    let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "{bytes} bytes in {secs:.3} s ({:.1} MB/s), sha256 {hex}",
        bytes as f64 / secs / 1e6
    );
    Ok(())
}

async fn upload(
    target: Arc<dyn StorageTarget>,
    folder: ObjectPath,
    object: ObjectPath,
    mut file: std::fs::File,
    piece: usize,
) -> Result<(u64, [u8; 32]), Failure> {
    target.create_dir_all(&folder).await?;
    let mut writer = target.put(&object, CommitMode::CreateNew).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        loop {
            let mut buf = Vec::with_capacity(piece);
            (&mut file).take(piece as u64).read_to_end(&mut buf)?;
            if buf.is_empty() || tx.blocking_send(Bytes::from(buf)).is_err() {
                return Ok(());
            }
        }
    });
    let (mut hasher, mut sent) = (Sha256::new(), 0u64);
    let mut failed = None;
    while let Some(bytes) = rx.recv().await {
        hasher.update(&bytes);
        sent += bytes.len() as u64;
        if let Err(e) = writer.write(bytes).await {
            failed = Some(e);
            break;
        }
    }
    drop(rx);
    let read = reader.join().map_err(|_| "the reading thread panicked")?;
    if let Some(e) = failed {
        let _ = writer.abort().await;
        return Err(e.into());
    }
    if let Err(e) = read {
        let _ = writer.abort().await;
        return Err(e.into());
    }
    writer.commit().await?;
    Ok((sent, hasher.finalize().into()))
}
