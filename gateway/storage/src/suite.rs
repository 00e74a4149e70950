//! The test suite every `Store` backend passes: the same scenarios run
//! against SQLite (`sqlite_*` tests) and against the PostgreSQL server of
//! this machine (`postgres_*` tests, each in a database of its own; the
//! server is started when stopped, and its absence fails the test in CI).

use super::*;
use crate::sql::SqlValue;

pub fn entry(control_id: &str, sha: &str) -> JournalEntry {
    JournalEntry {
        received_at: "2026-11-22T10:00:00Z".into(),
        transport: "mllp",
        sending_application: "LAB".into(),
        sending_facility: "SITE".into(),
        control_id: control_id.into(),
        message_type: "ORU^R01".into(),
        version: "2.5".into(),
        charset: "UNICODE UTF-8".into(),
        sha256: sha.into(),
        ack_code: "AA".into(),
        raw: b"MSH|^~\\&|LAB|SITE".to_vec(),
        networks: vec!["nord".into(), "labo-2".into()],
        application_ack: String::new(),
    }
}

/// Journals one message per patient key given and routes each to
/// `targets`; returns the journal ids in order.
fn journal_and_route(store: &dyn Store, patients: &[&str], targets: &[&str]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (n, patient) in patients.iter().enumerate() {
        let control = format!("C{}-{n}", ids.len());
        let stored = store.journal_commit(&[entry(&control, &control)]).unwrap();
        let Stored::New { id } = stored[0] else {
            panic!("new message expected")
        };
        ids.push(id);
        let _ = patient;
    }
    let claimed = store.claim_unmapped("me", 1000, 1_000, 60_000).unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.journal_id).collect::<Vec<_>>(),
        ids
    );
    for (message, patient) in claimed.iter().zip(patients) {
        let deliveries = targets
            .iter()
            .map(|target| NewDelivery {
                route: "r".into(),
                target: target.to_string(),
                patient_key: patient.to_string(),
                bundle: format!("{{\"journal\":{}}}", message.journal_id),
            })
            .collect();
        store
            .record_mapping(
                message.journal_id,
                &MappingOutcome::Routed(deliveries),
                1_000,
            )
            .unwrap();
    }
    ids
}

fn delivered(now: i64) -> Attempt {
    Attempt {
        started_at_ms: now,
        latency_ms: 3,
        status: Some(200),
        result: AttemptResult::Delivered,
        detail: None,
        reason: Default::default(),
    }
}

fn claim(store: &dyn Store, target: &str, owner: &str, now: i64) -> Vec<i64> {
    store
        .claim_deliveries(target, owner, 100, now, 60_000)
        .unwrap()
        .iter()
        .map(|d| d.journal_id)
        .collect()
}

pub fn journal_keeps_retransmissions_once(store: &dyn Store) {
    let first = store
        .journal_commit(&[entry("C1", "aa"), entry("C2", "bb")])
        .unwrap();
    assert!(matches!(first[0], Stored::New { .. }));
    let again = store
        .journal_commit(&[entry("C1", "aa"), entry("C1", "cc")])
        .unwrap();
    assert!(matches!(&again[0], Stored::Duplicate { ack_code, .. } if ack_code == "AA"));
    // The same control id with other content is a message of its own.
    assert!(matches!(again[1], Stored::New { .. }));
    let all = store
        .list_messages(&MessageFilter {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|m| m.state == "received"));
}

pub fn mapping_outcomes_are_recorded_and_replayable(store: &dyn Store) {
    let ids: Vec<i64> = ["A", "B", "C"]
        .iter()
        .map(|c| match store.journal_commit(&[entry(c, c)]).unwrap()[0] {
            Stored::New { id } => id,
            _ => panic!(),
        })
        .collect();
    let claimed = store.claim_unmapped("me", 10, 1_000, 60_000).unwrap();
    assert_eq!(claimed.len(), 3);
    // Another instance cannot map while this one's lease runs.
    assert!(store
        .claim_unmapped("other", 10, 2_000, 60_000)
        .unwrap()
        .is_empty());
    store
        .record_mapping(
            ids[0],
            &MappingOutcome::Routed(vec![NewDelivery {
                route: "r".into(),
                target: "t".into(),
                patient_key: "p".into(),
                bundle: "{}".into(),
            }]),
            1_000,
        )
        .unwrap();
    store
        .record_mapping(
            ids[1],
            &MappingOutcome::Failed {
                reason: "PID-3: missing".into(),
            },
            1_000,
        )
        .unwrap();
    store
        .record_mapping(ids[2], &MappingOutcome::Unrouted, 1_000)
        .unwrap();
    let failed = store
        .list_messages(&MessageFilter {
            state: Some("failed".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        failed.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[1]]
    );
    let journey = store.message(ids[1]).unwrap().unwrap();
    assert_eq!(journey.mapping_error.as_deref(), Some("PID-3: missing"));
    assert!(store.message(999_999).unwrap().is_none());
    let pending = store
        .list_messages(&MessageFilter {
            state: Some("pending".into()),
            target: Some("t".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].deliveries[0].state, "pending");

    // A replay maps again; the delivery row is replaced, not duplicated.
    assert_eq!(store.replay(&[ids[0], ids[1]]).unwrap(), 2);
    let again = store.claim_unmapped("other", 10, 200_000, 60_000).unwrap();
    assert_eq!(
        again.iter().map(|m| m.journal_id).collect::<Vec<_>>(),
        vec![ids[0], ids[1]]
    );
    for id in [ids[0], ids[1]] {
        store
            .record_mapping(
                id,
                &MappingOutcome::Routed(vec![NewDelivery {
                    route: "r".into(),
                    target: "t".into(),
                    patient_key: "p".into(),
                    bundle: "{\"v\":2}".into(),
                }]),
                200_000,
            )
            .unwrap();
    }
    let claimed = store
        .claim_deliveries("t", "me", 10, 200_000, 60_000)
        .unwrap();
    assert_eq!(claimed.len(), 1, "one patient: one at a time");
    assert_eq!(claimed[0].journal_id, ids[0]);
    assert_eq!(claimed[0].bundle, "{\"v\":2}");
    assert_eq!(claimed[0].attempt, 1);
    assert_eq!(
        claimed[0].networks,
        ["nord", "labo-2"],
        "the sender's networks"
    );
}

pub fn deliveries_keep_patient_order_and_skip_stuck_patients(store: &dyn Store) {
    let ids = journal_and_route(store, &["p1", "p2", "p1", "p3", "p1"], &["t"]);
    // The first message of each patient, not the later ones of p1.
    let in_flight = store
        .claim_deliveries("t", "me", 100, 2_000, 60_000)
        .unwrap();
    assert_eq!(
        in_flight.iter().map(|d| d.journal_id).collect::<Vec<_>>(),
        vec![ids[0], ids[1], ids[3]]
    );
    assert!(
        claim(store, "t", "me", 2_000).is_empty(),
        "nothing new while the first three are in flight"
    );
    // p1's first fails and waits; p2 and p3 are delivered.
    for delivery in &in_flight {
        let attempt = if delivery.journal_id == ids[0] {
            Attempt {
                started_at_ms: 2_000,
                latency_ms: 5,
                status: Some(503),
                result: AttemptResult::Retry {
                    next_attempt_at_ms: 10_000,
                },
                detail: Some("unavailable".into()),
                reason: Default::default(),
            }
        } else {
            delivered(2_000)
        };
        assert!(store
            .record_attempt(delivery, "me", &attempt, 2_000)
            .unwrap());
    }
    // p1 is stuck until 10 000: its later messages wait; nothing else left.
    assert!(claim(store, "t", "me", 5_000).is_empty());
    assert_eq!(store.next_due("t").unwrap(), Some(10_000));
    let retried = store
        .claim_deliveries("t", "me", 100, 10_000, 60_000)
        .unwrap();
    assert_eq!(
        retried.iter().map(|d| d.journal_id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    assert_eq!(retried[0].attempt, 2);
    assert!(store
        .record_attempt(&retried[0], "me", &delivered(10_000), 10_000)
        .unwrap());
    let next = store
        .claim_deliveries("t", "me", 100, 10_000, 60_000)
        .unwrap();
    assert_eq!(
        next.iter().map(|d| d.journal_id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    assert!(store
        .record_attempt(&next[0], "me", &delivered(10_000), 10_000)
        .unwrap());
    let last = store
        .claim_deliveries("t", "me", 100, 10_000, 60_000)
        .unwrap();
    assert_eq!(
        last.iter().map(|d| d.journal_id).collect::<Vec<_>>(),
        vec![ids[4]]
    );

    let journey = store.message(ids[0]).unwrap().unwrap();
    let results: Vec<&str> = journey.attempts.iter().map(|a| a.result.as_str()).collect();
    assert_eq!(results, vec!["retry", "delivered"]);
    assert_eq!(journey.attempts[0].status, Some(503));
    assert_eq!(journey.summary.deliveries[0].state, "delivered");
}

pub fn dead_letters_do_not_block_and_can_be_retried(store: &dyn Store) {
    let ids = journal_and_route(store, &["p", "p"], &["t", "u"]);
    let first = store
        .claim_deliveries("t", "me", 10, 2_000, 60_000)
        .unwrap();
    assert_eq!(first.len(), 1);
    let dead = Attempt {
        started_at_ms: 2_000,
        latency_ms: 4,
        status: Some(422),
        result: AttemptResult::Dead,
        detail: Some("{\"resourceType\":\"OperationOutcome\"}".into()),
        reason: Default::default(),
    };
    assert!(store.record_attempt(&first[0], "me", &dead, 2_000).unwrap());
    // The dead letter does not hold back the patient's next message.
    assert_eq!(claim(store, "t", "me", 2_000), vec![ids[1]]);
    // Target `u` is independent: its first row is deliverable.
    assert_eq!(claim(store, "u", "me", 2_000), vec![ids[0]]);
    let depths = store.depths(3_000).unwrap();
    let t = depths.iter().find(|d| d.target == "t").unwrap();
    assert_eq!((t.pending, t.in_flight, t.dead), (0, 1, 1));
    assert_eq!(t.oldest_pending_age_ms, 2_000);
    let dead_list = store
        .list_messages(&MessageFilter {
            state: Some("dead".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(dead_list.len(), 1);
    assert_eq!(
        dead_list[0]
            .deliveries
            .iter()
            .find(|d| d.target == "t")
            .unwrap()
            .last_status,
        Some(422)
    );
    assert_eq!(store.retry_dead(Some("u"), &[], 4_000).unwrap(), 0);
    let dead_row = first[0].outbox_id;
    // By row: another target's name, or a row that is not dead, retries
    // nothing.
    assert_eq!(store.retry_dead(Some("u"), &[dead_row], 4_000).unwrap(), 0);
    assert_eq!(
        store.retry_dead(None, &[dead_row + 1_000], 4_000).unwrap(),
        0
    );
    assert_eq!(store.retry_dead(None, &[dead_row], 4_000).unwrap(), 1);
    assert_eq!(store.retry_dead(Some("t"), &[], 4_000).unwrap(), 0);
    store.release_leases("me").unwrap();
    // Back in order: the retried first message goes before the second.
    assert_eq!(claim(store, "t", "me", 4_000), vec![ids[0]]);
}

pub fn leases_expire_and_late_owners_are_told(store: &dyn Store) {
    let ids = journal_and_route(store, &["p"], &["t"]);
    let mine = store.claim_deliveries("t", "a", 10, 1_000, 5_000).unwrap();
    assert_eq!(mine.len(), 1);
    assert!(
        claim(store, "t", "b", 3_000).is_empty(),
        "lease still running"
    );
    let theirs = store.claim_deliveries("t", "b", 10, 7_000, 5_000).unwrap();
    assert_eq!(theirs.iter().map(|d| d.journal_id).collect::<Vec<_>>(), ids);
    // The first owner finishes late: recorded, but the state is b's.
    assert!(!store
        .record_attempt(&mine[0], "a", &delivered(8_000), 8_000)
        .unwrap());
    assert!(store
        .record_attempt(&theirs[0], "b", &delivered(8_000), 8_000)
        .unwrap());
    let journey = store.message(ids[0]).unwrap().unwrap();
    let results: Vec<&str> = journey.attempts.iter().map(|a| a.result.as_str()).collect();
    assert_eq!(results, vec!["lease_lost", "delivered"]);
}

pub fn local_delivery_and_purge(store: &dyn Store) {
    let ids = journal_and_route(store, &["p", "q"], &["local"]);
    let claimed = store
        .claim_deliveries("local", "me", 10, 2_000, 60_000)
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(
        store.deliver_locally(&claimed[..1], "me", 2_000).unwrap(),
        1
    );
    assert_eq!(
        store.delivered_bundles("local", 10).unwrap(),
        vec![format!("{{\"journal\":{}}}", ids[0])]
    );
    // Only finished messages go, their outbox rows with them (the
    // repository keeps what their Bundles wrote).
    assert_eq!(store.purge("2027-01-01", false).unwrap(), 1);
    assert!(store.message(ids[0]).unwrap().is_none());
    assert!(store.message(ids[1]).unwrap().is_some());
    assert!(store.delivered_bundles("local", 10).unwrap().is_empty());
    assert_eq!(store.purge("2020-01-01", true).unwrap(), 0);
}

/// A message's bytes come back as received (a Latin-1 byte included)
/// with each delivery's Bundle; an unknown id is `None`.
pub fn message_content_is_the_bytes_and_bundles_kept(store: &dyn Store) {
    let ids = journal_and_route(store, &["p"], &["local", "hospital"]);
    let mut latin1 = entry("L1", "L1");
    latin1.raw = b"MSH|^~\\&|LAB|SITE\rPID|||1||DUPR\xc9".to_vec();
    latin1.charset = "8859/1".into();
    let Stored::New { id } = store.journal_commit(&[latin1.clone()]).unwrap()[0] else {
        panic!("new message expected")
    };
    let content = crate::content::message_content(store, ids[0])
        .unwrap()
        .unwrap();
    assert_eq!(content.raw, entry("x", "x").raw);
    assert_eq!(content.charset, "UNICODE UTF-8");
    assert_eq!(
        content
            .bundles
            .iter()
            .map(|b| (b.target.as_str(), b.bundle.clone()))
            .collect::<Vec<_>>(),
        vec![
            ("local", format!("{{\"journal\":{}}}", ids[0])),
            ("hospital", format!("{{\"journal\":{}}}", ids[0]))
        ]
    );
    let unmapped = crate::content::message_content(store, id).unwrap().unwrap();
    assert_eq!(unmapped.raw, latin1.raw);
    assert_eq!(unmapped.charset, "8859/1");
    assert!(unmapped.bundles.is_empty());
    assert!(crate::content::message_content(store, id + 100)
        .unwrap()
        .is_none());
}

/// A message owing an application acknowledgement is due once mapped and
/// every delivery is over, with what became of each; settled, it is not
/// due again. Messages that owe none are never listed.
pub fn application_acks_fall_due_when_everything_is_over(store: &dyn Store) {
    use crate::application_acks::{mapping_outcome, owed, settle, Outcome, SENT};
    let mut owing = entry("ACK1", "ACK1");
    owing.application_ack = "AL".into();
    let mut failing = entry("ACK2", "ACK2");
    failing.application_ack = "ER".into();
    let silent = entry("ACK3", "ACK3");
    let stored = store.journal_commit(&[owing, failing, silent]).unwrap();
    let ids: Vec<i64> = stored
        .iter()
        .map(|s| match s {
            Stored::New { id } => *id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(owed(store, 0, 10).unwrap().is_empty(), "nothing mapped yet");
    assert_eq!(mapping_outcome(store, ids[0]).unwrap(), None);
    let claimed = store.claim_unmapped("me", 10, 1_000, 60_000).unwrap();
    assert_eq!(claimed.len(), 3);
    let delivery = |target: &str| NewDelivery {
        route: "r".into(),
        target: target.into(),
        patient_key: "p".into(),
        bundle: "{}".into(),
    };
    store
        .record_mappings(
            &[
                (
                    ids[0],
                    MappingOutcome::Routed(vec![delivery("t"), delivery("u")]),
                ),
                (
                    ids[1],
                    MappingOutcome::Failed {
                        reason: "route `r`: PID-3: missing".into(),
                    },
                ),
                (ids[2], MappingOutcome::Unrouted),
            ],
            1_000,
        )
        .unwrap();
    let due = owed(store, 0, 10).unwrap();
    assert_eq!(due.len(), 1, "the routed one waits for its deliveries");
    assert_eq!(due[0].journal_id, ids[1]);
    assert_eq!(due[0].condition, "ER");
    assert_eq!(due[0].raw, entry("x", "x").raw);
    assert_eq!(
        due[0].outcome,
        Outcome::MappingFailed("route `r`: PID-3: missing".into())
    );
    assert_eq!(
        mapping_outcome(store, ids[2]).unwrap(),
        Some(Outcome::Unrouted)
    );
    settle(store, ids[1], SENT).unwrap();
    for target in ["t", "u"] {
        let claimed = store
            .claim_deliveries(target, "me", 10, 2_000, 60_000)
            .unwrap();
        let attempt = Attempt {
            status: Some(if target == "t" { 200 } else { 412 }),
            result: if target == "t" {
                AttemptResult::Delivered
            } else {
                AttemptResult::Dead
            },
            reason: if target == "t" {
                Default::default()
            } else {
                crate::AttemptReason {
                    code: Some("XDSRegistryMetadataError".into()),
                    location: Some("PID-32".into()),
                }
            },
            ..delivered(2_000)
        };
        assert!(store
            .record_attempt(&claimed[0], "me", &attempt, 2_000)
            .unwrap());
    }
    let due = owed(store, 0, 10).unwrap();
    assert_eq!(due.len(), 1);
    let Outcome::Routed(deliveries) = &due[0].outcome else {
        panic!("{:?}", due[0].outcome)
    };
    let states: Vec<_> = deliveries
        .iter()
        .map(|d| (d.target.as_str(), d.state.as_str(), d.last_status))
        .collect();
    assert_eq!(
        states,
        [("t", "delivered", Some(200)), ("u", "dead", Some(412))]
    );
    // The refusal's code and field come back as recorded.
    assert_eq!(deliveries[0].reason, crate::AttemptReason::default());
    assert_eq!(
        deliveries[1].reason.code.as_deref(),
        Some("XDSRegistryMetadataError")
    );
    assert_eq!(deliveries[1].reason.location.as_deref(), Some("PID-32"));
    assert!(
        owed(store, ids[0], 10).unwrap().is_empty(),
        "after the cursor"
    );
    // Taken by one sender: not owed, and not takeable again; given back
    // (a failed send, or a stop), owed again.
    use crate::application_acks::{give_back, give_back_all, take};
    assert!(take(store, ids[0], "AL").unwrap());
    assert!(!take(store, ids[0], "AL").unwrap(), "taken once");
    assert!(owed(store, 0, 10).unwrap().is_empty());
    give_back(store, ids[0], "AL").unwrap();
    assert_eq!(owed(store, 0, 10).unwrap().len(), 1);
    assert!(take(store, ids[0], "AL").unwrap());
    assert_eq!(give_back_all(store).unwrap(), 1);
    assert_eq!(owed(store, 0, 10).unwrap().len(), 1);
    assert!(take(store, ids[0], "AL").unwrap());
    settle(store, ids[0], SENT).unwrap();
    assert!(owed(store, 0, 10).unwrap().is_empty());
    assert_eq!(give_back_all(store).unwrap(), 0);
}

/// A read still running at its deadline is stopped by the database, and
/// while it runs other reads go on, on other connections; the deadline
/// does not outlive its read.
pub fn slow_reads_stop_at_their_deadline_and_never_block_other_reads(store: &(dyn Store + Sync)) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    // Counts forever: only the deadline ends it.
    const ENDLESS: &str =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let slow_done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let slow = scope.spawn(|| {
            let started = Instant::now();
            let result = store.sql_read(Some(started + Duration::from_millis(500)), &mut |sql| {
                sql.query(ENDLESS, &[])?;
                Ok(())
            });
            slow_done.store(true, Ordering::SeqCst);
            (result, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        // Another read, while the slow one holds its connection.
        store
            .sql_read(None, &mut |sql| {
                sql.query("SELECT 1", &[])?;
                Ok(())
            })
            .unwrap();
        assert!(
            !slow_done.load(Ordering::SeqCst),
            "the quick read waited for the slow one"
        );
        let (result, elapsed) = slow.join().unwrap();
        assert!(
            matches!(result, Err(StorageError::DeadlinePassed)),
            "{result:?}"
        );
        assert!(
            elapsed < Duration::from_secs(10),
            "stopped after {elapsed:?}"
        );
    });
    // Every connection reads again without a deadline, however long it
    // takes (a deadline of an earlier read must not stop them).
    for _ in 0..8 {
        store
            .sql_read(None, &mut |sql| {
                sql.query(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) SELECT count(*) FROM c",
                    &[],
                )?;
                Ok(())
            })
            .unwrap();
    }
}

/// Retention deletes each class in bounded batches, keeps what is still
/// in use (undelivered messages, current versions, the audit chain's
/// young end), and leaves an audit chain that verifies from its anchor.
pub fn retention_purges_each_class_in_batches(store: &dyn Store) {
    use crate::retention::{purge_batch, DataClass};
    let record = |removed: u64, seq: i64| crate::audit::AuditRecord {
        recorded_ms: 9_000_000,
        patients: Vec::new(),
        event: format!("{{\"removed\":{removed},\"anchor\":{seq}}}"),
    };
    let drain = |class: DataClass, cutoff_ms: i64| {
        let mut batches = Vec::new();
        loop {
            let removed = purge_batch(store, class, cutoff_ms, 1, &record).unwrap();
            if removed == 0 {
                return batches;
            }
            batches.push(removed);
            assert!(batches.len() < 20, "{class:?} does not end");
        }
    };
    let ids = journal_and_route(store, &["p", "q", "r"], &["local", "t"]);
    // Message 0 delivered everywhere; message 1 a dead letter at t.
    let local = store
        .claim_deliveries("local", "me", 1, 2_000, 60_000)
        .unwrap();
    assert_eq!(store.deliver_locally(&local, "me", 2_000).unwrap(), 1);
    let at_t = store.claim_deliveries("t", "me", 2, 2_000, 60_000).unwrap();
    assert!(store
        .record_attempt(&at_t[0], "me", &delivered(2_000), 2_000)
        .unwrap());
    let dead = Attempt {
        result: AttemptResult::Dead,
        status: Some(422),
        ..delivered(2_000)
    };
    let second = at_t.iter().find(|d| d.journal_id == ids[1]).unwrap();
    assert!(store.record_attempt(second, "me", &dead, 2_000).unwrap());

    // Too young: nothing goes.
    assert!(drain(DataClass::DeliveredBundles, 500).is_empty());
    assert!(drain(DataClass::DeadLetters, 500).is_empty());
    assert!(drain(DataClass::JournalPayloads, 500).is_empty());

    // Delivered Bundles: the outbox row's Bundle, twice (local and t).
    assert_eq!(
        drain(DataClass::DeliveredBundles, 5_000)
            .iter()
            .sum::<u64>(),
        2
    );
    assert!(store.delivered_bundles("local", 10).unwrap().is_empty());
    // The dead letter, its message kept (its local delivery is pending).
    assert_eq!(drain(DataClass::DeadLetters, 5_000), vec![1]);
    let journey = store.message(ids[1]).unwrap().unwrap();
    assert!(journey.summary.deliveries.iter().all(|d| d.target != "t"));
    // Journal: only the message whose deliveries are all over.
    let new_year_2027 = 1_798_761_600_000;
    assert_eq!(drain(DataClass::JournalPayloads, new_year_2027), vec![1]);
    assert!(store.message(ids[0]).unwrap().is_none());
    assert!(store.message(ids[1]).unwrap().is_some());
    assert!(store.message(ids[2]).unwrap().is_some());

    // Repository history: past versions only, one per batch.
    store
        .sql_write(&mut |sql| {
            sql.execute(
                "INSERT INTO fhir_resources (resource_type, id, version, last_updated_ms, deleted, resource)
                 VALUES ('Patient', 'x', 3, 3000, 0, '{}')",
                &[],
            )?;
            for version in 1..=3 {
                sql.execute(
                    "INSERT INTO fhir_history (resource_type, id, version, last_updated_ms, deleted, resource)
                     VALUES ('Patient', 'x', $1, $2, 0, '{}')",
                    &[SqlValue::Int(version), SqlValue::Int(version * 1000)],
                )?;
            }
            Ok(true)
        })
        .unwrap();
    assert_eq!(drain(DataClass::RepositoryHistory, 10_000), vec![1, 1]);
    let mut versions = Vec::new();
    store
        .sql_read(None, &mut |sql| {
            versions = sql.query("SELECT version FROM fhir_history", &[])?;
            Ok(())
        })
        .unwrap();
    assert_eq!(versions, vec![vec![SqlValue::Int(3)]]);

    // Audit records: the oldest, from the start of the chain, each removal
    // recorded; what is left verifies from the anchor, and a change to it
    // is still found.
    let records: Vec<crate::audit::AuditRecord> = (1..=5)
        .map(|n| crate::audit::AuditRecord {
            recorded_ms: n * 1000,
            patients: vec![format!("Patient/{n}")],
            event: format!("{{\"n\":{n}}}"),
        })
        .collect();
    crate::audit::append(store, &records).unwrap();
    // An export that has sent records 1 and 2 only holds the rest back.
    crate::audit::set_export_position(store, "syslog", 2).unwrap();
    assert_eq!(drain(DataClass::AuditRecords, 3_500), vec![1, 1]);
    assert_eq!(
        crate::audit::export_position(store, "syslog").unwrap(),
        Some(2)
    );
    crate::audit::set_export_position(store, "syslog", 7).unwrap();
    assert_eq!(drain(DataClass::AuditRecords, 3_500), vec![1]);
    // An export taken out of the configuration holds nothing back.
    crate::audit::forget_exports_but(store, &[]).unwrap();
    assert_eq!(
        crate::audit::export_position(store, "syslog").unwrap(),
        None
    );
    assert_eq!(
        crate::audit::verify(store).unwrap(),
        crate::audit::Verification::Intact { records: 5 }
    );
    assert!(crate::audit::for_patient(store, "Patient/3", 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        crate::audit::for_patient(store, "Patient/4", 10)
            .unwrap()
            .len(),
        1
    );
    store
        .sql_write(&mut |sql| {
            sql.execute(
                "UPDATE audit_events SET event = '{\"n\":44}' WHERE seq = 4",
                &[],
            )?;
            Ok(true)
        })
        .unwrap();
    assert!(matches!(
        crate::audit::verify(store).unwrap(),
        crate::audit::Verification::BrokenAt { seq: 4, .. }
    ));
}

/// More distinct statements than a connection keeps prepared (both
/// backends' caches), each right, and the first still right after them.
fn statements_past_the_cache_stay_right(store: &dyn Store) {
    let run = |n: i64| {
        let mut value = None;
        store
            .sql_read(None, &mut |sql| {
                let rows = sql.query(
                    &format!("SELECT CAST($1 AS BIGINT) + {n}"),
                    &[SqlValue::Int(1)],
                )?;
                value = rows[0][0].as_i64();
                Ok(())
            })
            .unwrap();
        value
    };
    for n in 0..300 {
        assert_eq!(run(n), Some(n + 1));
    }
    assert_eq!(run(0), Some(1));
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = crate::sqlite::SqliteStore::open(dir.path()).unwrap();
                    super::$name(&store);
                }
            )*
        }
        mod postgres_backend {
            $(
                #[test]
                fn $name() {
                    let Some(url) = crate::postgres_test::database(stringify!($name)) else { return };
                    let store = crate::postgres::PostgresStore::open(&url).unwrap();
                    super::$name(&store);
                }
            )*
        }
    };
}

/// Clients added, listed and revoked (`passerelle clients`).
fn api_clients_are_added_listed_and_revoked(store: &dyn Store) {
    crate::clients::suite(store);
}

suite!(
    api_clients_are_added_listed_and_revoked,
    journal_keeps_retransmissions_once,
    mapping_outcomes_are_recorded_and_replayable,
    deliveries_keep_patient_order_and_skip_stuck_patients,
    dead_letters_do_not_block_and_can_be_retried,
    leases_expire_and_late_owners_are_told,
    local_delivery_and_purge,
    message_content_is_the_bytes_and_bundles_kept,
    application_acks_fall_due_when_everything_is_over,
    slow_reads_stop_at_their_deadline_and_never_block_other_reads,
    retention_purges_each_class_in_batches,
    statements_past_the_cache_stay_right,
);
