//! The keyless catalogue of a whole backup folder (`ibs_repository::catalogue`,
//! and `catalogue_backup` per backup) over an in-memory target whose layout
//! and contents come from the input.
//!
//! Input: a count byte, then per object `place folder name flags kind …`:
//! where it goes (the instance's `MASBackup`, a sibling OEM folder, another
//! instance), a folder (backup ids, near-ids, foreign and nested names), a
//! name (`backup.ibs`, `backup.manifest`, partial names, foreign names, or
//! one spelled out by the input), whether it stays an uncommitted upload,
//! and its contents: raw bytes, a real archive (built once per process) as
//! is or mutated, a manifest with fields taken from the input, as is or
//! mutated, or nothing. See `Input` and `Object::read` for the byte layout.
//!
//! Properties: never panics and never fails (the target cannot); every
//! object under `MASBackup` is part of exactly one backup or listed as
//! unrecognised, nothing outside is either; no backup or unrecognised path
//! listed twice; backups ordered by (time, id); a backup's size is the sum of
//! its objects'; a complete backup has a manifest naming it whose
//! archive-size equals its committed archive's size and whose archive id
//! equals the archive's; an incomplete one has no committed manifest;
//! `catalogue_backup` of an id agrees with the catalogue.
#![no_main]

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ibs_archive::{ArchiveId, ArchiveWriter, EntryMeta, WriterOptions};
use ibs_envelope::{Certificate, Thumbprint};
use ibs_repository::InstanceLayout;
use ibs_repository::{ARCHIVE_NAME, BackupId, MANIFEST_NAME, Manifest, is_our_name};
use ibs_repository::{BackupState, catalogue, catalogue_backup};
use ibs_storage::{CommitMode, MemoryTarget, ObjectPath, ReadTarget, ReadTargetExt, StorageTarget, StorageTargetExt};
use libfuzzer_sys::fuzz_target;

const FQDN: &str = "azs.contoso.com";
const REGION: &str = "local";
const PRODUCER: &str = "1.2408.0.21";
const CREATED: i64 = 1_763_788_530;

/// Folders, relative to the place. The first is the seeds' backup.
const FOLDERS: &[&str] = &[
    "20251122T051530Z-1a2b3c4d",
    "20251122T051530Z-1a2b3c4e",
    "20251122T051531Z-00000000",
    "20251122T051529Z-ff000001",
    "",
    "not-a-backup",
    "20251122T051530Z-1A2B3C4D",
    "20251322T051530Z-1a2b3c4d",
    "20251122T051530Z-1a2b3c4d/nested",
    "20251122T051530Z-1a2b3c4d/20251122T051530Z-1a2b3c4e",
    "19700101T000000Z-00000000",
    "20251122T051530Z-1a2b3c4",
    "backup.ibs",
];

const NAMES: &[&str] = &[
    ARCHIVE_NAME,
    MANIFEST_NAME,
    ".backup.ibs.ibs-partial-0123456789abcdef",
    ".backup.manifest.ibs-partial-0123456789abcdef",
    ".backup.ibs.ibs-partial-0123",
    ".backup.manifest.ibs-partial-0123456789ABCDEG",
    "backup.IBS",
    "notes.txt",
    "backup.ibs.bak",
    "MASBackup",
    "20251122T051530Z-1a2b3c4d",
    ".ibs-partial-0123456789abcdef",
];

/// Ids a manifest may name besides its folder's.
const IDS: &[&str] = &[
    "20251122T051530Z-1a2b3c4d",
    "20251122T051530Z-1a2b3c4e",
    "20991231T235959Z-ffffffff",
];

struct Fixture {
    archive: Vec<u8>,
    archive_id: ArchiveId,
    recipient: Thumbprint,
    other: Thumbprint,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let cert = Certificate::parse(include_bytes!("../../crates/archive/tests/data/recipient.cer"))
            .expect("test certificate");
        let other =
            Certificate::parse(include_bytes!("../../crates/archive/tests/data/other.cer")).expect("test certificate");
        let archive_id = ArchiveId([0x5a; 16]);
        let options = WriterOptions::default()
            .producer_version(PRODUCER)
            .created(CREATED)
            .archive_id(archive_id)
            .threads(1);
        let mut w = ArchiveWriter::new(Vec::new(), &[&cert], options).expect("writer");
        w.add_entry(EntryMeta::new("rbac", "assignments.json"), &b"[]"[..])
            .expect("entry");
        let (archive, _) = w.finish().expect("archive");
        Fixture {
            archive,
            archive_id,
            recipient: cert.thumbprint(),
            other: other.thumbprint(),
        }
    })
}

/// The input, read front to back; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.iter_mut().for_each(|x| *x = self.byte());
        u64::from_le_bytes(b)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }

    fn text(&mut self) -> String {
        let n = usize::from(self.byte());
        String::from_utf8_lossy(self.bytes(n)).into_owned()
    }

    /// Up to four edits of `data`: flip a byte, truncate, or insert one.
    fn mutate(&mut self, data: &mut Vec<u8>) {
        for _ in 0..=self.byte() % 4 {
            let (at, op, value) = (usize::from(self.u16()), self.byte(), self.byte());
            match op % 3 {
                0 if !data.is_empty() => {
                    let i = at % data.len();
                    data[i] ^= value | 1;
                }
                1 => data.truncate(at % (data.len() + 1)),
                _ => data.insert(at % (data.len() + 1), value),
            }
        }
    }

    fn manifest(&mut self, folder_id: Option<&BackupId>) -> Manifest {
        let f = fixture();
        let flags = self.byte();
        let own = |s: &str| s.parse::<BackupId>().expect("a valid id");
        let id = match (flags & 1, folder_id) {
            (0, Some(id)) => id.clone(),
            (0, None) => own(IDS[0]),
            _ => own(self.pick(IDS)),
        };
        let mut m = Manifest {
            created: id.created(),
            id,
            archive_id: f.archive_id,
            archive_size: f.archive.len() as u64,
            archive_sha256: [0; 32],
            producer_version: PRODUCER.into(),
            fqdn: FQDN.into(),
            region: REGION.into(),
            recipients: vec![f.recipient],
        };
        if flags & 2 != 0 {
            // Mostly near the real size, sometimes anything.
            m.archive_size = match self.byte() as i8 {
                0 => self.u64(),
                d => m.archive_size.wrapping_add_signed(i64::from(d)),
            };
        }
        if flags & 4 != 0 {
            let b = self.bytes(16);
            m.archive_id.0 = [0; 16];
            m.archive_id.0[..b.len()].copy_from_slice(b);
        }
        if flags & 8 != 0 {
            m.producer_version = self.text();
        }
        if flags & 16 != 0 {
            m.recipients = match self.byte() % 3 {
                0 => vec![f.other],
                1 => vec![f.recipient, f.other],
                _ => vec![f.other, f.recipient],
            };
        }
        if flags & 32 != 0 {
            m.created = self.u64() as i64;
        }
        m
    }
}

/// One object to put on the target.
struct Object {
    path: ObjectPath,
    uncommitted: bool,
    data: Vec<u8>,
}

impl Object {
    fn read(input: &mut Input, instance: &InstanceLayout) -> Option<Object> {
        let place = match input.byte() % 8 {
            0..=4 => instance.backup_root(),
            5 => instance.oem_folder("HLH").ok()?,
            6 => InstanceLayout::new("other.contoso.com", REGION).ok()?.backup_root(),
            _ => instance.instance_root(),
        };
        let folder = input.pick(FOLDERS);
        let name_byte = input.byte();
        let name = if name_byte == 255 {
            input.text()
        } else {
            NAMES[usize::from(name_byte) % NAMES.len()].to_owned()
        };
        let uncommitted = input.byte() & 1 != 0;
        let data = match input.byte() % 6 {
            0 => {
                let n = usize::from(input.u16());
                input.bytes(n).to_vec()
            }
            1 => fixture().archive.clone(),
            2 => {
                let mut a = fixture().archive.clone();
                input.mutate(&mut a);
                a
            }
            kind @ (3 | 4) => {
                let folder_id = folder.parse::<BackupId>().ok();
                let mut m = input.manifest(folder_id.as_ref()).encode();
                if kind == 4 {
                    input.mutate(&mut m);
                }
                m
            }
            _ => Vec::new(),
        };
        let path = ObjectPath::parse(folder).ok().and_then(|f| {
            (f.segments().try_fold(place, |p, s| p.child(s).ok())?)
                .child(&name)
                .ok()
        })?;
        Some(Object {
            path,
            uncommitted,
            data,
        })
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

/// `IBS_FUZZ_DEBUG=1` prints each catalogue (to see what a seed builds).
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("IBS_FUZZ_DEBUG").is_some())
}

fuzz_target!(|data: &[u8]| {
    let instance = InstanceLayout::new(FQDN, REGION).expect("instance");
    let mut input = Input(data);
    let count = 1 + input.byte() % 8;
    let objects: Vec<Object> = (0..count).filter_map(|_| Object::read(&mut input, &instance)).collect();
    runtime().block_on(run(&instance, objects));
});

async fn run(instance: &InstanceLayout, objects: Vec<Object>) {
    let memory = MemoryTarget::new();
    let target: Arc<dyn StorageTarget> = Arc::new(memory.clone());
    let reader: Arc<dyn ReadTarget> = target.clone();
    // Uploads left uncommitted stay listed (as partial) while their writer lives.
    let mut uploads = Vec::new();
    for o in objects {
        let Some(parent) = o.path.parent() else { continue };
        if target.create_dir_all(&parent).await.is_err() {
            continue; // an object already has the folder's name
        }
        if o.uncommitted {
            if let Ok(mut w) = target.put(&o.path, CommitMode::Overwrite).await {
                if w.write(Bytes::from(o.data)).await.is_ok() {
                    uploads.push(w);
                }
            }
        } else {
            let _ = target
                .put_bytes(&o.path, Bytes::from(o.data), CommitMode::Overwrite)
                .await;
        }
    }
    let root = instance.backup_root();
    let listed = target.list_all(&ObjectPath::root()).await.expect("memory listing");
    let cat = catalogue(&reader, instance)
        .await
        .expect("cataloguing a memory target cannot fail");

    if debug() {
        for b in &cat.backups {
            eprintln!("backup {} {} {:?} size {}", b.id, b.state, b.problem, b.size);
        }
        eprintln!("unrecognised {:?}", cat.unrecognised);
    }

    let ids: BTreeSet<&BackupId> = cat.backups.iter().map(|b| &b.id).collect();
    assert_eq!(ids.len(), cat.backups.len(), "a backup listed twice");
    let unrecognised: BTreeSet<&ObjectPath> = cat.unrecognised.iter().collect();
    assert_eq!(
        unrecognised.len(),
        cat.unrecognised.len(),
        "an object listed twice as unrecognised"
    );
    assert!(
        cat.backups
            .windows(2)
            .all(|w| (w[0].created, &w[0].id) <= (w[1].created, &w[1].id)),
        "backups out of order"
    );
    for p in &cat.unrecognised {
        assert!(
            listed.iter().any(|o| &o.path == p),
            "unrecognised {p} is not on the target"
        );
    }

    let owns = |b: &ibs_repository::BackupInfo, o: &ibs_storage::ObjectMeta| {
        o.path.parent().as_ref() == Some(&b.paths.folder) && o.path.name().is_some_and(is_our_name)
    };
    for o in &listed {
        let owners = cat.backups.iter().filter(|b| owns(b, o)).count();
        let unrec = cat.unrecognised.iter().filter(|p| **p == o.path).count();
        let expected = usize::from(o.path.starts_with(&root));
        assert_eq!(
            owners + unrec,
            expected,
            "{} is in {owners} backups and {unrec} times unrecognised",
            o.path
        );
    }

    for b in &cat.backups {
        let mine: Vec<_> = listed.iter().filter(|o| owns(b, *o)).collect();
        assert!(!mine.is_empty(), "backup {} has no objects", b.id);
        assert_eq!(b.size, mine.iter().map(|o| o.size).sum::<u64>(), "size of {}", b.id);
        let committed = |name: &str| mine.iter().find(|o| !o.partial && o.path.name() == Some(name));
        match b.state {
            BackupState::Complete => {
                assert!(b.problem.is_none());
                let m = b.manifest.as_ref().expect("a complete backup has a manifest");
                assert_eq!(m.id, b.id);
                let archive = committed(ARCHIVE_NAME).expect("a complete backup has an archive");
                assert_eq!(m.archive_size, archive.size, "complete {} with a resized archive", b.id);
                assert_eq!(b.archive_id, Some(m.archive_id));
                assert!(committed(MANIFEST_NAME).is_some());
            }
            BackupState::Incomplete => {
                assert!(b.problem.is_some());
                assert!(committed(MANIFEST_NAME).is_none(), "{} has a manifest", b.id);
            }
            BackupState::Damaged => {
                assert!(b.problem.is_some());
                assert!(
                    committed(MANIFEST_NAME).is_some(),
                    "{} is damaged without a manifest",
                    b.id
                );
            }
            BackupState::Checked => panic!("the catalogue says checked of {} without reading it", b.id),
            BackupState::Untrusted => panic!("the catalogue says untrusted of {} without reading it", b.id),
        }
        let alone = catalogue_backup(&reader, instance, &b.id)
            .await
            .expect("cataloguing a memory target cannot fail");
        assert_eq!(&alone, b, "catalogue_backup disagrees with catalogue");
    }
    drop(uploads);
}
