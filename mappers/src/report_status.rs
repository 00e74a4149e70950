//! A DiagnosticReport's status from its Observations' statuses, one rule
//! for every lab report the mappers write (HPRIM files, CDA CR-BIO).

/// The report's status from its results'.
pub(crate) fn from_results(statuses: &[&str]) -> &'static str {
    let counted: Vec<&&str> = statuses
        .iter()
        .filter(|s| !matches!(**s, "cancelled" | "entered-in-error"))
        .collect();
    if counted.is_empty() {
        return if statuses.is_empty() {
            "registered"
        } else {
            "cancelled"
        };
    }
    if counted.iter().all(|s| matches!(**s, "final" | "corrected")) {
        if counted.iter().any(|s| **s == "corrected") {
            "corrected"
        } else {
            "final"
        }
    } else if counted
        .iter()
        .any(|s| matches!(**s, "final" | "corrected" | "preliminary"))
    {
        "partial"
    } else {
        "registered"
    }
}
