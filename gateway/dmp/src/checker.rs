//! The CDA checker: an external program run on each document (the ANS's
//! CDA schema and schematrons, `../shared/peers/validate_cda.sh`, or a
//! site's own), by the connector before sending (`dmp.cda_checker`) and by
//! the simulator on receipt (`--cda-checker`). It is given the document
//! as a file; exit 0 passes, exit 1 refuses, exit 2 ("could not check
//! fully", e.g. a schematron the ANS material lacks, or a level-1 document
//! that names no model) passes: the document is not at fault.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Files of concurrent checks never collide.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Runs `checker` (a bash script) on `bytes`.
pub fn check_cda(checker: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!(
        "passerelle-cda-check-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("CDA checker: {e}"))?;
    let file = dir.join("document.xml");
    let output = std::fs::write(&file, bytes)
        .map_err(|e| format!("CDA checker: {e}"))
        .and_then(|()| {
            std::process::Command::new("bash")
                .arg(checker)
                .arg(&file)
                .output()
                .map_err(|e| format!("CDA checker: {e}"))
        });
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    if output.status.success() || output.status.code() == Some(2) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("FAIL") || l.contains("error") || l.contains("ERROR"))
        .take(3)
        .collect();
    Err(format!(
        "the CDA fails the ANS schema or schematron: {}",
        summary.join(" / ")
    ))
}
