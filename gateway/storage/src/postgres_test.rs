//! A fresh PostgreSQL database per test, for the storage suite here and
//! the repository's suite (feature `test-support`); test code only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Server URL without a database name; `PASSERELLE_TEST_POSTGRES`
/// overrides it.
pub fn server() -> String {
    std::env::var("PASSERELLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432".to_string())
}

/// A fresh, empty database named after `test`; `None` (the test is
/// skipped, saying so) when no server can be reached outside CI.
pub fn database(test: &str) -> Option<String> {
    let admin = format!("{}/postgres", server());
    let mut client = match postgres::Client::connect(&admin, postgres::NoTls) {
        Ok(client) => client,
        Err(_) => {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
                .status();
            match postgres::Client::connect(&admin, postgres::NoTls) {
                Ok(client) => client,
                Err(error) => {
                    if std::env::var_os("CI").is_some()
                        || std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_some()
                    {
                        panic!("PostgreSQL is required in CI: {error}");
                    }
                    eprintln!("skipped: no PostgreSQL at {admin}: {error}");
                    return None;
                }
            }
        }
    };
    let name = format!("passerelle_test_{}_{}", test, std::process::id());
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    Some(format!("{}/{name}", server()))
}
