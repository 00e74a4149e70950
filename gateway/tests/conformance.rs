//! Runs the whole conformance suite against a real gateway process.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_against_a_running_gateway() {
    let gateway = common::Gateway::start();
    let target = conformance_tests::Target {
        base_url: gateway.base_url(),
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
}
