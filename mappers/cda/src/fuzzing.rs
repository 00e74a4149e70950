//! The checks the fuzz target runs on every input, shared with the plain
//! test that replays the fuzz corpus: nothing may panic, an error names a
//! place inside the input, and what reads holds together (indexes between
//! results and specimens resolve).

use crate::error::CdaError;
use crate::model::Document;
use crate::xml::Limits;

/// Reads `data` with small limits and with the default ones, and checks
/// what comes out.
#[doc(hidden)]
pub fn fuzz_read(data: &[u8]) {
    let small = Limits {
        max_bytes: 64 * 1024,
        max_depth: 16,
    };
    for limits in [small, Limits::default()] {
        match crate::read_with_limits(data, &limits) {
            Ok(document) => check_document(&document),
            Err(error) => check_error(data, &error),
        }
    }
}

fn check_error(data: &[u8], error: &CdaError) {
    let lines = 1 + data.iter().filter(|b| **b == b'\n').count();
    assert!(
        error.line >= 1 && error.line <= lines,
        "error line out of the input"
    );
    assert!(error.column >= 1, "error column not 1-based");
    assert!(error.path.starts_with('/'), "error path not absolute");
}

fn check_document(document: &Document) {
    if let Some(lab) = &document.lab {
        for observation in &lab.observations {
            if let Some(specimen) = observation.specimen {
                assert!(specimen < lab.specimens.len(), "dangling specimen");
            }
            for member in &observation.members {
                assert!(*member < lab.observations.len(), "dangling member");
            }
        }
        for (index, specimen) in lab.specimens.iter().enumerate() {
            if let Some(parent) = specimen.parent {
                assert!(parent < index, "a specimen's parent comes after it");
            }
        }
    }
}
