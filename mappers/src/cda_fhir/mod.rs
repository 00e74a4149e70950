//! CI-SIS CDA R2 documents to FHIR R4 transaction Bundles.
