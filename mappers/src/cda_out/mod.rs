//! FHIR R4 to CI-SIS CDA R2 documents.
