//! TD0.2: before the first feed of a patient, does the patient have an
//! active DMP, and may this structure feed it. The DMP's own TD0.2
//! message is defined in its integration guide for software vendors,
//! which is not public: this request and answer are Passerelle's stand-in
//! (a SOAP 1.2 request in the namespace [`NAMESPACE`], with the VIHF),
//! answered by the simulator, to be replaced by the DMP's schema when a
//! site holds it. What the connector does with the answer is what the DMP
//! requires: no feed without an active DMP and the patient's consent.

use cda::xml::{parse, Element};

use xds::write::Addressing;

/// The SOAP action of Passerelle's TD0.2 stand-in.
pub const ACTION: &str = "urn:passerelle:dmp:TD0.2:PatientStatus";
pub const ACTION_RESPONSE: &str = "urn:passerelle:dmp:TD0.2:PatientStatusResponse";
/// The namespace of its request and answer.
pub const NAMESPACE: &str = "urn:passerelle:dmp:td0.2";

/// A patient's DMP as TD0.2 tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmpState {
    Active,
    Closed,
    /// The patient has no DMP.
    Absent,
}

impl DmpState {
    pub fn as_str(self) -> &'static str {
        match self {
            DmpState::Active => "active",
            DmpState::Closed => "closed",
            DmpState::Absent => "none",
        }
    }

    pub fn parse(text: &str) -> Option<DmpState> {
        match text {
            "active" => Some(DmpState::Active),
            "closed" => Some(DmpState::Closed),
            "none" => Some(DmpState::Absent),
            _ => None,
        }
    }
}

/// The TD0.2 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatientStatus {
    pub state: DmpState,
    /// Whether this structure may feed it (the patient has not opposed).
    pub feeding_authorized: bool,
}

/// The request about `patient` (INS CX).
pub fn write_request(patient: &str, addressing: &Addressing, security: Option<&str>) -> String {
    let body = format!(
        "<td:PatientStatusRequest xmlns:td=\"{NAMESPACE}\"><td:PatientId>{}</td:PatientId></td:PatientStatusRequest>",
        quick_xml::escape::escape(patient)
    );
    xds::query::soap_request(ACTION, addressing, security, &body)
}

/// The patient a request is about.
pub fn read_request(envelope: &xds::query::Envelope) -> Option<String> {
    envelope
        .body()
        .filter(|b| {
            b.name.namespace.as_deref() == Some(NAMESPACE) && b.name.name == "PatientStatusRequest"
        })?
        .child_in(NAMESPACE, "PatientId")
        .and_then(Element::clean_text)
}

/// The answer.
pub fn write_answer(status: PatientStatus, relates_to: Option<&str>) -> String {
    let body = format!(
        "<td:PatientStatusResponse xmlns:td=\"{NAMESPACE}\" dmp=\"{}\" feedingAuthorized=\"{}\"/>",
        status.state.as_str(),
        status.feeding_authorized
    );
    xds::query::soap_answer(ACTION_RESPONSE, relates_to, &body)
}

/// Reads an answer; `None` when it is not one.
pub fn read_answer(body: &[u8]) -> Option<PatientStatus> {
    let limits = cda::Limits {
        max_bytes: 64 * 1024,
        max_depth: 16,
    };
    let root = parse(body, &limits).ok()?;
    let answer = root.descendants().into_iter().find(|e| {
        e.name.namespace.as_deref() == Some(NAMESPACE) && e.name.name == "PatientStatusResponse"
    })?;
    Some(PatientStatus {
        state: DmpState::parse(answer.attr("dmp")?)?,
        feeding_authorized: answer.attr("feedingAuthorized")? == "true",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_read_back() {
        let addressing = Addressing {
            to: "http://x".into(),
            message_id: "urn:uuid:1".into(),
        };
        let text = write_request("1^^^&1.2&ISO^NH", &addressing, None);
        let envelope = xds::query::read_envelope("application/soap+xml", text.as_bytes()).unwrap();
        assert_eq!(envelope.action.as_deref(), Some(ACTION));
        assert_eq!(read_request(&envelope).as_deref(), Some("1^^^&1.2&ISO^NH"));
        for status in [
            PatientStatus {
                state: DmpState::Active,
                feeding_authorized: true,
            },
            PatientStatus {
                state: DmpState::Closed,
                feeding_authorized: false,
            },
        ] {
            assert_eq!(
                read_answer(write_answer(status, None).as_bytes()),
                Some(status)
            );
        }
        assert_eq!(read_answer(b"<x/>"), None);
    }
}
