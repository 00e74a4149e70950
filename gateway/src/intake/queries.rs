//! HL7 v2 patient queries answered from Passerelle's repository, on the
//! same transports as records: QBP^Q22 (IHE PDQ, ITI-21: find candidates)
//! gets RSP^K22 with a PID per matching Patient, and QBP^Q23 (IHE PIX,
//! ITI-9: get corresponding identifiers) gets RSP^K23 with the Patient's
//! identifiers in the asked domains, following ADT A40 merges. A query
//! carries no record, so it is answered, not journaled.

use std::collections::HashMap;

use bytes::Bytes;
use mappers::hl7v2::ack::build_reply;
use mappers::hl7v2::{AckCode, AckError, Charset, ErrorLocation, Field, Message};
use mappers::hl7v2_fhir::identifier_system;
use serde_json::Value;

use super::acks::Header;
use super::Processed;
use crate::repository::{self, exact_json, Repository, RepositoryError, SearchRequest};

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

    /// Answers a QBP with its RSP (never journaled).
    pub async fn answer(
        &self,
        message: &Message<'_>,
        header: &Header,
        control_id: &str,
        timestamp: &str,
    ) -> Processed {
        let pix = header.message_type.starts_with("QBP^Q23");
        let answer = match self.read_query(message, pix) {
            Err(refusal) => Answer::Refused(refusal),
            Ok(query) => self.run(query).await,
        };
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
        let text = |value: &str| {
            charset.encode(&mappers::hl7v2::escape(&charset.representable(value), &d))
        };
        let qpd = message.segment("QPD", 1);
        let tag = qpd
            .and_then(|s| s.field(2))
            .and_then(|f| f.component(1))
            .unwrap_or(&[]);
        let query_name = qpd
            .and_then(|s| s.field(1))
            .map(|f| f.components().collect::<Vec<_>>().join(&d.component))
            .unwrap_or_default();
        out.extend_from_slice(b"QAK");
        out.push(d.field);
        out.extend_from_slice(tag);
        out.push(d.field);
        out.extend_from_slice(status.as_bytes());
        out.push(d.field);
        out.extend_from_slice(&query_name);
        if let Answer::Patients(patients, _) = &answer {
            if !pix {
                let count = patients.len().to_string();
                for value in [count.as_str(), count.as_str(), "0"] {
                    out.push(d.field);
                    out.extend_from_slice(value.as_bytes());
                }
            }
        }
        out.push(b'\r');
        if let Some(qpd) = qpd {
            out.extend_from_slice(qpd.raw());
            out.push(b'\r');
        }
        if let Answer::Patients(patients, domains) = &answer {
            for (n, patient) in patients.iter().enumerate() {
                out.extend_from_slice(&pid_segment(n + 1, patient, domains, pix, &d, &text));
            }
        }
        Processed {
            code,
            ack: Some(Bytes::from(out)),
        }
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

    async fn run(&self, query: Query) -> Answer {
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
                let request = SearchRequest::parse("Patient", &search, true)?;
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
                match repository::summary::cross_reference(sql, &source, &domains, "") {
                    Ok(text) => {
                        let parameters = exact_json::parse(&text).unwrap_or(Value::Null);
                        let identifiers: Vec<Value> = parameters["parameter"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|p| p["name"] == "targetIdentifier")
                            .map(|p| p["valueIdentifier"].clone())
                            .collect();
                        Ok(if identifiers.is_empty() {
                            Answer::NotFound
                        } else {
                            Answer::Patients(
                                vec![serde_json::json!({"identifier": identifiers})],
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
        return crate::fhir::query::percent_decode(namespace);
    }
    format!("{subcomponent}{system}{subcomponent}URI")
}

/// A PID segment for a FHIR Patient: identifiers (those of `domains` when
/// given), then for Q22 name, birth date, sex and address.
fn pid_segment(
    set_id: usize,
    patient: &Value,
    domains: &[String],
    identifiers_only: bool,
    d: &mappers::hl7v2::Delimiters,
    text: &dyn Fn(&str) -> Vec<u8>,
) -> Vec<u8> {
    let component = d.component;
    let sub = char::from(d.subcomponent);
    let mut fields: Vec<Vec<u8>> =
        vec![b"PID".to_vec(), set_id.to_string().into_bytes(), Vec::new()];
    // PID-3: value^^^authority^type, one repetition per identifier.
    let mut cx_list = Vec::new();
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
        let mut cx = text(value);
        cx.extend([component, component, component]);
        // The authority's subcomponent separators must stay separators.
        let hd = authority(system, sub);
        let parts: Vec<Vec<u8>> = hd.split(sub).map(text).collect();
        cx.extend(parts.join(&d.subcomponent));
        cx.push(component);
        cx.extend(text(kind));
        cx_list.push(cx);
    }
    fields.push(cx_list.join(&d.repetition));
    if !identifiers_only {
        fields.push(Vec::new()); // PID-4
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
        let mut xpn = text(name["family"].as_str().unwrap_or(""));
        let given: Vec<&str> = name["given"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if let Some(first) = given.first() {
            xpn.push(component);
            xpn.extend(text(first));
        }
        if given.len() > 1 {
            xpn.push(component);
            xpn.extend(text(&given[1..].join(" ")));
        }
        fields.push(xpn); // PID-5
        fields.push(Vec::new()); // PID-6
        fields.push(text(
            &patient["birthDate"].as_str().unwrap_or("").replace('-', ""),
        )); // PID-7
        let sex = match patient["gender"].as_str() {
            Some("male") => "M",
            Some("female") => "F",
            Some("other") => "O",
            Some(_) => "U",
            None => "",
        };
        fields.push(sex.as_bytes().to_vec()); // PID-8
        fields.push(Vec::new()); // PID-9
        fields.push(Vec::new()); // PID-10
        let address = patient["address"].get(0).cloned().unwrap_or(Value::Null);
        let line = address["line"].get(0).and_then(Value::as_str).unwrap_or("");
        let mut xad = text(line);
        for key in ["", "city", "state", "postalCode", "country"] {
            xad.push(component);
            if !key.is_empty() {
                xad.extend(text(address[key].as_str().unwrap_or("")));
            }
        }
        fields.push(if address.is_null() { Vec::new() } else { xad }); // PID-11
    }
    let mut out = fields.join(&d.field);
    out.push(b'\r');
    out
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
}
