//! The audit records of the command line's actions on the store, in the
//! vocabulary of `passerelle_security::audit`: `clients add` and `clients
//! revoke` and `storage rekey` (DICOM `Security Alert`), `backup` (`Export`: a copy of
//! everything leaves the gateway), `restore` (`Import`), and a patient's
//! rights (`patients export` and `erase`, `Patient Record`:
//! `crate::patient_rights`). Their agent is the command line, `local-admin
//! CLI`, with the system user who ran it (`agent.altId`).
//!
//! `passerelle messages` (`list`, `show`, `replay`, …) is a client of the
//! admin API: the gateway records those requests itself (HTTP API trail),
//! under the key's client, so the command line adds nothing to them.

use passerelle_security::audit::{agents, Action, Agent, Code, Entity, Event, Outcome};
use passerelle_storage::audit::{self, AuditRecord};
use passerelle_storage::{instant_from_ms, now_ms, Store};

/// The client name audit records give the command line.
pub const CLI_CLIENT: &str = "local-admin CLI";

/// The agent of a command: the command line, and the system user running it.
fn agent() -> Agent {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    Agent {
        kind: agents::APPLICATION,
        who: CLI_CLIENT.to_string(),
        alt_id: user,
        address: None,
        requestor: true,
    }
}

/// One record of a command: `kind` and `subtype`, its `action` and
/// outcome, about `patients` (`Patient/{id}` only) and `entity`.
pub fn record(
    kind: Code,
    subtype: Code,
    action: Action,
    outcome: Outcome,
    outcome_desc: &str,
    patients: &[String],
    entity: Entity,
) -> AuditRecord {
    let recorded_ms = now_ms();
    let event = Event::new(kind, subtype, action, instant_from_ms(recorded_ms))
        .outcome(outcome, outcome_desc)
        .agent(agent())
        .patients(patients)
        .entity(entity);
    AuditRecord {
        recorded_ms,
        patients: event.patient_references(),
        event: event.to_json(),
    }
}

/// Appends `record` on its own (an action whose store write is not a
/// transaction of ours, or a refusal); says on standard error when it
/// cannot, and returns whether it was written.
pub fn append(store: &dyn Store, record: AuditRecord, command: &str) -> bool {
    match audit::append(store, &[record]) {
        Ok(()) => true,
        Err(error) => {
            eprintln!("passerelle {command}: the audit record could not be written: {error}");
            false
        }
    }
}
