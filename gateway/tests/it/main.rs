//! The gateway's integration tests, in one binary: each module starts the
//! real `passerelle` binary (or talks to its parts) on free loopback ports.
//! One binary links the world once instead of once per file.

mod common;
mod delivery;

mod access_control;
mod admin_api;
mod application_acks;
mod audit_syslog;
mod audit_trail;
mod backup;
mod cda_documents;
mod cli;
mod conformance;
mod convert_cli;
mod convert_data;
mod crate_graph;
mod delivery_auth;
mod delivery_faults;
mod delivery_postgres;
mod delivery_tls;
mod dmp;
mod docker_compose;
mod docs_routing;
mod durability;
mod encryption_at_rest;
mod fhir_clients;
mod fhir_proxy;
mod fhir_repository;
mod fhir_validation;
mod fhir_xml;
mod fuzz_corpus;
mod hl7v2_queries;
mod hprim_intake;
mod http_limits;
mod jwt_clients;
mod mllp_limits;
mod no_patient_data_in_logs;
mod patient_rights;
mod patient_summary;
mod peer_mllp_client;
mod script_hot_reload;
mod shutdown;
mod tls_listeners;
