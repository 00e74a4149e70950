//! The CDA reader's integration tests, in one binary.

mod corpus;
mod fuzz_corpus;
mod proptests;
mod security;
mod synthetic;

/// A minimal CI-SIS-like document around `body` (header elements before
/// the body as the schema orders them), for synthetic cases.
pub fn document(record_target: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <templateId root="1.2.250.1.213.1.1.1.55"/>
  <id root="1.2.3.4" extension="DOC-1"/>
  <code code="11502-2" codeSystem="2.16.840.1.113883.6.1" displayName="CR d'examens biologiques"/>
  <title>Compte rendu</title>
  <effectiveTime value="20240105101500+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <setId root="1.2.3.4" extension="SET-1"/>
  <versionNumber value="1"/>
  {record_target}
  <component>{body}</component>
</ClinicalDocument>
"#
    )
}

pub const RECORD_TARGET: &str = r#"<recordTarget><patientRole>
    <id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>
    <patient><name><family qualifier="BR">PAT</family><given>ANNE</given></name>
    <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/>
    <birthTime value="19790328"/></patient></patientRole></recordTarget>"#;

/// A level-3 body with one result observation carrying `value`.
pub fn result_body(value: &str) -> String {
    format!(
        r#"<structuredBody><component><section>
  <code code="18719-5" codeSystem="2.16.840.1.113883.6.1"/>
  <entry><act classCode="ACT" moodCode="EVN"><code code="18719-5" codeSystem="2.16.840.1.113883.6.1"/>
    <entryRelationship typeCode="COMP"><observation classCode="OBS" moodCode="EVN">
      <code code="3016-3" codeSystem="2.16.840.1.113883.6.1"/>
      <statusCode code="completed"/>
      {value}
    </observation></entryRelationship></act></entry>
</section></component></structuredBody>"#
    )
}
