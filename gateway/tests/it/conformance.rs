//! Runs the whole conformance suite against a real gateway process (on the
//! shipped lab sample configuration, `deploy/passerelle.lab.toml`), then
//! checks from the journal that every accepted corpus message is stored
//! exactly once.

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_against_a_running_gateway() {
    // The lab sample configuration: the embedded defaults plus the CI-SIS
    // header settings the CDA golden cases need.
    let gateway = common::Gateway::start_with(common::Options {
        args: vec![
            "--config".to_string(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/passerelle.lab.toml").to_string(),
        ],
        ..common::Options::default()
    });
    let corpus = common::shared_corpus();
    if corpus.is_none() {
        println!("../shared/corpus not found: corpus cases skip themselves");
    }
    let target = conformance_tests::Target {
        base_url: gateway.base_url(),
        mllp_addr: Some(gateway.mllp_addr.to_string()),
        corpus_dir: corpus.clone(),
        api_key: Some(common::TEST_KEY.to_string()),
    };
    let reports = conformance_tests::run_all(&target, None).await;
    let failed = conformance_tests::print_reports(&reports);
    assert!(!reports.is_empty());
    assert_eq!(
        failed,
        0,
        "conformance failures; gateway log:\n{}",
        gateway.logs()
    );

    // Sending the corpus a second time must not store anything twice.
    if let Some(corpus) = corpus {
        let before = journal_count(&gateway);
        let again = conformance_tests::run_all(&target, Some("corpus over MLLP")).await;
        assert_eq!(conformance_tests::print_reports(&again), 0);
        assert_eq!(
            journal_count(&gateway),
            before,
            "a resent corpus was stored twice"
        );
        let samples = conformance_tests::corpus::hl7v2_samples(&corpus);
        passerelle_storage::sqlite::absorb_inbox(gateway.data_dir(), None).unwrap();
        let connection =
            rusqlite::Connection::open(gateway.data_dir().join("passerelle.db")).unwrap();
        for sample in samples
            .iter()
            .filter(|s| s.message_type() != "ACK" && s.deserved_nak().is_none())
        {
            let copies: i64 = connection
                .query_row(
                    "SELECT count(*) FROM journal WHERE control_id = ?1 AND raw = ?2",
                    rusqlite::params![sample.control_id(), sample.payload],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(
                copies,
                1,
                "{}: {copies} copies in the journal",
                sample.name()
            );
        }
    }
}

fn journal_count(gateway: &common::Gateway) -> i64 {
    // What the journal acknowledged and its inbox (journal.db) still holds
    // counts too.
    passerelle_storage::sqlite::absorb_inbox(gateway.data_dir(), None).unwrap();
    let connection = rusqlite::Connection::open(gateway.data_dir().join("passerelle.db")).unwrap();
    connection
        .query_row("SELECT count(*) FROM journal", [], |row| row.get(0))
        .unwrap()
}
