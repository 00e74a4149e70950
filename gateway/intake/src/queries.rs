//! HL7 v2 patient queries answered from Passerelle's repository, on the
//! same transports as records: QBP^Q22 (IHE PDQ, ITI-21: find candidates)
//! gets RSP^K22 with a PID per matching Patient, and QBP^Q23 (IHE PIX,
//! ITI-9: get corresponding identifiers) gets RSP^K23 with the Patient's
//! identifiers in the asked domains, following ADT A40 merges. A query
//! carries no record, so it is answered, not journaled.

use std::collections::HashMap;

use bytes::Bytes;
use hl7v2::ack::build_reply;
use hl7v2::{
    AckCode, AckError, Charset, Delimiters, ErrorLocation, Field, Message, Segment, SegmentBuilder,
};
use mapping_settings::identifier_system;
use serde_json::Value;

use super::acks::Header;
use super::audit::QueryAudit;
use super::Processed;
use passerelle_fhir::exact_json;
use passerelle_repository::{
    self as repository, Repository, RepositoryError, SearchRequest, Visibility,
};
use passerelle_security::audit::Outcome;

/// Most candidates one Q22 answer holds (RCP-2 may ask for fewer).
const MAX_CANDIDATES: usize = 100;

/// The repository and the site's identifier systems (the mappers' own).
#[derive(Clone)]
pub struct Queries {
    repository: Repository,
    systems: HashMap<String, String>,
}

/// A query as read from QPD and RCP.
#[derive(Debug, Clone, PartialEq)]
enum Query {
    /// Q22: FHIR Patient search pairs, domains to return, at most `limit`.
    Candidates {
        search: Vec<(String, String)>,
        domains: Vec<String>,
        limit: usize,
    },
    /// Q23: `system|value`, and the domains asked for.
    Identifiers {
        source: String,
        domains: Vec<String>,
    },
}

/// Why a query gets AE: the QPD field at fault, the HL7 error code, words.
#[derive(Debug, Clone, PartialEq)]
struct Refusal {
    field: usize,
    code: u16,
    text: String,
}

/// What the repository answered: the PID segments' Patients (JSON), or
/// nothing found (QAK NF), or a refusal.
enum Answer {
    Patients(Vec<Value>, Vec<String>),
    NotFound,
    Refused(Refusal),
}

impl Queries {
    pub fn new(repository: Repository, systems: HashMap<String, String>) -> Queries {
        Queries {
            repository,
            systems,
        }
    }

    /// Whether `header` is a query this module answers.
    pub fn handles(header: &Header) -> bool {
        header.message_type.starts_with("QBP^Q22") || header.message_type.starts_with("QBP^Q23")
    }

    /// Answers a QBP with its RSP (never journaled), and says what the
    /// answer held for the audit trail.
    pub async fn answer(
        &self,
        message: &Message<'_>,
        header: &Header,
        control_id: &str,
        timestamp: &str,
        reader: Visibility,
    ) -> (Processed, QueryAudit) {
        let pix = header.message_type.starts_with("QBP^Q23");
        let answer = match self.read_query(message, pix) {
            Err(refusal) => Answer::Refused(refusal),
            Ok(query) => self.run(query, reader).await,
        };
        let audit = query_audit(&answer, masked_query(message, pix));
        let (code, error, status) = match &answer {
            Answer::Patients(..) => (AckCode::AA, None, "OK"),
            Answer::NotFound => (AckCode::AA, None, "NF"),
            Answer::Refused(refusal) => (
                AckCode::AE,
                Some(AckError {
                    code: refusal.code,
                    diagnostic: refusal.text.clone(),
                    location: Some(ErrorLocation {
                        segment: "QPD".to_string(),
                        sequence: 1,
                        field: refusal.field,
                    }),
                }),
                "AE",
            ),
        };
        let structure = if pix {
            "RSP^K23^RSP_K23"
        } else {
            "RSP^K22^RSP_K21"
        };
        let mut out = build_reply(
            Some(message),
            Some(structure),
            code,
            control_id,
            timestamp,
            error.as_ref(),
        );
        let d = *message.delimiters();
        let charset = message.charset().unwrap_or(Charset::Ascii);
        let qpd = message.segment("QPD", 1);
        let hits = match &answer {
            Answer::Patients(patients, _) if !pix => Some(patients.len()),
            _ => None,
        };
        out.extend(qak_segment(qpd, status, hits, &d, charset));
        if let Some(qpd) = qpd {
            out.extend_from_slice(qpd.raw());
            out.push(b'\r');
        }
        if let Answer::Patients(patients, domains) = &answer {
            for (n, patient) in patients.iter().enumerate() {
                out.extend(pid_segment(n + 1, patient, domains, pix, &d, charset));
            }
        }
        (
            Processed {
                code,
                ack: Some(Bytes::from(out)),
            },
            audit,
        )
    }

    fn read_query(&self, message: &Message<'_>, pix: bool) -> Result<Query, Refusal> {
        let qpd = message.segment("QPD", 1).ok_or(Refusal {
            field: 1,
            code: 100,
            text: "QPD segment missing".into(),
        })?;
        let decode = |raw: &[u8]| message.decode(raw).into_owned();
        let domains = |field: usize| -> Vec<String> {
            qpd.field(field)
                .map(|f| {
                    f.repetitions()
                        .filter_map(|rep| rep.component(4).map(|hd| self.system_of_hd(hd, message)))
                        .flatten()
                        .collect()
                })
                .unwrap_or_default()
        };
        if pix {
            let cx = qpd.field(3).map(|f| f.repetition(1));
            let value = cx
                .and_then(|f| f.component(1))
                .map(decode)
                .unwrap_or_default();
            let system = cx
                .and_then(|f| f.component(4))
                .and_then(|hd| self.system_of_hd(hd, message));
            let (false, Some(system)) = (value.is_empty(), system) else {
                return Err(Refusal {
                    field: 3,
                    code: 101,
                    text: "QPD-3 needs an identifier with its assigning authority".into(),
                });
            };
            return Ok(Query::Identifiers {
                source: format!("{system}|{value}"),
                domains: domains(4),
            });
        }
        let mut search = Vec::new();
        let (mut id, mut namespace, mut universal, mut universal_type) = (None, None, None, None);
        for rep in qpd.field(3).iter().flat_map(Field::repetitions) {
            let name = rep.component(1).map(decode).unwrap_or_default();
            let value = rep.component(2).map(decode).unwrap_or_default();
            if name.is_empty() || value.is_empty() {
                continue;
            }
            let key = match name.trim_start_matches('@') {
                "PID.3.1" => {
                    id = Some(value);
                    continue;
                }
                "PID.3.4.1" | "PID.3.4" => {
                    namespace = Some(value);
                    continue;
                }
                "PID.3.4.2" => {
                    universal = Some(value);
                    continue;
                }
                "PID.3.4.3" => {
                    universal_type = Some(value);
                    continue;
                }
                "PID.5.1.1" | "PID.5.1" | "PID.5" => "family",
                "PID.5.2" => "given",
                "PID.7.1" | "PID.7" => {
                    search.push((
                        "birthdate".to_string(),
                        hl7_date(&value).ok_or(Refusal {
                            field: 3,
                            code: 102,
                            text: format!("{name} is not a date"),
                        })?,
                    ));
                    continue;
                }
                "PID.8" => {
                    let gender = match value.as_str() {
                        "M" => "male",
                        "F" => "female",
                        "O" | "A" => "other",
                        _ => "unknown",
                    };
                    search.push(("gender".to_string(), gender.to_string()));
                    continue;
                }
                "PID.11.1" | "PID.11.1.1" => "address",
                "PID.11.3" => "address-city",
                "PID.11.5" => "address-postalcode",
                "PID.11.6" => "address-country",
                _ => {
                    return Err(Refusal {
                        field: 3,
                        code: 207,
                        text: format!("query parameter {name} is not supported"),
                    })
                }
            };
            search.push((key.to_string(), value));
        }
        if let Some(id) = id {
            let system = identifier_system(
                &self.systems,
                namespace.as_deref(),
                universal.as_deref(),
                universal_type.as_deref(),
            );
            search.push((
                "identifier".to_string(),
                match system {
                    Some(system) => format!("{system}|{id}"),
                    None => id,
                },
            ));
        }
        if search.is_empty() {
            return Err(Refusal {
                field: 3,
                code: 101,
                text: "QPD-3 names no query parameter".into(),
            });
        }
        let limit = message
            .segment("RCP", 1)
            .and_then(|s| s.field(2))
            .and_then(|f| f.component(1))
            .and_then(|raw| std::str::from_utf8(raw).ok()?.parse::<usize>().ok())
            .unwrap_or(MAX_CANDIDATES)
            .clamp(1, MAX_CANDIDATES);
        Ok(Query::Candidates {
            search,
            domains: domains(8),
            limit,
        })
    }

    /// The FHIR system of an HD (`namespace&universal id&type`).
    fn system_of_hd(&self, hd: &[u8], message: &Message<'_>) -> Option<String> {
        let parts: Vec<String> = Field::subcomponents(hd, message.delimiters())
            .map(|raw| message.decode(raw).into_owned())
            .collect();
        let part = |n: usize| parts.get(n).map(String::as_str).filter(|s| !s.is_empty());
        identifier_system(&self.systems, part(0), part(1), part(2))
    }

    /// Answers `query` with the patients `reader` may see.
    async fn run(&self, query: Query, reader: Visibility) -> Answer {
        let repository = self.repository.clone();
        let answer = tokio::task::spawn_blocking(move || match query {
            Query::Candidates {
                mut search,
                domains,
                limit,
            } => repository.read(|sql| {
                for domain in &domains {
                    if !repository::summary::known_domain(sql, domain)? {
                        return Ok(Answer::Refused(Refusal {
                            field: 8,
                            code: 204,
                            text: format!("unknown domain {domain}"),
                        }));
                    }
                }
                search.push(("_count".to_string(), limit.to_string()));
                let request =
                    SearchRequest::parse("Patient", &search, true)?.visible_to(reader.clone());
                let page = repository::search(sql, &request)?;
                let patients: Vec<Value> = page
                    .matches
                    .iter()
                    .filter_map(|m| exact_json::parse(&m.text).ok())
                    .collect();
                Ok(if patients.is_empty() {
                    Answer::NotFound
                } else {
                    Answer::Patients(patients, domains.clone())
                })
            }),
            Query::Identifiers { source, domains } => repository.read(|sql| {
                match repository::summary::cross_reference(sql, &source, &domains, "", &reader) {
                    Ok(text) => {
                        let parameters = exact_json::parse(&text).unwrap_or(Value::Null);
                        let identifiers: Vec<Value> = parameters["parameter"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|p| p["name"] == "targetIdentifier")
                            .map(|p| p["valueIdentifier"].clone())
                            .collect();
                        // The repository's Patient the identifiers
                        // belong to (`{base}/Patient/{id}`): for the
                        // audit trail, not the answer.
                        let id = parameters["parameter"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|p| p["name"] == "targetId")
                            .filter_map(|p| p["valueReference"]["reference"].as_str())
                            .filter_map(|r| r.rsplit_once("Patient/").map(|(_, id)| id))
                            .next()
                            .unwrap_or("")
                            .to_string();
                        Ok(if identifiers.is_empty() {
                            Answer::NotFound
                        } else {
                            Answer::Patients(
                                vec![serde_json::json!({"id": id, "identifier": identifiers})],
                                Vec::new(),
                            )
                        })
                    }
                    Err(RepositoryError::NotFound(_)) => Ok(Answer::NotFound),
                    Err(RepositoryError::UnknownDomain(text)) => Ok(Answer::Refused(Refusal {
                        field: 3,
                        code: 204,
                        text,
                    })),
                    Err(RepositoryError::UnknownTargetDomain(text)) => {
                        Ok(Answer::Refused(Refusal {
                            field: 4,
                            code: 204,
                            text,
                        }))
                    }
                    Err(other) => Err(other),
                }
            }),
        })
        .await;
        match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(RepositoryError::Search(error))) => Answer::Refused(Refusal {
                field: 3,
                code: 102,
                text: error.to_string(),
            }),
            _ => Answer::Refused(Refusal {
                field: 1,
                code: 207,
                text: "the repository could not be read; send the query again later".into(),
            }),
        }
    }
}

/// What an answer comes to in the audit trail: the patients it holds (as
/// `Patient/{id}`), and fixed words for its outcome (never a refusal's
/// own text, which may repeat what the query asked).
fn query_audit(answer: &Answer, masked_query: String) -> QueryAudit {
    let (patients, outcome, description) = match answer {
        Answer::Patients(patients, _) => {
            let patients: Vec<String> = patients
                .iter()
                .filter_map(|p| p["id"].as_str())
                .filter(|id| !id.is_empty())
                .map(|id| format!("Patient/{id}"))
                .collect();
            let said = format!("answered: {} patient(s)", patients.len());
            (patients, Outcome::Success, said)
        }
        Answer::NotFound => (
            Vec::new(),
            Outcome::Success,
            "answered: no patient found".to_string(),
        ),
        // The repository could not be read (see `run`).
        Answer::Refused(refusal) if refusal.field == 1 && refusal.code == 207 => (
            Vec::new(),
            Outcome::SeriousFailure,
            "not answered: the repository could not be read".to_string(),
        ),
        Answer::Refused(refusal) => (
            Vec::new(),
            Outcome::MinorFailure,
            format!(
                "refused (AE): error {} on QPD-{}",
                refusal.code, refusal.field
            ),
        ),
    };
    QueryAudit {
        patients,
        outcome,
        description,
        masked_query,
    }
}

/// The query as the audit trail keeps it: the names of its parameters,
/// every value masked (`@PID.5.1=***&@PID.7=***`; a PIX query's
/// identifier `QPD-3=***`), and the domains asked for as `QPD-8=***`.
fn masked_query(message: &Message<'_>, pix: bool) -> String {
    let Some(qpd) = message.segment("QPD", 1) else {
        return String::new();
    };
    let mut names: Vec<String> = Vec::new();
    if pix {
        for field in [3, 4] {
            if qpd.field(field).is_some_and(|f| !f.raw.is_empty()) {
                names.push(format!("QPD-{field}"));
            }
        }
    } else {
        for rep in qpd.field(3).iter().flat_map(Field::repetitions) {
            let name = rep
                .component(1)
                .map(|raw| message.decode(raw).into_owned())
                .unwrap_or_default();
            // Names only (`@PID.5.1`): anything else is not a name.
            let name: String = name.chars().take(32).collect();
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_'));
            names.push(if is_name { name } else { "QPD-3".to_string() });
        }
        if qpd.field(8).is_some_and(|f| !f.raw.is_empty()) {
            names.push("QPD-8".to_string());
        }
    }
    names
        .iter()
        .map(|name| format!("{name}=***"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `19800101`, `198001` or `1980` as a FHIR date.
fn hl7_date(value: &str) -> Option<String> {
    let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
    match digits.len() {
        4 => Some(digits),
        6 => Some(format!("{}-{}", &digits[..4], &digits[4..6])),
        n if n >= 8 => Some(format!(
            "{}-{}-{}",
            &digits[..4],
            &digits[4..6],
            &digits[6..8]
        )),
        _ => None,
    }
}

/// An identifier's assigning authority (HD) for its FHIR system.
fn authority(system: &str, subcomponent: char) -> String {
    if let Some(oid) = system.strip_prefix("urn:oid:") {
        return format!("{subcomponent}{oid}{subcomponent}ISO");
    }
    if let Some(namespace) = system.strip_prefix("urn:passerelle:authority:") {
        return passerelle_fhir::query::percent_decode(namespace);
    }
    format!("{subcomponent}{system}{subcomponent}URI")
}

/// The QAK segment: QPD-2's query tag and QPD-1's query name echoed as
/// they came, the query response status, and for a Q22 with candidates
/// (`hits`) the hit counts: total, this payload, remaining (always 0).
fn qak_segment(
    qpd: Option<Segment<'_>>,
    status: &str,
    hits: Option<usize>,
    d: &Delimiters,
    charset: Charset,
) -> Vec<u8> {
    let tag = qpd
        .and_then(|s| s.field(2))
        .and_then(|f| f.component(1))
        .unwrap_or(&[]);
    // The whole of QPD-1, repetitions and components as they were.
    let query_name = qpd.and_then(|s| s.field(1)).map_or(&[][..], |f| f.raw);
    let mut qak = SegmentBuilder::new("QAK", d, charset);
    qak.field().raw(tag);
    qak.field().raw(status.as_bytes());
    qak.field().raw(query_name);
    if let Some(hits) = hits {
        let count = hits.to_string();
        for value in [count.as_str(), count.as_str(), "0"] {
            qak.field().raw(value.as_bytes());
        }
    }
    qak.finish()
}

/// A PID segment for a FHIR Patient: identifiers (those of `domains` when
/// given), then for Q22 name, birth date, sex and address.
fn pid_segment(
    set_id: usize,
    patient: &Value,
    domains: &[String],
    identifiers_only: bool,
    d: &Delimiters,
    charset: Charset,
) -> Vec<u8> {
    let sub = char::from(d.subcomponent);
    let mut pid = SegmentBuilder::new("PID", d, charset);
    pid.field().raw(set_id.to_string().as_bytes()); // PID-1
    pid.field(); // PID-2

    // PID-3: value^^^authority^type, one repetition per identifier.
    pid.field();
    for identifier in patient["identifier"].as_array().into_iter().flatten() {
        let system = identifier["system"].as_str().unwrap_or("");
        let value = identifier["value"].as_str().unwrap_or("");
        if value.is_empty() || (!domains.is_empty() && !domains.iter().any(|d| d == system)) {
            continue;
        }
        let kind = identifier
            .pointer("/type/coding/0/code")
            .and_then(Value::as_str)
            .unwrap_or("");
        pid.repetition().text(value);
        pid.component().component().component();
        // The authority's subcomponent separators must stay separators.
        for part in authority(system, sub).split(sub) {
            pid.subcomponent().text(part);
        }
        pid.component().text(kind);
    }
    if identifiers_only {
        return pid.finish();
    }
    pid.field(); // PID-4
    let name = patient["name"]
        .as_array()
        .and_then(|names| {
            names
                .iter()
                .find(|n| n["use"] == "official")
                .or_else(|| names.first())
        })
        .cloned()
        .unwrap_or(Value::Null);
    // PID-5: family^given^second and further given names.
    pid.field().text(name["family"].as_str().unwrap_or(""));
    let given: Vec<&str> = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if let Some(first) = given.first() {
        pid.component().text(first);
    }
    if given.len() > 1 {
        pid.component().text(&given[1..].join(" "));
    }
    pid.field(); // PID-6
    let birth_date = patient["birthDate"].as_str().unwrap_or("").replace('-', "");
    pid.field().text(&birth_date); // PID-7
    let sex = match patient["gender"].as_str() {
        Some("male") => "M",
        Some("female") => "F",
        Some("other") => "O",
        Some(_) => "U",
        None => "",
    };
    pid.field().raw(sex.as_bytes()); // PID-8
    pid.field(); // PID-9
    pid.field(); // PID-10

    // PID-11: street^^city^state^postal code^country, when there is an
    // address.
    pid.field();
    let address = patient["address"].get(0).cloned().unwrap_or(Value::Null);
    if !address.is_null() {
        let line = address["line"].get(0).and_then(Value::as_str).unwrap_or("");
        pid.text(line).component(); // XAD-2, other designation, empty
        for key in ["city", "state", "postalCode", "country"] {
            pid.component().text(address[key].as_str().unwrap_or(""));
        }
    }
    pid.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hl7_dates_become_fhir_dates() {
        assert_eq!(hl7_date("19800101").as_deref(), Some("1980-01-01"));
        assert_eq!(hl7_date("198001").as_deref(), Some("1980-01"));
        assert_eq!(hl7_date("20240306111154").as_deref(), Some("2024-03-06"));
        assert_eq!(hl7_date("19x"), None);
    }

    #[test]
    fn authorities_come_back_as_they_were_sent() {
        assert_eq!(
            authority("urn:oid:1.2.250.1.213.1.4.8", '&'),
            "&1.2.250.1.213.1.4.8&ISO"
        );
        assert_eq!(authority("urn:passerelle:authority:CHU-X", '&'), "CHU-X");
        assert_eq!(
            authority("https://example.org/ids", '&'),
            "&https://example.org/ids&URI"
        );
    }

    fn unusual() -> Delimiters {
        // `#$%@!`: field, component, repetition, escape, subcomponent.
        Delimiters {
            field: b'#',
            component: b'$',
            repetition: b'%',
            escape: b'@',
            subcomponent: b'!',
            truncation: None,
        }
    }

    fn patient() -> Value {
        serde_json::json!({
            "identifier": [
                {
                    "system": "urn:oid:1.2.250.1.213.1.4.10",
                    "value": "279035121518989",
                    "type": {"coding": [{"code": "INS-NIR"}]},
                },
                {
                    "system": "urn:passerelle:authority:CHU-X",
                    "value": "000003",
                    "type": {"coding": [{"code": "PI"}]},
                },
                {"system": "https://example.org/ids", "value": ""},
            ],
            "name": [
                {"use": "usual", "family": "Martin"},
                {
                    "use": "official",
                    "family": "Pat-Trois",
                    "given": ["Dominique", "Marie", "Anne"],
                },
            ],
            "birthDate": "1979-03-28",
            "gender": "female",
            "address": [{
                "line": ["1 rue de la Paix", "Bat. B"],
                "city": "Paris",
                "postalCode": "75002",
                "country": "FRA",
            }],
        })
    }

    #[test]
    fn a_candidate_pid_keeps_its_empty_fields_and_components() {
        let pid = pid_segment(
            3,
            &patient(),
            &[],
            false,
            &Delimiters::default(),
            Charset::Utf8,
        );
        assert_eq!(
            String::from_utf8(pid).unwrap(),
            "PID|3||279035121518989^^^&1.2.250.1.213.1.4.10&ISO^INS-NIR~000003^^^CHU-X^PI\
             ||Pat-Trois^Dominique^Marie Anne||19790328|F|||1 rue de la Paix^^Paris^^75002^FRA\r"
        );
        // Nothing but an identifier: every Q22 field is still there.
        let bare = serde_json::json!({"identifier": [{"system": "urn:oid:1.2.3", "value": "7"}]});
        let pid = pid_segment(1, &bare, &[], false, &Delimiters::default(), Charset::Utf8);
        assert_eq!(pid, b"PID|1||7^^^&1.2.3&ISO^||||||||\r");
    }

    #[test]
    fn a_pix_pid_holds_the_identifiers_of_the_asked_domains() {
        let d = Delimiters::default();
        let domains = ["urn:oid:1.2.250.1.213.1.4.10".to_string()];
        let pid = pid_segment(1, &patient(), &domains, true, &d, Charset::Utf8);
        assert_eq!(
            pid,
            b"PID|1||279035121518989^^^&1.2.250.1.213.1.4.10&ISO^INS-NIR\r"
        );
        let domains = ["urn:oid:9".to_string()];
        let pid = pid_segment(1, &patient(), &domains, true, &d, Charset::Utf8);
        assert_eq!(pid, b"PID|1||\r");
    }

    #[test]
    fn a_pid_in_the_senders_delimiters_and_charset() {
        let patient = serde_json::json!({
            "identifier": [
                {
                    "system": "urn:passerelle:authority:A%26B",
                    "value": "1#2$3",
                    "type": {"coding": [{"code": "MR"}]},
                },
                {"system": "urn:oid:1.2.3", "value": "x%y"},
            ],
            "name": [{"family": "H\u{f4}pital\u{20ac}", "given": ["Zo\u{eb}!"]}],
            "gender": "unknown",
            "address": [{}],
        });
        let pid = pid_segment(3, &patient, &[], false, &unusual(), Charset::Latin1);
        assert_eq!(
            pid,
            b"PID#3##1@F@2@S@3$$$A&B$MR%x@R@y$$$!1.2.3!ISO$##H\xf4pital?$Zo\xeb@T@###U###$$$$$\r"
        );
        let pid = pid_segment(
            3,
            &patient,
            &[],
            false,
            &Delimiters::default(),
            Charset::Ascii,
        );
        assert_eq!(
            pid,
            b"PID|3||1#2$3^^^A&B^MR~x%y^^^&1.2.3&ISO^||H?pital?^Zo?!|||U|||^^^^^\r"
        );
    }

    #[test]
    fn the_audit_trail_gets_parameter_names_and_no_values() {
        let raw = b"MSH|^~\\&|A|B|C|D|1||QBP^Q22^QBP_Q21|X|P|2.5\r\
                    QPD|Q22^Find Candidates^HL7|T1|@PID.5.1.1^DUPONT~@PID.7^19800101~DUPONT JEAN^x|||||^^^&1.2.250&ISO\r";
        let message = Message::parse(raw).unwrap();
        let masked = masked_query(&message, false);
        assert_eq!(masked, "@PID.5.1.1=***&@PID.7=***&QPD-3=***&QPD-8=***");
        let raw = b"MSH|^~\\&|A|B|C|D|1||QBP^Q23^QBP_Q21|X|P|2.5\r\
                    QPD|IHE PIX Query|T2|279035121518989^^^&1.2.250.1.213.1.4.10&ISO\r";
        let message = Message::parse(raw).unwrap();
        assert_eq!(masked_query(&message, true), "QPD-3=***");
        // What an answer comes to: references and fixed words only.
        let answer = Answer::Patients(
            vec![
                serde_json::json!({"id": "p1"}),
                serde_json::json!({"id": "p2"}),
            ],
            Vec::new(),
        );
        let audit = query_audit(&answer, masked);
        assert_eq!(audit.patients, ["Patient/p1", "Patient/p2"]);
        assert_eq!(audit.outcome, Outcome::Success);
        let refused = query_audit(
            &Answer::Refused(Refusal {
                field: 3,
                code: 102,
                text: "DUPONT is not a date".into(),
            }),
            String::new(),
        );
        assert_eq!(refused.outcome, Outcome::MinorFailure);
        assert!(!refused.description.contains("DUPONT"));
    }

    #[test]
    fn qak_echoes_the_query_tag_and_name() {
        let raw = b"MSH|^~\\&|A|B|C|D|1||QBP^Q22^QBP_Q21|X|P|2.5\r\
                    QPD|Q22^Find Candidates^HL7~r2|TA\\F\\G^x|@PID.5.1.1^x\r";
        let message = Message::parse(raw).unwrap();
        let (d, qpd) = (*message.delimiters(), message.segment("QPD", 1));
        assert_eq!(
            qak_segment(qpd, "OK", Some(2), &d, Charset::Ascii),
            b"QAK|TA\\F\\G|OK|Q22^Find Candidates^HL7~r2|2|2|0\r"
        );
        assert_eq!(
            qak_segment(qpd, "NF", None, &d, Charset::Ascii),
            b"QAK|TA\\F\\G|NF|Q22^Find Candidates^HL7~r2\r"
        );
        assert_eq!(
            qak_segment(None, "AE", None, &d, Charset::Ascii),
            b"QAK||AE|\r"
        );
        let raw = b"MSH#$%@!#A#B#C#D#1##QBP$Q23#X#P#2.5######8859/1\rQPD#Q23$\xe9#T$1!2%3#x\r";
        let message = Message::parse(raw).unwrap();
        let (d, qpd) = (*message.delimiters(), message.segment("QPD", 1));
        assert_eq!(
            qak_segment(qpd, "OK", None, &d, Charset::Latin1),
            b"QAK#T#OK#Q23$\xe9\r"
        );
    }
}
