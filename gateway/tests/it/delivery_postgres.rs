//! Two gateway instances on one PostgreSQL database deliver one outbox:
//! every delivery is made exactly once (one attempt per outbox row, no
//! lease lost), each patient's messages reach the target in order, and the
//! target's counts are exact. Uses the PostgreSQL server of this machine
//! (started when stopped; required in CI) and the FHIR server peer.

use crate::delivery;

use std::time::Duration;

use crate::delivery::{
    adt_update, config_with_timeout, send_mllp, start_gateway, wait_all_delivered, Fault,
    FaultProxy, Upstream,
};

#[test]
fn two_instances_never_deliver_the_same_outbox_entry_twice() {
    // A fresh database on this machine's PostgreSQL (started when stopped;
    // required in CI), shared with the storage and repository suites.
    let Some(url) = passerelle_storage::postgres_test::database("two_instances") else {
        return;
    };
    let Some(upstream) = Upstream::start() else {
        return;
    };
    // Slow answers (never past the timeout) keep deliveries in flight on
    // both instances at once.
    let proxy = FaultProxy::start(upstream.port, Fault::Slow { max_ms: 400 });
    let dir = tempfile::tempdir().unwrap();
    let storage = |id: &str| {
        format!(
            "[storage]\nbackend = \"postgres\"\npostgres_url = \"{url}\"\ninstance_id = \"{id}\"\n"
        )
    };
    let first = start_gateway(
        &config_with_timeout(proxy.port, &storage("a"), 10),
        dir.path(),
        None,
    );
    let second = start_gateway(
        &config_with_timeout(proxy.port, &storage("b"), 10),
        dir.path(),
        None,
    );
    let total = 80u64;
    for n in 0..total {
        // One sender, alternating instances: the journal order is the
        // sending order, whichever instance received the message.
        let gateway = if n % 2 == 0 { &first } else { &second };
        let codes = send_mllp(
            gateway.mllp_addr,
            &[adt_update(&format!("PG{n}"), (n % 10) as u32, n)],
        );
        assert_eq!(codes, ["AA"]);
    }
    wait_all_delivered(&first, total as usize, Duration::from_secs(120));
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT outbox_id),
                count(*) FILTER (WHERE result = 'delivered'),
                count(*) FILTER (WHERE result = 'lease_lost'),
                count(DISTINCT instance)
             FROM delivery_attempts",
            &[],
        )
        .unwrap();
    let (attempts, rows, delivered, lost, instances): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(rows, total as i64, "one outbox row per message");
    assert_eq!(attempts, total as i64, "one attempt per outbox row");
    assert_eq!(delivered, total as i64);
    assert_eq!(lost, 0);
    eprintln!("deliveries made by {instances} instance(s)");
    delivery::assert_each_delivered_once(&second);
    assert_eq!(upstream.settled_count("Patient", 10), 10);
    proxy.assert_each_accepted_once(total);
    proxy.assert_in_order_per_patient();
    for patient in 0..10u64 {
        let last = (0..total).filter(|n| n % 10 == patient).max().unwrap();
        assert_eq!(
            upstream.patient_given_name(&format!("P{patient}")),
            format!("N{last}")
        );
    }
}
