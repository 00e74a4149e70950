//! The audit records of deliveries: one AuditEvent per delivery attempt
//! (DICOM `Export`, subtype `delivery`, action `R`, as IHE BALP records
//! data leaving a system), in the vocabulary of
//! `passerelle_security::audit`, written in the transaction that records
//! the attempt (`Store::record_attempt_audited`; for the `local` target,
//! the repository transaction that stores the Bundles,
//! `passerelle_storage::attempts::record_local`).
//!
//! A record names the gateway (source) and the target (destination), the
//! message (journal id, MSH-10), the attempt's number, result and HTTP
//! status, never the target's answer (which may repeat the Bundle). Its
//! patients are the repository's (`Patient/{id}`): known for the `local`
//! target, which stores the Bundle in the repository; a FHIR target's own
//! ids are not the repository's, so its records name the message only.

use passerelle_security::audit::{
    agents, roles, types, Action, Agent, Code, Entity, Event, Outcome, PASSERELLE_SUBTYPE,
};
use passerelle_storage::audit::AuditRecord;
use passerelle_storage::{instant_from_ms, now_ms, Attempt, AttemptResult, Delivery};

const DELIVERY: Code = Code::new(PASSERELLE_SUBTYPE, "delivery", "Delivery to a target");

/// The record of `attempt` to deliver `delivery`; `patients` as
/// `Patient/{id}` of the repository, when known.
pub(crate) fn attempt_record(
    delivery: &Delivery,
    attempt: &Attempt,
    patients: &[String],
) -> AuditRecord {
    let recorded_ms = now_ms();
    let status = attempt
        .status
        .map_or("no answer".to_string(), |status| format!("HTTP {status}"));
    let (outcome, said) = match (&attempt.result, attempt.status) {
        (AttemptResult::Delivered, None) => (
            Outcome::Success,
            "delivered: stored in the repository".to_string(),
        ),
        (AttemptResult::Delivered, Some(_)) => (Outcome::Success, format!("delivered ({status})")),
        (AttemptResult::Retry { .. }, _) => (
            Outcome::MinorFailure,
            format!("not delivered, to be retried ({status})"),
        ),
        (AttemptResult::Dead, _) => (
            Outcome::SeriousFailure,
            format!("not delivered, refused for good: a dead letter ({status})"),
        ),
    };
    let destination = Agent {
        kind: agents::DESTINATION,
        who: delivery.target.clone(),
        alt_id: String::new(),
        address: None,
        requestor: false,
    };
    let event = Event::new(
        types::EXPORT,
        DELIVERY,
        Action::Read,
        instant_from_ms(recorded_ms),
    )
    .outcome(outcome, said)
    .agent(Agent::gateway(agents::SOURCE, true))
    .agent(destination)
    .patients(patients)
    .entity(
        Entity::new(
            Some(roles::REPORT),
            format!(
                "message {} delivered to target {}",
                delivery.journal_id, delivery.target
            ),
        )
        .identified(delivery.control_id.clone())
        .detail("journal id", delivery.journal_id.to_string())
        .detail("MSH-10", delivery.control_id.clone())
        .detail("delivery", delivery.outbox_id.to_string())
        .detail("target", delivery.target.clone())
        .detail("attempt", delivery.attempt.to_string())
        .detail("result", attempt.result.label())
        .detail(
            "HTTP status",
            attempt.status.map(|s| s.to_string()).unwrap_or_default(),
        ),
    );
    AuditRecord {
        recorded_ms,
        patients: event.patient_references(),
        event: event.to_json(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_record_names_target_message_and_outcome_only() {
        let delivery = Delivery {
            outbox_id: 7,
            journal_id: 42,
            target: "dmp".into(),
            control_id: "C42".into(),
            attempt: 2,
            bundle:
                r#"{"resourceType":"Bundle","entry":[{"resource":{"name":[{"family":"DUPONT"}]}}]}"#
                    .into(),
            networks: vec!["nord".into()],
        };
        let attempt = Attempt {
            started_at_ms: 1,
            latency_ms: 3,
            status: Some(503),
            result: AttemptResult::Retry {
                next_attempt_at_ms: 10,
            },
            detail: Some("DUPONT".into()),
            reason: Default::default(),
        };
        let record = attempt_record(&delivery, &attempt, &[]);
        let event: serde_json::Value = serde_json::from_str(&record.event).unwrap();
        assert_eq!(event["type"]["code"], "110106");
        assert_eq!(event["subtype"][0]["code"], "delivery");
        assert_eq!(event["outcome"], "4");
        assert_eq!(event["agent"][1]["who"]["display"], "dmp");
        assert_eq!(event["agent"][1]["requestor"], false);
        assert_eq!(event["entity"][0]["what"]["identifier"]["value"], "C42");
        assert!(!record.event.contains("DUPONT"));
        let stored = attempt_record(
            &delivery,
            &Attempt::stored_locally(5),
            &["Patient/p9".to_string()],
        );
        assert_eq!(stored.patients, ["Patient/p9"]);
        assert!(stored.event.contains("\"outcome\":\"0\""));
    }
}
