//! Unit tests of the SIU, VXU and ORM/OML mappers on small hand-written
//! messages.

use serde_json::Value;

use super::tests::{cited, full_urls, map_text, map_with, resources};
use crate::mapping::{MappingErrorKind, SiteSettings};

/// An SIU message: `event`, SCH-1/2, SCH-6 event reason, SCH-11 start and
/// end, SCH-25 filler status, AIP-12 resource status.
fn siu(event: &str, start: &str, end: &str, reason: &str, status: &str) -> String {
    // SCH-12 to SCH-24 are empty.
    let empty = "|".repeat(13);
    format!(
        "MSH|^~\\&|DOCTOLIB|DOCTOLIB|CABINET|CAB01|20240310101500+0100||SIU^{event}^SIU_S12|MSG-{event}|P|2.5.1\r\
         SCH|PLC-77|RDV-1001^DOCTOLIB||||{reason}|CONSULT^Consultation de suivi^L|NORMAL|20|min|^^^{start}^{end}{empty}|{status}\r\
         NTE|1||Premier rendez-vous\r\
         PID|1||123456^^^CAB01^PI||MARTIN^JEANNE||19800101|F\r\
         RGS|1\r\
         AIP|1||10001234567^DUPONT^PIERRE^^^^^^RPPS|MG^Médecin généraliste^L||{start}|||20|min||{status}\r"
    )
}

fn entry_of<'v>(bundle: &'v Value, kind: &str) -> &'v Value {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == kind)
        .unwrap()
}

#[test]
fn siu_s12_books_the_appointment() {
    let raw = siu(
        "S12",
        "202403151030+0100",
        "202403151050+0100",
        "NEW",
        "Booked",
    );
    let bundle = map_text(&raw).unwrap();
    let appointment = resources(&bundle, "Appointment")[0];
    assert_eq!(appointment["status"], "booked");
    assert_eq!(appointment["start"], "2024-03-15T10:30:00+01:00");
    assert_eq!(appointment["end"], "2024-03-15T10:50:00+01:00");
    assert_eq!(appointment["minutesDuration"], 20);
    assert_eq!(appointment["description"], "Consultation de suivi");
    assert_eq!(appointment["reasonCode"][0]["coding"][0]["code"], "CONSULT");
    assert_eq!(
        appointment["appointmentType"]["coding"][0]["code"],
        "NORMAL"
    );
    assert_eq!(appointment["comment"], "Premier rendez-vous");
    assert!(appointment.get("cancelationReason").is_none());
    let ids = appointment["identifier"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0]["value"], "PLC-77");
    assert_eq!(ids[0]["type"]["coding"][0]["code"], "PLAC");
    assert_eq!(ids[1]["value"], "RDV-1001");
    assert_eq!(ids[1]["system"], "urn:passerelle:authority:DOCTOLIB");
    assert_eq!(ids[1]["type"]["coding"][0]["code"], "FILL");

    let participants = appointment["participant"].as_array().unwrap();
    assert_eq!(participants.len(), 2);
    let patient_url = entry_of(&bundle, "Patient")["fullUrl"].as_str().unwrap();
    let practitioner_url = entry_of(&bundle, "Practitioner")["fullUrl"]
        .as_str()
        .unwrap();
    assert_eq!(participants[0]["actor"]["reference"], patient_url);
    assert_eq!(participants[0]["status"], "accepted");
    assert_eq!(participants[1]["actor"]["reference"], practitioner_url);
    assert_eq!(participants[1]["status"], "accepted");
    assert_eq!(participants[1]["type"][0]["coding"][0]["code"], "MG");

    // The booking is written by its filler ID; the patient only created.
    let request = &entry_of(&bundle, "Appointment")["request"];
    assert_eq!(request["method"], "PUT");
    assert_eq!(
        request["url"],
        "Appointment?identifier=urn%3Apasserelle%3Aauthority%3ADOCTOLIB%7CRDV-1001"
    );
    let patient_request = &entry_of(&bundle, "Patient")["request"];
    assert_eq!(patient_request["method"], "POST");
    assert!(patient_request["ifNoneExist"].is_string());
}

#[test]
fn siu_s13_reschedules_the_same_appointment() {
    let booked = map_text(&siu(
        "S12",
        "202403151030+0100",
        "202403151050+0100",
        "NEW",
        "Booked",
    ))
    .unwrap();
    let moved = map_text(&siu(
        "S13",
        "202403181400+0100",
        "202403181420+0100",
        "MOVE",
        "Booked",
    ))
    .unwrap();
    let first = entry_of(&booked, "Appointment");
    let second = entry_of(&moved, "Appointment");
    assert_eq!(first["fullUrl"], second["fullUrl"]);
    assert_eq!(first["request"], second["request"]);
    assert_eq!(second["resource"]["start"], "2024-03-18T14:00:00+01:00");
    assert_eq!(second["resource"]["status"], "booked");
    // Replaying a message gives the same Bundle.
    let again = map_text(&siu(
        "S13",
        "202403181400+0100",
        "202403181420+0100",
        "MOVE",
        "Booked",
    ))
    .unwrap();
    assert_eq!(moved, again);
}

#[test]
fn siu_s15_cancels() {
    let raw = siu(
        "S15",
        "202403151030+0100",
        "202403151050+0100",
        "PATCANCEL^Annulé par le patient^L",
        "Cancelled",
    );
    let bundle = map_text(&raw).unwrap();
    let appointment = resources(&bundle, "Appointment")[0];
    assert_eq!(appointment["status"], "cancelled");
    assert_eq!(
        appointment["cancelationReason"]["coding"][0]["code"],
        "PATCANCEL"
    );
    assert_eq!(appointment["participant"][1]["status"], "declined");
}

#[test]
fn siu_s26_is_a_no_show_and_s17_a_deletion() {
    let raw = siu(
        "S26",
        "202403151030+0100",
        "202403151050+0100",
        "NOSHOW",
        "Noshow",
    );
    let bundle = map_text(&raw).unwrap();
    assert_eq!(resources(&bundle, "Appointment")[0]["status"], "noshow");
    let raw = siu(
        "S17",
        "202403151030+0100",
        "202403151050+0100",
        "DEL",
        "Deleted",
    );
    let bundle = map_text(&raw).unwrap();
    assert_eq!(
        resources(&bundle, "Appointment")[0]["status"],
        "entered-in-error"
    );
}

#[test]
fn minimal_online_booking_takes_the_time_from_the_resource() {
    // No TQ anywhere: the practitioner's start and duration make the slot.
    let raw = "MSH|^~\\&|BOOK|WEB|PMS|CAB|20240310101500||SIU^S12|1|P|2.5\r\
               SCH||RDV-9^WEB\r\
               PID|1||42^^^CAB^PI||DURAND^PAUL\r\
               RGS|1\r\
               AIP|1||RPPS1^MOREAU^ANNE|||20240315093000|||15\r";
    let bundle = map_text(raw).unwrap();
    let appointment = resources(&bundle, "Appointment")[0];
    assert_eq!(appointment["status"], "booked");
    // No zone in the message: the site's (Paris).
    assert_eq!(appointment["start"], "2024-03-15T09:30:00+01:00");
    assert_eq!(appointment["end"], "2024-03-15T09:45:00+01:00");
    assert!(appointment.get("minutesDuration").is_none());
    assert_eq!(appointment["participant"].as_array().unwrap().len(), 2);
    assert!(bundle.to_string().find("\"\"").is_none());
}

/// The patient group's OBX are Observations of that patient, which the
/// Appointment cites; an NTE after an AIS is not the OBX's comment.
#[test]
fn siu_patient_observations_are_supporting_information() {
    let raw = "MSH|^~\\&|BOOK|WEB|PMS|CAB|20240310101500||SIU^S12|1|P|2.5\r\
               SCH||RDV-9^WEB\r\
               PID|1||42^^^CAB^PI||DURAND^PAUL\r\
               OBX|1|NM|8867-4^Heart rate^LN||72|/min^^UCUM|60-100||||F|||20240310\r\
               NTE|1||Au repos\r\
               OBX|2|NM|29463-7^Body weight^LN||71.50|kg^^UCUM|||||F\r\
               RGS|1\r\
               AIS|1||CONSULT^Consultation^L\r\
               NTE|1||Venir à jeun\r\
               AIP|1||RPPS1^MOREAU^ANNE|||20240315093000|||15\r";
    let (bundle, text) = map_with(raw, &SiteSettings::default()).unwrap();
    assert!(text.contains(r#""value":71.50"#), "{text}");
    let observations = resources(&bundle, "Observation");
    assert_eq!(observations.len(), 2);
    let patient = entry_of(&bundle, "Patient")["fullUrl"].clone();
    for observation in &observations {
        assert_eq!(observation["subject"]["reference"], patient);
        assert!(observation.get("category").is_none());
    }
    assert_eq!(observations[0]["note"][0]["text"], "Au repos");
    assert!(observations[1].get("note").is_none(), "{}", observations[1]);
    let appointment = resources(&bundle, "Appointment")[0];
    assert_eq!(
        cited(&appointment["supportingInformation"]),
        full_urls(&bundle, "Observation")
    );
    // The same message again gives the same Observations.
    assert_eq!(map_text(raw).unwrap(), bundle);
}

#[test]
fn siu_with_tq1_and_sch_duration_in_seconds() {
    let raw = "MSH|^~\\&|S|F|R|G|20240310101500+0100||SIU^S14^SIU_S12|1|P|2.6\r\
               SCH||A-1^S|||||||1800|s|||||||||||||||Pending\r\
               TQ1|1||||||202403151000+0100\r\
               PID|1||42^^^CAB^PI||DURAND^PAUL\r";
    let bundle = map_text(raw).unwrap();
    let appointment = resources(&bundle, "Appointment")[0];
    assert_eq!(appointment["status"], "pending");
    assert_eq!(appointment["minutesDuration"], 30);
    assert_eq!(appointment["end"], "2024-03-15T10:30:00+01:00");
    assert_eq!(appointment["participant"][0]["status"], "needs-action");
}

#[test]
fn siu_errors_name_the_field() {
    // A booked appointment needs its time.
    let raw = "MSH|^~\\&|S|F|R|G|20240310101500||SIU^S12|1|P|2.5\rSCH||A-1^S\rPID|1||42^^^CAB^PI||DURAND^PAUL\r";
    let error = map_text(raw).unwrap_err();
    assert!(error.to_string().starts_with("SCH-11: "), "{error}");
    // ... but a cancellation does not.
    let raw = "MSH|^~\\&|S|F|R|G|20240310101500||SIU^S15|1|P|2.5\rSCH||A-1^S\rPID|1||42^^^CAB^PI||DURAND^PAUL\r";
    let bundle = map_text(raw).unwrap();
    assert!(resources(&bundle, "Appointment")[0].get("start").is_none());
    // No appointment ID.
    let raw = "MSH|^~\\&|S|F|R|G|20240310101500||SIU^S12|1|P|2.5\rSCH\rPID|1||42^^^CAB^PI\r";
    assert!(map_text(raw)
        .unwrap_err()
        .to_string()
        .starts_with("SCH-2: "));
    // A bad start, and an end before the start.
    let raw = siu(
        "S12",
        "20240315253000",
        "202403151050+0100",
        "NEW",
        "Booked",
    );
    assert!(map_text(&raw)
        .unwrap_err()
        .to_string()
        .starts_with("SCH-11: "));
    let raw = siu(
        "S12",
        "202403151030+0100",
        "202403151000+0100",
        "NEW",
        "Booked",
    );
    let error = map_text(&raw).unwrap_err();
    assert_eq!(
        error.to_string(),
        "SCH-11: the appointment ends before it starts"
    );
    // An unknown filler status.
    let raw = siu(
        "S14",
        "202403151030+0100",
        "202403151050+0100",
        "NEW",
        "Maybe",
    );
    assert!(map_text(&raw)
        .unwrap_err()
        .to_string()
        .starts_with("SCH-25: "));
}

const VXU: &str = "MSH|^~\\&|EHR|CAB01|IIS|ARS|20240310101500+0100||VXU^V04^VXU_V04|V1|P|2.5.1\r\
PID|1||123456^^^CAB01^PI||MARTIN^JEANNE||20230101|F\r\
ORC|RE||IZ-1^CAB01|||||||||10001234567^DUPONT^PIERRE^^^^^^RPPS\r\
RXA|0|1|20240310093000+0100||3400930235427^VAXELIS^CIP|0.50|mL^mL^UCUM||00^New record^NIP001|10001234567^DUPONT^PIERRE^^^^^^RPPS|^^^CAB01||||X123|20250131|SAN^Sanofi Pasteur^MVX|||CP|A\r\
RXR|C28161^Intramuscular^NCIT|LT^Left Thigh^HL70163\r\
OBX|1|CE|64994-7^Vaccine funding program eligibility^LN|1|V01^Not VFC eligible^HL70064||||||F\r\
OBX|2|CE|69764-9^Document type^LN|2|253088698300012711120420^Multi Vaccine VIS^cdcgs1vis||||||F\r\
OBX|3|DT|29769-7^VIS presented^LN|2|20240310||||||F\r\
ORC|RE||IZ-2^CAB01\r\
RXA|0|1|20240310||08^Hep B^CVX|999||||||||||||00^Parental decision^NIP002||RE\r\
ORC|RE\r\
RXA|0|1|2020||03^MMR^CVX|999|||01^Historical^NIP001|||||||||||CP\r";

#[test]
fn vxu_doses_keep_their_exact_amount_and_status() {
    let (bundle, text) = map_with(VXU, &SiteSettings::default()).unwrap();
    // The dose is written as sent, not as 0.5.
    assert!(text.contains("\"value\":0.50"), "{text}");
    let immunizations = resources(&bundle, "Immunization");
    assert_eq!(immunizations.len(), 3);

    let given = immunizations[0];
    assert_eq!(given["status"], "completed");
    assert_eq!(
        given["vaccineCode"]["coding"][0]["system"],
        "urn:oid:1.2.250.1.213.2.3.1"
    );
    assert_eq!(given["vaccineCode"]["coding"][0]["code"], "3400930235427");
    assert_eq!(given["occurrenceDateTime"], "2024-03-10T09:30:00+01:00");
    assert_eq!(given["doseQuantity"]["unit"], "mL");
    assert_eq!(given["doseQuantity"]["system"], "http://unitsofmeasure.org");
    assert_eq!(given["lotNumber"], "X123");
    assert_eq!(given["expirationDate"], "2025-01-31");
    assert_eq!(given["primarySource"], true);
    assert_eq!(given["identifier"][0]["value"], "IZ-1");
    assert_eq!(given["identifier"][0]["type"]["coding"][0]["code"], "FILL");
    assert_eq!(given["site"]["coding"][0]["code"], "LT");
    assert_eq!(given["route"]["coding"][0]["code"], "C28161");
    assert_eq!(given["programEligibility"][0]["coding"][0]["code"], "V01");
    assert_eq!(
        given["education"][0]["documentType"],
        "253088698300012711120420"
    );
    assert_eq!(given["education"][0]["presentationDate"], "2024-03-10");
    let functions: Vec<&str> = given["performer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["function"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(functions, ["OP", "AP"]);
    let manufacturer = resources(&bundle, "Organization")[0];
    assert_eq!(manufacturer["name"], "Sanofi Pasteur");
    assert_eq!(
        manufacturer["identifier"][0]["system"],
        "http://hl7.org/fhir/sid/mvx"
    );

    let refused = immunizations[1];
    assert_eq!(refused["status"], "not-done");
    assert_eq!(refused["statusReason"]["coding"][0]["code"], "00");
    assert!(refused.get("doseQuantity").is_none());
    assert_eq!(refused["occurrenceDateTime"], "2024-03-10");

    let historical = immunizations[2];
    assert_eq!(historical["primarySource"], false);
    assert_eq!(historical["reportOrigin"]["coding"][0]["code"], "01");
    assert_eq!(historical["occurrenceDateTime"], "2020");
    // No ORC-3: a derived identity, stable across replays.
    assert_eq!(historical["identifier"][0]["system"], "urn:ietf:rfc:3986");
    assert_eq!(map_text(VXU).unwrap(), bundle);
}

#[test]
fn vxu_errors_name_the_field() {
    let raw = VXU.replace(
        "|20240310093000+0100||3400930235427",
        "|20241310||3400930235427",
    );
    let error = map_text(&raw).unwrap_err();
    assert!(error.to_string().starts_with("RXA-3: "), "{error}");
    let raw = VXU.replace("|0.50|", "|0,5|");
    assert_eq!(
        map_text(&raw).unwrap_err().to_string(),
        "RXA-6: not a number"
    );
    let raw = VXU.replace("|CP|A\r", "|XX|A\r");
    assert!(map_text(&raw)
        .unwrap_err()
        .to_string()
        .starts_with("RXA-20: "));
    // The third RXA has no vaccine code: the error says which RXA.
    let raw = VXU.replace("|03^MMR^CVX|", "||");
    assert!(map_text(&raw)
        .unwrap_err()
        .to_string()
        .starts_with("RXA(3)-5: "));
}

const ORM_NW: &str =
    "MSH|^~\\&|DPI|CHU-X|LABO|CHU-X|20240306111154+0100||ORM^O01^ORM_O01|O1|P|2.5\r\
PID|1||000003^^^CHU-X^PI||DUPONT^MARIE||19790328|F\r\
PV1|1|O|CS^^^CHU-X||||||||||||||||000897406^^^CHU-X^VN\r\
ORC|NW|CMD-1^DPI||GRP-1^DPI|||||20240306111000+0100|||801234567897^REAULT^PIERRE^^^^^^RPPS\r\
TQ1|1||||||202403061200+0100||S\r\
OBR|1|CMD-1^DPI||24331-1^Lipid panel^LN|||||||||||||||||||||||||||HYP^Hypertension^L\r\
NTE|1||A jeun\r\
OBX|1|ST|1234-5^Question^LN||oui\r\
NTE|1||about the answer\r\
SPM|1|SPM-1&DPI||SER^Serum^HL70487|||||||||||||20240306110500+0100\r";

#[test]
fn orm_new_order_and_its_cancellation() {
    let bundle = map_text(ORM_NW).unwrap();
    let request = resources(&bundle, "ServiceRequest")[0];
    assert_eq!(request["status"], "active");
    assert_eq!(request["intent"], "order");
    assert_eq!(request["code"]["coding"][0]["system"], "http://loinc.org");
    assert_eq!(request["identifier"][0]["value"], "CMD-1");
    assert_eq!(
        request["identifier"][0]["system"],
        "urn:passerelle:authority:DPI"
    );
    assert_eq!(
        request["identifier"][0]["type"]["coding"][0]["code"],
        "PLAC"
    );
    assert_eq!(request["requisition"]["value"], "GRP-1");
    assert_eq!(request["priority"], "stat");
    assert_eq!(request["authoredOn"], "2024-03-06T11:10:00+01:00");
    assert_eq!(request["occurrenceDateTime"], "2024-03-06T12:00:00+01:00");
    assert_eq!(request["reasonCode"][0]["coding"][0]["code"], "HYP");
    // Only the order's note, not the one about the OBX.
    assert_eq!(request["note"].as_array().unwrap().len(), 1);
    assert_eq!(request["note"][0]["text"], "A jeun");
    let practitioner = entry_of(&bundle, "Practitioner")["fullUrl"].clone();
    assert_eq!(request["requester"]["reference"], practitioner);
    let encounter = entry_of(&bundle, "Encounter")["fullUrl"].clone();
    assert_eq!(request["encounter"]["reference"], encounter);
    let specimen = entry_of(&bundle, "Specimen");
    assert_eq!(request["specimen"][0]["reference"], specimen["fullUrl"]);
    assert_eq!(specimen["resource"]["type"]["coding"][0]["code"], "SER");
    assert_eq!(specimen["resource"]["identifier"][0]["value"], "SPM-1");
    assert_eq!(
        specimen["resource"]["collection"]["collectedDateTime"],
        "2024-03-06T11:05:00+01:00"
    );

    // The cancellation (ORC only) revokes the same ServiceRequest.
    let cancel = "MSH|^~\\&|DPI|CHU-X|LABO|CHU-X|20240306121154+0100||ORM^O01^ORM_O01|O2|P|2.5\r\
                  PID|1||000003^^^CHU-X^PI||DUPONT^MARIE||19790328|F\r\
                  ORC|CA|CMD-1^DPI\r";
    let cancelled = map_text(cancel).unwrap();
    let revoked = entry_of(&cancelled, "ServiceRequest");
    assert_eq!(revoked["resource"]["status"], "revoked");
    assert_eq!(
        revoked["fullUrl"],
        entry_of(&bundle, "ServiceRequest")["fullUrl"]
    );
    assert_eq!(
        revoked["request"],
        entry_of(&bundle, "ServiceRequest")["request"]
    );
}

#[test]
fn orm_status_from_the_filler() {
    // The lab's status report: same placer number, its filler number, and
    // ORC-5 says the order is complete.
    let raw = "MSH|^~\\&|LABO|CHU-X|DPI|CHU-X|20240306151154+0100||ORM^O01|O3|P|2.5\r\
               PID|1||000003^^^CHU-X^PI\r\
               ORC|SC|CMD-1^DPI|L-9^LABO||CM\r\
               OBR|1|CMD-1^DPI|L-9^LABO|24331-1^Lipid panel^LN\r";
    let bundle = map_text(raw).unwrap();
    let request = resources(&bundle, "ServiceRequest")[0];
    assert_eq!(request["status"], "completed");
    assert_eq!(
        request["identifier"][1]["type"]["coding"][0]["code"],
        "FILL"
    );
    let new_order = map_text(ORM_NW).unwrap();
    assert_eq!(
        entry_of(&bundle, "ServiceRequest")["fullUrl"],
        entry_of(&new_order, "ServiceRequest")["fullUrl"]
    );
    for (control, status) in [("HD", "on-hold"), ("DC", "revoked"), ("OK", "active")] {
        let raw = raw.replace(
            "ORC|SC|CMD-1^DPI|L-9^LABO||CM",
            &format!("ORC|{control}|CMD-1^DPI"),
        );
        let bundle = map_text(&raw).unwrap();
        assert_eq!(
            resources(&bundle, "ServiceRequest")[0]["status"],
            status,
            "{control}"
        );
    }
    let raw = raw.replace("||CM\r", "||ZZ\r");
    assert_eq!(
        map_text(&raw).unwrap_err().to_string(),
        "ORC-5: not an order status (HL7 table 0038)"
    );
}

#[test]
fn oml_o21_lab_orders() {
    let raw = "MSH|^~\\&|DPI|CHU-X|LABO|CHU-X|20240306111154+0100||OML^O21^OML_O21|L1|P|2.5.1\r\
               PID|1||000003^^^CHU-X^PI||DUPONT^MARIE\r\
               ORC|NW|A-1^DPI\r\
               TQ1|||||||||R\r\
               OBR|1|A-1^DPI||2345-7^Glucose^LN\r\
               SPM|1|S-1&DPI||SER\r\
               ORC|NW|A-2^DPI\r\
               OBR|2|A-2^DPI||718-7^Hemoglobin^LN|||||||||||||||||||||||^^^^^A\r\
               SPM|1|S-1&DPI||SER\r";
    let bundle = map_text(raw).unwrap();
    let requests = resources(&bundle, "ServiceRequest");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["priority"], "routine");
    assert_eq!(requests[1]["priority"], "asap");
    assert!(resources(&bundle, "Encounter").is_empty());
    // One tube for both tests: one Specimen.
    assert_eq!(resources(&bundle, "Specimen").len(), 1);
    assert_eq!(requests[0]["specimen"], requests[1]["specimen"]);

    // Two orders with one number cannot both be written.
    let raw = raw
        .replace("ORC|NW|A-2^DPI\r", "")
        .replace("OBR|2|A-2^DPI|", "OBR|2|A-1^DPI|");
    let error = map_text(&raw).unwrap_err();
    assert!(error.to_string().starts_with("OBR(2)-2: "), "{error}");
}

#[test]
fn orders_without_a_service_are_refused_not_dropped() {
    let raw = "MSH|^~\\&|DPI|CHU-X|PHARMA|CHU-X|20240306111154||ORM^O01|P1|P|2.5\r\
               PID|1||000003^^^CHU-X^PI\r\
               ORC|NW|RX-1^DPI\r\
               RXO|00047040230^Ampicillin^NDC|2\r";
    let error = map_text(raw).unwrap_err();
    assert_eq!(error.kind, MappingErrorKind::Unsupported);
    assert!(error.to_string().starts_with("RXO-1: "), "{error}");
    let raw = "MSH|^~\\&|DPI|CHU-X|LABO|CHU-X|20240306111154||ORM^O01|P1|P|2.5\r\
               PID|1||000003^^^CHU-X^PI\r\
               ORC|ZZ|A-1^DPI\r";
    assert_eq!(
        map_text(raw).unwrap_err().to_string(),
        "ORC-1: not an order control code (HL7 table 0119)"
    );
}

#[test]
fn a_placer_order_status_is_not_read() {
    // ORC-5 is the filler's; a placer's new order with junk there is new.
    let raw = "MSH|^~\\&|DPI|CHU-X|LABO|CHU-X|20240306111154||ORM^O01|P1|P|2.3\r\
               PID|1||000003^^^CHU-X^PI\r\
               ORC|NW|88502218|82503246||NW\r\
               OBR|1|88502218|82503246|24317-0^Hemogram^LN\r";
    let bundle = map_text(raw).unwrap();
    assert_eq!(resources(&bundle, "ServiceRequest")[0]["status"], "active");
}

#[test]
fn vxu_skips_an_observation_whose_type_contradicts_its_code() {
    // A coded value under the LOINC of a date: not a VIS date.
    let raw = VXU.replace(
        "OBX|3|DT|29769-7^VIS presented^LN|2|20240310",
        "OBX|3|CE|29769-7^VIS presented^LN|2|PHC70^Private^CDCPHINVS",
    );
    let bundle = map_text(&raw).unwrap();
    let given = resources(&bundle, "Immunization")[0];
    assert!(given["education"][0].get("presentationDate").is_none());
}

#[test]
fn siu_end_from_a_duration() {
    // Start in SCH-11, the length only on the practitioner (AIP-9/10).
    let raw = "MSH|^~\\&|BOOK|WEB|PMS|CAB|20240310101500+0100||SIU^S12^SIU_S12|1|P|2.5\r\
               SCH|A-7|RDV-7^WEB|||||||||^^^202403151030\r\
               PID|1||42^^^CAB^PI||DURAND^PAUL\r\
               RGS|1\r\
               AIP|1||RPPS1^MOREAU^ANNE||||||30|MIN\r";
    let bundle = map_text(raw).unwrap();
    let appointment = resources(&bundle, "Appointment")[0];
    assert_eq!(appointment["start"], "2024-03-15T10:30:00+01:00");
    assert_eq!(appointment["end"], "2024-03-15T11:00:00+01:00");
    // The TQ's own duration (component 3) comes first.
    let raw = raw.replace("^^^202403151030", "^^M45^202403151030");
    let bundle = map_text(&raw).unwrap();
    assert_eq!(
        resources(&bundle, "Appointment")[0]["end"],
        "2024-03-15T11:15:00+01:00"
    );
    let raw = raw.replace("^^M45^", "^^45 minutes^");
    assert!(map_text(&raw)
        .unwrap_err()
        .to_string()
        .starts_with("SCH-11: "));
    let raw = raw
        .replace("|30|MIN\r", "|30|parsecs\r")
        .replace("^^45 minutes^", "^^^");
    assert_eq!(
        map_text(&raw).unwrap_err().to_string(),
        "AIP-10: not a unit of time (s, min, h, d, wk)"
    );
}

#[test]
fn a_cancellation_without_an_end_goes_without_times() {
    let raw = "MSH|^~\\&|S|F|R|G|20240310101500||SIU^S15|1|P|2.5\r\
               SCH||A-1^S|||||||||^^^202403151030\r\
               PID|1||42^^^CAB^PI||DURAND^PAUL\r";
    let bundle = map_text(raw).unwrap();
    let appointment = resources(&bundle, "Appointment")[0];
    assert_eq!(appointment["status"], "cancelled");
    assert!(appointment.get("start").is_none());
    assert!(appointment.get("end").is_none());
    let booked = raw.replace("SIU^S15", "SIU^S12");
    assert!(map_text(&booked)
        .unwrap_err()
        .to_string()
        .starts_with("SCH-9: "));
}

#[test]
fn vxu_9999_is_no_immunization_id() {
    // Two refusals "without ID" (CDC convention): two Immunizations, each
    // with its own derived identity.
    let raw = "MSH|^~\\&|EHR|X68||IIS|20120701082200||VXU^V04^VXU_V04|N1|P|2.5.1\r\
               PID|1||MR-1^^^NIST MPI^MR||FLEMING^CHAD\r\
               ORC|RE||9999^CDC\r\
               RXA|0|1|20120815||03^MMR^CVX|999||||||||||||00^Parental Refusal^NIP002||RE\r\
               ORC|RE||9999^CDC\r\
               RXA|0|1|20120815||21^Varicella^CVX|999||||||||||||00^Parental Refusal^NIP002||RE\r";
    let bundle = map_text(raw).unwrap();
    let immunizations = resources(&bundle, "Immunization");
    assert_eq!(immunizations.len(), 2);
    for immunization in &immunizations {
        assert_eq!(immunization["identifier"].as_array().unwrap().len(), 1);
        assert_eq!(immunization["identifier"][0]["system"], "urn:ietf:rfc:3986");
    }
    // A real ID used twice is an error, not a silently merged dose.
    let raw = raw.replace("9999^CDC", "IZ-5^CDC");
    let error = map_text(&raw).unwrap_err();
    assert!(error.to_string().starts_with("ORC(2)-3: "), "{error}");
}

#[test]
fn vxu_names_the_visit_of_its_pv1() {
    let raw = "MSH|^~\\&|LGC|CAB|GW|GW|20250412100000+0200||VXU^V04^VXU_V04|V9|P|2.5.1\rPID|1||P1^^^CAB^PI||ROUX^Camille||20010915|F\rPV1|1|O|||||||||||||||||V77^^^CAB^VN\rORC|RE||VAC-9^CAB\rRXA|0|1|20250412094500||208^COVID-19^CVX|0.3|mL^^UCUM||00||||||FK1|||||CP|A\r";
    let bundle = super::tests::map_text(raw).unwrap();
    let encounters = super::tests::resources(&bundle, "Encounter");
    assert_eq!(encounters.len(), 1);
    let immunization = super::tests::resources(&bundle, "Immunization")[0];
    assert!(immunization["encounter"]["reference"]
        .as_str()
        .is_some_and(|r| r.starts_with("urn:uuid:")));
}

/// The OBX sent with an order (a weight for a dose, an answer) are
/// Observations the ServiceRequest names in `supportingInfo`, with the NTE
/// that follows each; they are not its results (no `basedOn`).
#[test]
fn order_obx_support_the_request() {
    let orm = "MSH|^~\\&|DPI|CHU-X|LABO|CHU-X|20240306111154+0100||ORM^O01^ORM_O01|O9|P|2.5\r\
PID|1||000003^^^CHU-X^PI||DOE^JANE||19800101|F\r\
ORC|NW|P900^DPI\r\
OBR|1|P900^DPI||2951-2^Sodium^LN\r\
NTE|1||Order note\r\
OBX|1|NM|29463-7^Body weight^LN||68.50|kg^^UCUM||||F\r\
NTE|1||Weighed this morning\r\
OBX|2|ST|FAST^Fasting^L||Yes||||||F\r";
    let bundle = map_text(orm).unwrap();
    let observations = resources(&bundle, "Observation");
    assert_eq!(observations.len(), 2);
    assert_eq!(observations[0]["note"][0]["text"], "Weighed this morning");
    assert!(observations.iter().all(|o| o.get("basedOn").is_none()));
    let request = resources(&bundle, "ServiceRequest")[0];
    assert_eq!(request["note"][0]["text"], "Order note");
    assert_eq!(
        cited(&request["supportingInfo"]),
        full_urls(&bundle, "Observation")
    );
}
