//! Retention and capacity planning for ibs backups, as pure functions.
//!
//! ```
//! use ibs_retention::{BackupRecord, BackupState, CapacityFacts, Policy, Reason, plan};
//! use ibs_repository::InstanceLayout;
//!
//! let layout = InstanceLayout::new("azurestack.contoso.com", "westus").unwrap();
//! let day = 86_400;
//! let now = 100 * day;
//! let backup = |id: &str, age_days: i64, state| BackupRecord {
//!     id: id.into(),
//!     path: layout.backup_root().child(id).unwrap(),
//!     created: now - age_days * day,
//!     size: 20_000_000_000,
//!     state,
//! };
//! let mut catalogue = [
//!     backup("old", 9, BackupState::Complete),
//!     backup("crashed", 2, BackupState::Incomplete),
//!     backup("recent", 1, BackupState::Complete),
//! ];
//! let p = plan(&catalogue, now, &Policy::default(), &layout, &CapacityFacts::unknown());
//! let deleted: Vec<_> = p.deletions.iter().map(|d| (d.id.as_str(), d.reason)).collect();
//! // "old" has expired, but goes only once "recent" is known to be intact:
//! assert_eq!(deleted, [("crashed", Reason::IncompleteGarbage)]);
//! assert_eq!(p.check_first.as_deref(), Some("recent"));
//!
//! // The caller read "recent"'s archive and it matched its manifest:
//! catalogue[2].state = BackupState::Checked;
//! let p = plan(&catalogue, now, &Policy::default(), &layout, &CapacityFacts::unknown());
//! let deleted: Vec<_> = p.deletions.iter().map(|d| (d.id.as_str(), d.reason)).collect();
//! assert_eq!(deleted, [("crashed", Reason::IncompleteGarbage), ("old", Reason::Expired)]);
//! assert_eq!(p.check_first, None);
//!
//! // Sizing: 20 GB a backup, every 12 h, kept 7 days = 280 GB.
//! assert_eq!(Policy::default().projected_need(20_000_000_000), 280_000_000_000);
//! ```
//!
//! Given the catalogue of backups at a location, the current time (passed in,
//! never read from a clock), a [`Policy`] and [`CapacityFacts`], [`plan`]
//! returns a [`Plan`]: each backup to delete with its [`Reason`], the backups
//! kept with a warning, and — when even the plan cannot make room for the next
//! backup — an out-of-capacity [`Shortfall`] carrying the operator alert. A
//! controller executes the plan; nothing here does IO.
//!
//! The rules, each property-tested:
//!
//! 1. The newest complete backup is never deleted, whatever the policy or
//!    capacity says; and no backup but incomplete garbage (rule 2) is
//!    deleted unless that newest one has been [checked](BackupState::Checked)
//!    — its archive read and found to match its manifest (and, when the
//!    caller trusts signers, signed by one of them). A complete backup's
//!    manifest and archive header can look right while its body is damaged;
//!    protecting an unchecked one could delete every good backup and keep a
//!    bad one. So while the protected backup is unchecked, the plan withholds
//!    every such deletion and names it in [`Plan::check_first`]: the caller
//!    checks it (one archive read), records the result —
//!    [`BackupState::Checked`], [`BackupState::Damaged`] when it is damaged,
//!    or [`BackupState::Untrusted`] when it is intact but not signed by a
//!    signer the caller trusts — and plans again. The newest backup is usually
//!    intact, so a prune costs one archive read, and none when nothing would
//!    be deleted. With no intact backup known at all, nothing but garbage is
//!    deleted: a damaged backup may be all that is left. With
//!    every plan followed this way, a location that had an intact (trusted)
//!    backup keeps one.
//!
//!    A backup [found untrusted](BackupState::Untrusted) is never protected
//!    while a complete one is there, and goes for space before any complete
//!    one: a backup written by someone else (with only the certificate and
//!    write access to the share) cannot make retention delete the backups
//!    the trusted controller made (during a key rotation, trust both keys).
//!    Only when no complete backup is left (signing just turned on, or the
//!    key changed) is the newest untrusted one kept in place of the others,
//!    and said ([`Warning::NoTrustedBackup`]); damaged backups then stay (the
//!    one kept is not one a trusted restore accepts).
//! 2. Incomplete backups older than the grace period are garbage and go first;
//!    one younger than that may still be being written and is kept.
//! 3. Backups older than the retention period are deleted; to free space,
//!    damaged backups go next, then untrusted ones, then complete backups
//!    older than the protected one, oldest first, only as many as needed.
//! 4. Only backups inside this instance's `MASBackup` folder can be in a plan:
//!    OEM folders and other instances' folders are never candidates.
//! 5. Order is by each backup's recorded creation time; a backup "from the
//!    future" (beyond the clock-skew tolerance) is kept and reported, and does
//!    not count as the newest backup, so it cannot push older backups out.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use ibs_repository::BackupState;
use ibs_repository::InstanceLayout;
use ibs_storage::{Alert, ErrorKind, ObjectPath};

/// Seconds since the Unix epoch (UTC).
pub type UnixSeconds = i64;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// The one error of this crate: a policy outside its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// The backup interval is outside 4–12 hours.
    #[error("backup interval of {hours} hours is outside the allowed 4 to 12 hours")]
    IntervalOutOfRange {
        /// The interval refused, in hours.
        hours: u32,
    },
    /// The retention period is outside 2–14 days.
    #[error("retention of {days} days is outside the allowed 2 to 14 days")]
    RetentionOutOfRange {
        /// The retention refused, in days.
        days: u32,
    },
}

/// How often backups are taken and how long they are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    interval_hours: u32,
    retention_days: u32,
    incomplete_grace_secs: i64,
    clock_skew_secs: i64,
}

impl Default for Policy {
    /// A backup every 12 hours, kept 7 days (the service this replaces).
    fn default() -> Self {
        Policy {
            interval_hours: 12,
            retention_days: 7,
            incomplete_grace_secs: 12 * HOUR,
            clock_skew_secs: 5 * 60,
        }
    }
}

impl Policy {
    /// Smallest and largest backup interval, in hours.
    pub const INTERVAL_HOURS: std::ops::RangeInclusive<u32> = 4..=12;
    /// Smallest and largest retention, in days.
    pub const RETENTION_DAYS: std::ops::RangeInclusive<u32> = 2..=14;

    /// A policy; the interval must be 4–12 hours and the retention 2–14 days.
    pub fn new(interval_hours: u32, retention_days: u32) -> Result<Self, RetentionError> {
        if !Self::INTERVAL_HOURS.contains(&interval_hours) {
            return Err(RetentionError::IntervalOutOfRange { hours: interval_hours });
        }
        if !Self::RETENTION_DAYS.contains(&retention_days) {
            return Err(RetentionError::RetentionOutOfRange { days: retention_days });
        }
        Ok(Policy {
            interval_hours,
            retention_days,
            incomplete_grace_secs: i64::from(interval_hours) * HOUR,
            ..Policy::default()
        })
    }

    /// How long an incomplete backup may still be being written before it is
    /// garbage (default: one backup interval).
    pub fn incomplete_grace(mut self, secs: u32) -> Self {
        self.incomplete_grace_secs = i64::from(secs);
        self
    }

    /// How far in the future a creation time may be before it is treated as
    /// clock skew (default 5 minutes).
    pub fn clock_skew_tolerance(mut self, secs: u32) -> Self {
        self.clock_skew_secs = i64::from(secs);
        self
    }

    /// Hours between scheduled backups.
    pub fn interval_hours(&self) -> u32 {
        self.interval_hours
    }

    /// Days backups are kept.
    pub fn retention_days(&self) -> u32 {
        self.retention_days
    }

    /// The grace period of incomplete backups, in seconds.
    pub fn incomplete_grace_secs(&self) -> i64 {
        self.incomplete_grace_secs
    }

    /// The clock-skew tolerance, in seconds.
    pub fn clock_skew_secs(&self) -> i64 {
        self.clock_skew_secs
    }

    /// Scheduled backups a day (rounded up).
    pub fn backups_per_day(&self) -> u64 {
        u64::from(24u32.div_ceil(self.interval_hours))
    }

    /// Space a location needs: one backup's size × backups a day × days kept.
    pub fn projected_need(&self, backup_size: u64) -> u64 {
        backup_size
            .saturating_mul(self.backups_per_day())
            .saturating_mul(u64::from(self.retention_days))
    }
}

/// One backup in the catalogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRecord {
    /// Its id (its folder's name), as deletions and warnings name it.
    pub id: String,
    /// Its folder at the location; a record outside the instance's backup
    /// folder is never deleted ([`Warning::NotOurs`]).
    pub path: ObjectPath,
    /// Creation time: the age the expiry and grace rules measure. A caller
    /// takes the later of the time its id records and its manifest's (as
    /// `ibs-controller` does), so a damaged manifest cannot make a backup look
    /// older than it is.
    pub created: UnixSeconds,
    /// Bytes its objects occupy: what deleting it frees.
    pub size: u64,
    /// What is known about it: decides which rules apply (an incomplete one
    /// is garbage after the grace period; only a complete one can be the
    /// protected newest, or an untrusted one when no complete one is left).
    pub state: BackupState,
}

/// What the plan knows about space at the location.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CapacityFacts {
    /// Free bytes, if the backend knows.
    pub free_bytes: Option<u64>,
    /// Total bytes, if the backend knows.
    pub total_bytes: Option<u64>,
    /// The size the next backup needs; when unknown, the newest complete backup's size is used.
    pub next_backup_bytes: Option<u64>,
}

impl CapacityFacts {
    /// Nothing is known (object stores): only age and garbage rules apply.
    pub fn unknown() -> Self {
        Self::default()
    }
}

/// Why a backup is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Incomplete and older than the grace period.
    IncompleteGarbage,
    /// Older than the retention period.
    Expired,
    /// Deleted to make room for the next backup: damaged ones first, then
    /// untrusted ones, then complete ones oldest first.
    FreeSpace,
}

impl std::fmt::Display for Reason {
    /// Why, as a sentence fragment an operator reads after the backup's id
    /// (`backup X deleted: incomplete: …`), never the variant's name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::IncompleteGarbage => {
                "incomplete: the job that wrote it never finished it, and the grace period for finishing has passed"
            }
            Reason::Expired => "older than the retention period",
            Reason::FreeSpace => {
                "deleted to make room for the next backup (damaged and untrusted backups first, then the oldest)"
            }
        })
    }
}

/// A backup the plan deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    /// Id of the backup to delete.
    pub id: String,
    /// The folder to delete, with everything ibs wrote in it.
    pub path: ObjectPath,
    /// Bytes deleting it frees (its record's size).
    pub size: u64,
    /// Which rule deletes it.
    pub reason: Reason,
}

/// Something an operator should know, with no deletion attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// A backup's creation time is in the future (clock skew); it is kept.
    FromTheFuture {
        /// Id of the backup kept.
        id: String,
        /// Its creation time, later than `now` plus the clock-skew tolerance.
        created: UnixSeconds,
    },
    /// A record outside this instance's backup folder was ignored.
    NotOurs {
        /// The record's folder, outside this instance's backup folder.
        path: ObjectPath,
    },
    /// An object in the backup folder that ibs did not write: never deleted
    /// (nor the folder holding it).
    Unrecognised {
        /// The object's path, as the operator would look for it.
        path: ObjectPath,
    },
    /// No complete backup was made by a trusted signer, so the newest intact
    /// one someone else signed (or nobody) is kept in place of the others
    /// (rule 1).
    NoTrustedBackup {
        /// Id of the backup kept.
        id: String,
    },
}

/// The next backup will not fit even after the plan runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    /// Bytes the next backup needs.
    pub needed: u64,
    /// Bytes free once the plan has run.
    pub available_after_plan: u64,
    /// The out-of-capacity alert for the operator.
    pub alert: Alert,
}

/// The result of planning.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Plan {
    /// Backups to delete, in the order to delete them.
    pub deletions: Vec<Deletion>,
    /// What the operator should know that deletes nothing (clock skew,
    /// foreign records and objects).
    pub warnings: Vec<Warning>,
    /// Present when the next backup cannot fit even after the deletions.
    pub shortfall: Option<Shortfall>,
    /// The backup protected as the newest complete one — or, with none, the
    /// newest untrusted one ([`Warning::NoTrustedBackup`]) — if any.
    pub protected: Option<String>,
    /// The protected backup, when it is not [checked](BackupState::Checked)
    /// and the plan withheld deletions until it is, or space is short: check
    /// it and plan again with the result (see the crate docs, rule 1).
    pub check_first: Option<String>,
}

impl Plan {
    /// Bytes the deletions free: the sum of their sizes.
    pub fn freed_bytes(&self) -> u64 {
        self.deletions.iter().map(|d| d.size).sum()
    }
}

/// Plans what to delete. See the crate docs for the rules.
pub fn plan(
    catalogue: &[BackupRecord],
    now: UnixSeconds,
    policy: &Policy,
    layout: &InstanceLayout,
    capacity: &CapacityFacts,
) -> Plan {
    let mut out = Plan::default();
    let mut ours: Vec<&BackupRecord> = Vec::new();
    for record in catalogue {
        if layout.owns(&record.path) {
            ours.push(record);
        } else {
            out.warnings.push(Warning::NotOurs {
                path: record.path.clone(),
            });
        }
    }
    // Oldest first; ties broken by id so plans are deterministic.
    ours.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));

    let future_limit = now.saturating_add(policy.clock_skew_secs);
    let (future, present): (Vec<&BackupRecord>, Vec<&BackupRecord>) =
        ours.into_iter().partition(|r| r.created > future_limit);
    for r in &future {
        out.warnings.push(Warning::FromTheFuture {
            id: r.id.clone(),
            created: r.created,
        });
    }
    let newest_complete = present.iter().rev().find(|r| r.state.is_complete());
    // With no complete backup left but intact ones no trusted signer made
    // (signing just turned on, or the key changed), the newest of those is
    // kept in their place: there is nothing trusted to protect, and keeping
    // none would let the location fill up for good.
    let fallback = match newest_complete {
        Some(_) => None,
        None => present.iter().rev().find(|r| r.state == BackupState::Untrusted),
    };
    if let Some(r) = fallback {
        out.warnings.push(Warning::NoTrustedBackup { id: r.id.clone() });
    }
    let kept = newest_complete.or(fallback);
    let protected = kept.map(|r| r.id.clone());
    // Anything but garbage may go only once the one kept in its place is
    // known to be intact: with no intact backup known, nothing may (a
    // damaged backup may be all there is).
    let may_delete = kept.is_some_and(|r| matches!(r.state, BackupState::Checked | BackupState::Untrusted));
    out.protected = protected.clone();
    let is_protected = |r: &BackupRecord| protected.as_deref() == Some(r.id.as_str());
    // A backup the rules would delete, withheld until the protected one is
    // checked; and behind a backup nobody trusted signed (the fallback),
    // damaged ones stay: the one kept is not one a trusted restore accepts.
    let withhold = |out: &mut Plan, r: &BackupRecord| {
        if fallback.is_some() && r.state == BackupState::Damaged {
            return true;
        }
        let wait = r.state != BackupState::Incomplete && !may_delete;
        if wait && protected.is_some() {
            out.check_first = protected.clone();
        }
        wait
    };

    let mut deleted = std::collections::HashSet::new();
    let mut delete = |out: &mut Plan, r: &BackupRecord, reason: Reason| {
        if deleted.insert(r.id.clone()) {
            out.deletions.push(Deletion {
                id: r.id.clone(),
                path: r.path.clone(),
                size: r.size,
                reason,
            });
        }
    };

    // 1. Garbage: incomplete past its grace period.
    for r in present.iter().filter(|r| r.state == BackupState::Incomplete) {
        if now.saturating_sub(r.created) > policy.incomplete_grace_secs {
            delete(&mut out, r, Reason::IncompleteGarbage);
        }
    }
    // 2. Expired.
    let max_age = i64::from(policy.retention_days) * DAY;
    for r in present
        .iter()
        .filter(|r| r.state != BackupState::Incomplete && !is_protected(r))
    {
        if now.saturating_sub(r.created) > max_age && !withhold(&mut out, r) {
            delete(&mut out, r, Reason::Expired);
        }
    }
    // 3. Free space for the next backup: damaged first, then untrusted, then complete, oldest first.
    let needed = capacity.next_backup_bytes.or(kept.map(|r| r.size));
    if let (Some(free), Some(needed)) = (capacity.free_bytes, needed) {
        // Complete candidates are older than the protected backup (it is the
        // newest complete one). Untrusted ones go before them, newer ones
        // too: a newer backup no trusted key signed is what an impostor
        // writes (during a key rotation, name both keys).
        let candidates = present
            .iter()
            .filter(|r| r.state == BackupState::Damaged)
            .chain(
                present
                    .iter()
                    .filter(|r| r.state == BackupState::Untrusted && !is_protected(r)),
            )
            .chain(present.iter().filter(|r| r.state.is_complete() && !is_protected(r)));
        for r in candidates {
            if free.saturating_add(out.freed_bytes()) >= needed {
                break;
            }
            if !withhold(&mut out, r) {
                delete(&mut out, r, Reason::FreeSpace);
            }
        }
        let available = free.saturating_add(out.freed_bytes());
        if available < needed && kept.is_some_and(|r| r.state == BackupState::Complete) {
            // Short of space behind an unchecked backup: checking it may
            // change what can go (found damaged or untrusted, it is no
            // longer the one kept).
            out.check_first = protected.clone();
        }
        if available < needed {
            out.shortfall = Some(Shortfall {
                needed,
                available_after_plan: available,
                alert: ErrorKind::OutOfCapacity.alert(),
            });
        }
    }
    out
}
