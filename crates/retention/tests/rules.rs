//! Table cases with a fixed `now`, and property tests of every rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use ibs_repository::InstanceLayout;
use ibs_retention::{
    BackupRecord, BackupState, CapacityFacts, Plan, Policy, Reason, RetentionError, UnixSeconds, Warning, plan,
};
use proptest::prelude::*;

const H: i64 = 3600;
const D: i64 = 24 * H;
const NOW: UnixSeconds = 1_800_000_000;
const GB: u64 = 1_000_000_000;

fn layout() -> InstanceLayout {
    InstanceLayout::new("azurestack.contoso.com", "westus").unwrap()
}

fn rec(id: &str, age: i64, size: u64, state: BackupState) -> BackupRecord {
    BackupRecord {
        id: id.into(),
        path: layout().backup_root().child(id).unwrap(),
        created: NOW - age,
        size,
        state,
    }
}

fn ids(p: &Plan) -> Vec<(&str, Reason)> {
    p.deletions.iter().map(|d| (d.id.as_str(), d.reason)).collect()
}

use BackupState::{Checked as K, Complete as C, Damaged as U, Incomplete as I, Untrusted as T};

#[test]
fn policy_bounds_are_validated() {
    assert_eq!(Policy::default().interval_hours(), 12);
    assert_eq!(Policy::default().retention_days(), 7);
    assert!(Policy::new(4, 2).is_ok() && Policy::new(12, 14).is_ok());
    assert_eq!(Policy::new(3, 7), Err(RetentionError::IntervalOutOfRange { hours: 3 }));
    assert_eq!(
        Policy::new(13, 7),
        Err(RetentionError::IntervalOutOfRange { hours: 13 })
    );
    assert_eq!(Policy::new(12, 1), Err(RetentionError::RetentionOutOfRange { days: 1 }));
    assert_eq!(
        Policy::new(12, 15),
        Err(RetentionError::RetentionOutOfRange { days: 15 })
    );
    assert!(Policy::new(3, 7).unwrap_err().to_string().contains("4 to 12 hours"));
}

#[test]
fn sizing_matches_the_guide() {
    assert_eq!(Policy::default().projected_need(20 * GB), 280 * GB);
    assert_eq!(Policy::new(4, 14).unwrap().projected_need(GB), 6 * 14 * GB);
    assert_eq!(Policy::new(5, 2).unwrap().backups_per_day(), 5);
}

#[test]
fn table() {
    let unknown = CapacityFacts::unknown();
    let cap = |free: u64, next: Option<u64>| CapacityFacts {
        free_bytes: Some(free),
        total_bytes: None,
        next_backup_bytes: next,
    };
    struct Case {
        name: &'static str,
        catalogue: Vec<BackupRecord>,
        capacity: CapacityFacts,
        want: Vec<(&'static str, Reason)>,
        shortfall: bool,
    }
    let cases = vec![
        Case {
            name: "empty",
            catalogue: vec![],
            capacity: unknown,
            want: vec![],
            shortfall: false,
        },
        Case {
            name: "all within retention",
            catalogue: vec![rec("a", 6 * D, GB, C), rec("b", 12 * H, GB, C)],
            capacity: unknown,
            want: vec![],
            shortfall: false,
        },
        Case {
            name: "expired go, newest stays even if expired",
            catalogue: vec![
                rec("a", 30 * D, GB, C),
                rec("b", 20 * D, GB, C),
                rec("c", 10 * D, GB, K),
            ],
            capacity: unknown,
            want: vec![("a", Reason::Expired), ("b", Reason::Expired)],
            shortfall: false,
        },
        Case {
            name: "old crash is garbage, a fresh one may still be writing",
            catalogue: vec![
                rec("crash", 13 * H, GB, I),
                rec("writing", H, GB, I),
                rec("ok", 2 * H, GB, C),
            ],
            capacity: unknown,
            want: vec![("crash", Reason::IncompleteGarbage)],
            shortfall: false,
        },
        Case {
            name: "free space: garbage first, then unreadable, then untrusted, then oldest complete, only as needed",
            catalogue: vec![
                rec("c1", 6 * D, 10 * GB, C),
                rec("c2", 5 * D, 10 * GB, C),
                rec("c3", 4 * D, 10 * GB, C),
                rec("u", 3 * D, 5 * GB, U),
                rec("crash", 2 * D, 3 * GB, I),
                rec("t", D + H, 2 * GB, T),
                rec("c4", D, 10 * GB, K),
            ],
            capacity: cap(5 * GB, Some(22 * GB)),
            want: vec![
                ("crash", Reason::IncompleteGarbage),
                ("u", Reason::FreeSpace),
                ("t", Reason::FreeSpace),
                ("c1", Reason::FreeSpace),
            ],
            shortfall: false,
        },
        Case {
            name: "a newer backup nobody trusted signed is not protected: the trusted one is",
            catalogue: vec![
                rec("a", 10 * D, GB, C),
                rec("b", 9 * D, GB, C),
                rec("c", 5 * D, GB, K),
                rec("impostor", H, GB, T),
            ],
            capacity: unknown,
            want: vec![("a", Reason::Expired), ("b", Reason::Expired)],
            shortfall: false,
        },
        Case {
            name: "with no intact backup known, damaged ones stay, expired or short of space",
            catalogue: vec![rec("u", 20 * D, GB, U), rec("crash", 13 * H, GB, I)],
            capacity: cap(0, Some(10 * GB)),
            want: vec![("crash", Reason::IncompleteGarbage)],
            shortfall: true,
        },
        Case {
            name: "with no complete backup, the newest untrusted one is kept in place of the others; damaged stay",
            catalogue: vec![
                rec("u", 20 * D, GB, U),
                rec("t1", 19 * D, GB, T),
                rec("t2", 3 * D, 2 * GB, T),
                rec("t3", 2 * D, GB, T),
                rec("crash", 13 * H, GB, I),
            ],
            capacity: cap(0, Some(10 * GB)),
            want: vec![
                ("crash", Reason::IncompleteGarbage),
                ("t1", Reason::Expired),
                ("t2", Reason::FreeSpace),
            ],
            shortfall: true,
        },
        Case {
            name: "kept untrusted: the next backup's size defaults to the kept one's",
            catalogue: vec![rec("t1", 3 * D, 4 * GB, T), rec("t2", 2 * D, 8 * GB, T)],
            capacity: cap(5 * GB, None),
            want: vec![("t1", Reason::FreeSpace)],
            shortfall: false,
        },
        Case {
            name: "an untrusted backup goes for space before the controller's own, also a newer one",
            catalogue: vec![rec("c1", 3 * D, GB, C), rec("c2", 2 * D, GB, K), rec("t", D, 5 * GB, T)],
            capacity: cap(0, Some(3 * GB)),
            want: vec![("t", Reason::FreeSpace)],
            shortfall: false,
        },
        Case {
            name: "the newest complete survives a shortfall",
            catalogue: vec![rec("c1", 2 * D, 10 * GB, C), rec("c2", D, 10 * GB, K)],
            capacity: cap(GB, Some(100 * GB)),
            want: vec![("c1", Reason::FreeSpace)],
            shortfall: true,
        },
        Case {
            name: "next size defaults to the newest complete backup's",
            catalogue: vec![rec("c1", 2 * D, 4 * GB, C), rec("c2", D, 8 * GB, K)],
            capacity: cap(5 * GB, None),
            want: vec![("c1", Reason::FreeSpace)],
            shortfall: false,
        },
        Case {
            name: "an unchecked newest backup holds back every deletion but garbage",
            catalogue: vec![
                rec("a", 30 * D, GB, C),
                rec("u", 20 * D, GB, U),
                rec("t", 20 * D, GB, T),
                rec("crash", 13 * H, GB, I),
                rec("c", 10 * D, GB, C),
            ],
            capacity: cap(0, Some(10 * GB)),
            want: vec![("crash", Reason::IncompleteGarbage)],
            shortfall: true,
        },
        Case {
            name: "a backup from the future is kept and does not push older ones out",
            catalogue: vec![rec("future", -30 * D, GB, C), rec("old", 9 * D, GB, C)],
            capacity: unknown,
            want: vec![],
            shortfall: false,
        },
    ];
    for case in cases {
        let p = plan(&case.catalogue, NOW, &Policy::default(), &layout(), &case.capacity);
        assert_eq!(ids(&p), case.want, "{}", case.name);
        assert_eq!(
            p.shortfall.is_some(),
            case.shortfall,
            "{}: {:?}",
            case.name,
            p.shortfall
        );
    }
}

#[test]
fn check_first_names_the_protected_backup_only_when_it_holds_something_back() {
    let expired_behind_unchecked = [rec("old", 20 * D, GB, C), rec("new", D, GB, C)];
    let p = plan(
        &expired_behind_unchecked,
        NOW,
        &Policy::default(),
        &layout(),
        &CapacityFacts::unknown(),
    );
    assert!(p.deletions.is_empty(), "{p:?}");
    assert_eq!(p.check_first.as_deref(), Some("new"));
    assert_eq!(p.protected.as_deref(), Some("new"));

    // Nothing complete would go: no check needed.
    let fresh = [rec("a", 2 * D, GB, C), rec("b", D, GB, C), rec("crash", 2 * D, GB, I)];
    let p = plan(&fresh, NOW, &Policy::default(), &layout(), &CapacityFacts::unknown());
    assert_eq!(ids(&p), [("crash", Reason::IncompleteGarbage)]);
    assert_eq!(p.check_first, None);

    // Found damaged (or untrusted): the next newest is protected (and asked
    // for in turn); the damaged one goes only once that one is checked.
    for found in [U, T] {
        let mut newest_found_bad = [
            rec("a", 20 * D, GB, C),
            rec("b", 19 * D, GB, C),
            rec("c", 18 * D, GB, found),
        ];
        let p = plan(
            &newest_found_bad,
            NOW,
            &Policy::default(),
            &layout(),
            &CapacityFacts::unknown(),
        );
        assert_eq!(ids(&p), [], "{found:?}");
        assert_eq!(
            (p.protected.as_deref(), p.check_first.as_deref()),
            (Some("b"), Some("b")),
            "{found:?}"
        );
        newest_found_bad[1].state = K;
        let p = plan(
            &newest_found_bad,
            NOW,
            &Policy::default(),
            &layout(),
            &CapacityFacts::unknown(),
        );
        assert_eq!(ids(&p), [("a", Reason::Expired), ("c", Reason::Expired)], "{found:?}");
    }
}

#[test]
fn shortfall_carries_the_out_of_capacity_alert() {
    let p = plan(
        &[rec("only", D, 10 * GB, C)],
        NOW,
        &Policy::default(),
        &layout(),
        &CapacityFacts {
            free_bytes: Some(GB),
            total_bytes: Some(2 * GB),
            next_backup_bytes: None,
        },
    );
    // Short of space behind an unchecked backup: checking it may change
    // what can go, so the plan asks for it.
    assert_eq!(p.check_first.as_deref(), Some("only"));
    let s = p.shortfall.unwrap();
    assert_eq!((s.needed, s.available_after_plan), (10 * GB, GB));
    assert_eq!(s.alert.kind, ibs_storage::ErrorKind::OutOfCapacity);
    assert!(s.alert.remediation.contains("Add capacity"));
}

#[test]
fn other_instances_and_oem_folders_are_never_candidates() {
    let other = InstanceLayout::new("other.contoso.com", "westus").unwrap();
    let foreign = vec![
        BackupRecord {
            id: "x".into(),
            path: other.backup_root().child("x").unwrap(),
            created: NOW - 90 * D,
            size: GB,
            state: I,
        },
        BackupRecord {
            id: "hlh".into(),
            path: layout().oem_folder("HLH").unwrap(),
            created: NOW - 90 * D,
            size: GB,
            state: C,
        },
        BackupRecord {
            id: "root".into(),
            path: layout().backup_root(),
            created: NOW - 90 * D,
            size: GB,
            state: C,
        },
    ];
    let p = plan(
        &foreign,
        NOW,
        &Policy::default(),
        &layout(),
        &CapacityFacts {
            free_bytes: Some(0),
            total_bytes: None,
            next_backup_bytes: Some(GB),
        },
    );
    assert!(p.deletions.is_empty(), "{p:?}");
    assert_eq!(
        p.warnings
            .iter()
            .filter(|w| matches!(w, Warning::NotOurs { .. }))
            .count(),
        3
    );
}

// ---- properties ----

fn arb_record(i: usize) -> impl Strategy<Value = BackupRecord> {
    (
        -3 * D..40 * D,
        1u64..50,
        prop_oneof![2 => Just(C), 2 => Just(K), 2 => Just(I), 1 => Just(U), 1 => Just(T)],
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    )
        .prop_map(move |(age, size_gb, state, owner)| {
            let id = format!("b{i:03}");
            let path = match owner {
                0 => layout().backup_root().child(&id).unwrap(),
                1 => InstanceLayout::new("other.example", "r")
                    .unwrap()
                    .backup_root()
                    .child(&id)
                    .unwrap(),
                _ => layout().oem_folder("Switches").unwrap().child(&id).unwrap(),
            };
            BackupRecord {
                id,
                path,
                created: NOW - age,
                size: size_gb * GB,
                state,
            }
        })
}

fn arb_catalogue() -> impl Strategy<Value = Vec<BackupRecord>> {
    (0usize..25).prop_flat_map(|n| (0..n).map(arb_record).collect::<Vec<_>>())
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (4u32..=12, 2u32..=14, 0u32..(48 * 3600)).prop_map(|(i, d, g)| Policy::new(i, d).unwrap().incomplete_grace(g))
}

fn arb_capacity() -> impl Strategy<Value = CapacityFacts> {
    (proptest::option::of(0u64..200), proptest::option::of(0u64..100)).prop_map(|(free, next)| CapacityFacts {
        free_bytes: free.map(|g| g * GB),
        total_bytes: None,
        next_backup_bytes: next.map(|g| g * GB),
    })
}

fn skew(policy: &Policy) -> i64 {
    policy.clock_skew_secs()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn newest_complete_is_never_deleted(cat in arb_catalogue(), policy in arb_policy(), capacity in arb_capacity()) {
        let p = plan(&cat, NOW, &policy, &layout(), &capacity);
        let newest = cat
            .iter()
            .filter(|r| layout().owns(&r.path) && r.state.is_complete() && r.created <= NOW + skew(&policy))
            .max_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        if let Some(newest) = newest {
            prop_assert!(p.deletions.iter().all(|d| d.id != newest.id), "deleted the newest complete {}", newest.id);
            prop_assert_eq!(p.protected.as_deref(), Some(newest.id.as_str()));
        }
    }

    #[test]
    fn incomplete_past_grace_goes_first_and_fresh_incomplete_stays(cat in arb_catalogue(), policy in arb_policy(), capacity in arb_capacity()) {
        let p = plan(&cat, NOW, &policy, &layout(), &capacity);
        let garbage: Vec<&str> = p.deletions.iter().filter(|d| d.reason == Reason::IncompleteGarbage).map(|d| d.id.as_str()).collect();
        // Garbage deletions come before any other deletion.
        let first_other = p.deletions.iter().position(|d| d.reason != Reason::IncompleteGarbage).unwrap_or(p.deletions.len());
        prop_assert!(p.deletions[..first_other].iter().all(|d| d.reason == Reason::IncompleteGarbage));
        prop_assert_eq!(first_other, garbage.len());
        for r in cat.iter().filter(|r| layout().owns(&r.path) && r.state == I) {
            let deleted = p.deletions.iter().any(|d| d.id == r.id);
            // Only incomplete ones are garbage, and never one from the future.
            if r.created > NOW + skew(&policy) {
                prop_assert!(!deleted);
            }
            let past_grace = NOW - r.created > policy.incomplete_grace_secs() && r.created <= NOW + skew(&policy);
            prop_assert_eq!(deleted, past_grace, "{} age {} grace {}", r.id, NOW - r.created, policy.incomplete_grace_secs());
            if deleted {
                prop_assert!(garbage.contains(&r.id.as_str()));
            }
        }
        prop_assert!(p.deletions.iter().filter(|d| d.reason == Reason::IncompleteGarbage).all(|d| cat.iter().any(|r| r.id == d.id && r.state == I)));
    }

    #[test]
    fn free_space_deletes_oldest_first_and_only_as_many_as_needed(cat in arb_catalogue(), policy in arb_policy(), capacity in arb_capacity()) {
        let p = plan(&cat, NOW, &policy, &layout(), &capacity);
        let by_id = |id: &str| cat.iter().find(|r| r.id == id).unwrap();
        let for_space: Vec<&BackupRecord> = p.deletions.iter().filter(|d| d.reason == Reason::FreeSpace).map(|d| by_id(&d.id)).collect();
        if let Some(last) = for_space.last() {
            let free = capacity.free_bytes.unwrap();
            let needed = capacity.next_backup_bytes.unwrap_or_else(|| by_id(p.protected.as_deref().unwrap()).size);
            // Minimal: without the last free-space deletion, the need was not met.
            prop_assert!(free + p.freed_bytes() - last.size < needed);
            // Oldest first among complete ones: every complete, non-protected, present
            // backup older than a freed complete one is deleted too.
            for freed in for_space.iter().filter(|r| r.state.is_complete()) {
                for r in cat.iter().filter(|r| layout().owns(&r.path) && r.state.is_complete() && r.created < freed.created) {
                    prop_assert!(p.deletions.iter().any(|d| d.id == r.id), "{} kept while younger {} freed", r.id, freed.id);
                }
            }
            // Unreadable before untrusted before complete.
            let rank = |r: &BackupRecord| match r.state { U => 0, T => 1, _ => 2 };
            prop_assert!(for_space.windows(2).all(|w| rank(w[0]) <= rank(w[1])), "{:?}", for_space);
            // Behind a kept untrusted backup, damaged ones stay.
            let kept = by_id(p.protected.as_deref().unwrap());
            if kept.state == T {
                prop_assert!(p.deletions.iter().all(|d| by_id(&d.id).state != U), "{:?}", p.deletions);
            }
        }
        if let Some(s) = &p.shortfall {
            prop_assert!(s.available_after_plan < s.needed);
        }
    }

    #[test]
    fn only_our_backups_appear_in_a_plan(cat in arb_catalogue(), policy in arb_policy(), capacity in arb_capacity()) {
        let p = plan(&cat, NOW, &policy, &layout(), &capacity);
        for d in &p.deletions {
            prop_assert!(layout().owns(&d.path), "{} is not ours", d.path);
        }
    }

    #[test]
    fn future_backups_are_kept_and_reported(cat in arb_catalogue(), policy in arb_policy(), capacity in arb_capacity()) {
        let p = plan(&cat, NOW, &policy, &layout(), &capacity);
        for r in cat.iter().filter(|r| layout().owns(&r.path) && r.created > NOW + skew(&policy)) {
            prop_assert!(p.deletions.iter().all(|d| d.id != r.id));
            let reported = p.warnings.iter().any(|w| matches!(w, Warning::FromTheFuture { id, .. } if *id == r.id));
            prop_assert!(reported);
        }
        // Expiry is measured from the recorded creation time.
        for d in p.deletions.iter().filter(|d| d.reason == Reason::Expired) {
            prop_assert!(NOW - cat.iter().find(|r| r.id == d.id).unwrap().created > i64::from(policy.retention_days()) * D);
        }
    }

    #[test]
    fn only_garbage_goes_unless_behind_a_checked_one(cat in arb_catalogue(), policy in arb_policy(), capacity in arb_capacity()) {
        let p = plan(&cat, NOW, &policy, &layout(), &capacity);
        let protected = p.protected.as_deref().and_then(|id| cat.iter().find(|r| r.id == id));
        // Complete, damaged or untrusted: none goes unless the protected backup is checked.
        let deletes_more_than_garbage = p.deletions.iter().any(|d| cat.iter().any(|r| r.id == d.id && r.state != I));
        if deletes_more_than_garbage {
            prop_assert!(matches!(protected.map(|r| r.state), Some(K) | Some(T)), "{:?}", protected);
        }
        // An untrusted backup is protected only when no complete one is there
        // (and said); damaged ones then stay.
        if protected.is_some_and(|r| r.state == T) {
            prop_assert!(p.deletions.iter().all(|d| cat.iter().any(|r| r.id == d.id && r.state != U)));
            prop_assert!(cat.iter().all(|r| !(layout().owns(&r.path) && r.state.is_complete() && r.created <= NOW + skew(&policy))));
            let warned = p.warnings.iter().any(|w| matches!(w, Warning::NoTrustedBackup { id } if Some(id.as_str()) == p.protected.as_deref()));
            prop_assert!(warned);
        }
        if let Some(id) = &p.check_first {
            prop_assert_eq!(Some(id.as_str()), p.protected.as_deref());
            prop_assert_eq!(protected.map(|r| r.state), Some(C));
        }
    }

    /// The whole rule, as a controller follows it: plan, check what the plan
    /// asks for (here an oracle that knows which bodies are damaged), plan
    /// again, delete. Whatever is damaged — body (only a check sees it),
    /// header, manifest or missing archive (the catalogue sees those:
    /// unreadable) — and whatever the capacity, a location that had an intact
    /// backup keeps one, and nothing outside our folder is touched.
    #[test]
    fn a_location_with_an_intact_backup_keeps_one(
        cat in arb_catalogue(),
        damage in proptest::collection::vec(prop_oneof![3 => Just(None), 1 => Just(Some("body")), 1 => Just(Some("header")), 1 => Just(Some("manifest")), 1 => Just(Some("missing archive")), 1 => Just(Some("signed by another"))], 25),
        policy in arb_policy(),
        capacity in arb_capacity(),
    ) {
        // What is really there: complete ones may be damaged; what the catalogue shows.
        let mut shown = cat.clone();
        let mut intact = std::collections::BTreeSet::new();
        let mut untrusted = std::collections::BTreeSet::new();
        for (r, d) in shown.iter_mut().zip(&damage) {
            if !r.state.is_complete() {
                continue;
            }
            match d {
                None => {
                    intact.insert(r.id.clone());
                    r.state = C;
                }
                Some("body") => r.state = C,
                // Intact, but not a backup the trusted controller made: a
                // check finds that out; it does not count as intact here.
                Some("signed by another") => {
                    untrusted.insert(r.id.clone());
                    r.state = C;
                }
                Some(_) => r.state = U,
            }
        }
        let mut checks = 0;
        let p = loop {
            let p = plan(&shown, NOW, &policy, &layout(), &capacity);
            let Some(id) = p.check_first.clone() else { break p };
            checks += 1;
            prop_assert!(checks <= cat.len(), "no progress");
            let r = shown.iter_mut().find(|r| r.id == id).unwrap();
            r.state = if intact.contains(&id) { K } else if untrusted.contains(&id) { T } else { U };
        };
        let ours_intact = |id: &String| cat.iter().any(|r| &r.id == id && layout().owns(&r.path));
        let had = intact.iter().filter(|id| ours_intact(id)).count();
        let kept = intact.iter().filter(|id| ours_intact(id) && p.deletions.iter().all(|d| &d.id != *id)).count();
        prop_assert!(had == 0 || kept >= 1, "had {had} intact, kept none: {:?}", p.deletions);
        for d in &p.deletions {
            prop_assert!(layout().owns(&d.path));
        }
    }
}

#[test]
fn reasons_display_as_sentences_not_internal_names() {
    for (reason, words) in [
        (
            Reason::IncompleteGarbage,
            "incomplete: the job that wrote it never finished it",
        ),
        (Reason::Expired, "older than the retention period"),
        (Reason::FreeSpace, "to make room for the next backup"),
    ] {
        let text = reason.to_string();
        assert!(text.contains(words), "{reason:?}: {text}");
        assert!(!text.contains(&format!("{reason:?}")), "{text}");
        assert!(
            text.chars().all(|c| !c.is_ascii_uppercase()),
            "reads inside a sentence: {text}"
        );
    }
}
