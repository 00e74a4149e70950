//! Every CI-SIS example of the shared corpus (read in place from
//! `../shared/corpus`, never copied) reads; the CR-BIO ones give their
//! results. Without the corpus the test says so and passes, unless
//! PASSERELLE_REQUIRE_PEERS is set (CI sets it).

use std::path::PathBuf;

use cda::{read, Body, Value};

pub fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus"
    ));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
        "../shared/corpus is required (PASSERELLE_REQUIRE_PEERS is set): {} is missing",
        dir.display()
    );
    println!("skipped: {} is missing", dir.display());
    None
}

/// The CI-SIS example documents.
pub fn examples() -> Vec<PathBuf> {
    let Some(corpus) = corpus() else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(corpus.join("ansforge-testcontenucda-3-0/ExemplesCDA"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "xml"))
            .collect();
    out.sort();
    out
}

#[test]
fn every_ci_sis_example_reads() {
    let examples = examples();
    if examples.is_empty() {
        return;
    }
    assert!(examples.len() >= 37, "only {} examples", examples.len());
    for path in &examples {
        let bytes = std::fs::read(path).unwrap();
        let document = read(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let header = &document.header;
        assert!(header.id.is_some(), "{}: no id", path.display());
        assert_eq!(header.record_targets.len(), 1, "{}", path.display());
        assert!(!header.authors.is_empty(), "{}", path.display());
        assert!(header.custodian.is_some(), "{}", path.display());
        assert!(
            !matches!(document.body, Body::Missing),
            "{}",
            path.display()
        );
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("BIO-CR-BIO") {
            let lab = document.lab.as_ref().unwrap();
            assert!(!lab.observations.is_empty(), "{name}: no result");
        }
    }
}

#[test]
fn tsh_results_are_exact() {
    let Some(path) = examples()
        .into_iter()
        .find(|p| p.ends_with("BIO-CR-BIO_2024.01_TSH_1.xml"))
    else {
        return;
    };
    let document = read(&std::fs::read(path).unwrap()).unwrap();
    let patient = &document.header.record_targets[0];
    assert_eq!(patient.ids[0].root.as_deref(), Some("1.2.250.1.213.1.4.10"));
    assert_eq!(patient.names[0].family[0].qualifier.as_deref(), Some("BR"));
    let lab = document.lab.unwrap();
    let tsh = &lab.observations[0];
    assert_eq!(tsh.code.code.as_deref(), Some("3016-3"));
    assert_eq!(
        tsh.code.original_text.as_deref(),
        Some("Thyréostimuline (TSH)")
    );
    match &tsh.value {
        Some(Value::Quantity(q)) => assert_eq!(
            (q.value.as_deref(), q.unit.as_deref()),
            (Some("1.950"), Some("m[IU]/L"))
        ),
        other => panic!("{other:?}"),
    }
    match &tsh.reference_ranges[0].value {
        Some(Value::Interval { low, high }) => {
            assert_eq!(
                low.as_ref().unwrap().quantity.value.as_deref(),
                Some("0.270")
            );
            assert_eq!(
                high.as_ref().unwrap().quantity.value.as_deref(),
                Some("4.200")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn microbiology_isolates_come_from_their_sample() {
    let Some(path) = examples()
        .into_iter()
        .find(|p| p.ends_with("BIO-CR-BIO_2024.01_Microbiologie_V2.xml"))
    else {
        return;
    };
    let document = read(&std::fs::read(path).unwrap()).unwrap();
    let lab = document.lab.unwrap();
    let isolates: Vec<_> = lab
        .specimens
        .iter()
        .filter(|s| s.class_code.as_deref() == Some("MIC"))
        .collect();
    assert_eq!(isolates.len(), 2);
    assert!(isolates.iter().all(|s| s.parent.is_some()));
    assert!(!lab.comments.is_empty());
    assert_eq!(
        document.header.related_documents[0].type_code.as_deref(),
        Some("RPLC")
    );
}
