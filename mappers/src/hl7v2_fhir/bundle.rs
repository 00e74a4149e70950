//! The transaction Bundle a mapping produces: one entry per resource, each
//! with a deterministic `urn:uuid` fullUrl (the same source identifiers
//! always give the same ids) and a conditional request, so that replaying a
//! message, or receiving a duplicate, never creates a second resource at a
//! FHIR server.

use sha2::{Digest, Sha256};

use crate::fhir::r4b::codes::HTTPVerb;
use crate::fhir::r4b::resources::{BundleEntry, BundleEntryRequest, Resource};
use crate::fhir::r4b::types::Identifier;
use crate::fhir::{to_json, ExactDecimals};
use crate::mapping::{MappedBundle, MappingError};

use super::support::{built, MapResult};

/// The identifier system of deterministic identifiers: the value is the
/// resource's `urn:uuid`, as FHIR allows for identifiers with no business
/// meaning.
pub(crate) const URI_SYSTEM: &str = "urn:ietf:rfc:3986";

/// A deterministic UUID (RFC 9562 version 8, name-based with SHA-256) from
/// the parts that identify a resource at its source.
pub(crate) fn uuid_for(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        // Unit separator: ["ab", "c"] and ["a", "bc"] differ.
        hasher.update([0x1f]);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex_lower(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// A short stable key for a patient identifier (delivery orders messages
/// per patient by it; it is a hash so that it never shows the identifier).
pub(crate) fn patient_key(system: &str, value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(system.as_bytes());
    hasher.update([b'|']);
    hasher.update(value.as_bytes());
    hex_lower(hasher.finalize().get(..12).unwrap_or(&[]))
}

/// How an entry is written at the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    /// `PUT Type?identifier=system|value`: created if absent, replaced if
    /// present (the message is the source of truth for it).
    Update { system: String, value: String },
    /// `POST Type` with `ifNoneExist: identifier=system|value`: created
    /// only if absent (reference data such as practitioners, where the
    /// message is not the source of truth).
    CreateIfAbsent { system: String, value: String },
    /// `PUT Type/<uuid>` with the resource's `id` set to the uuid: for
    /// resources that have no identifier element to search on (Binary).
    /// Servers that accept client-assigned ids (HAPI, Medplum, Firely)
    /// create it the first time and overwrite it with the same bytes after.
    UpdateById,
}

impl Write {
    pub fn update(identifier: &(String, String)) -> Write {
        Write::Update {
            system: identifier.0.clone(),
            value: identifier.1.clone(),
        }
    }

    pub fn create_if_absent(identifier: &(String, String)) -> Write {
        Write::CreateIfAbsent {
            system: identifier.0.clone(),
            value: identifier.1.clone(),
        }
    }
}

fn identifier_query(system: &str, value: &str) -> String {
    let mut query = String::with_capacity(16 + system.len() + value.len() + 8);
    query.push_str("identifier=");
    push_token_part(&mut query, system);
    query.push_str("%7C");
    push_token_part(&mut query, value);
    query
}

/// Appends one part of a token search value: `|`, `,`, `$` and `\` are
/// escaped with `\` by FHIR search rules, then the whole is URL-encoded
/// (RFC 3986 unreserved characters kept).
fn push_token_part(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if matches!(byte, b'\\' | b'|' | b',' | b'$') {
            out.push_str("%5C");
        }
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

/// A resource's deterministic identity: its `urn:uuid` and the identifier
/// it is written by (a business identifier when the source has one).
#[derive(Debug, Clone)]
pub(crate) struct Keyed {
    pub uuid: String,
    /// (system, value)
    pub identifier: (String, String),
    /// A source ID that no assigning authority qualifies: kept on the
    /// resource as an identifier without a system, but not searched on.
    pub unqualified: Option<String>,
}

impl Keyed {
    /// Identity from a business identifier.
    pub fn business(resource_type: &str, system: &str, value: &str) -> Keyed {
        Keyed {
            uuid: uuid_for(&[resource_type, system, value]),
            identifier: (system.to_string(), value.to_string()),
            unqualified: None,
        }
    }

    /// Identity from a source ID and its assigning authority's system; an
    /// ID with no system is derived from the sending application and the
    /// ID, and the ID is kept on the resource (see [`Keyed::identifiers`]).
    pub fn by_id(
        resource_type: &str,
        system: Option<&str>,
        id: &str,
        sending_application: &str,
    ) -> Keyed {
        match system {
            Some(system) => Keyed::business(resource_type, system, id),
            None => Keyed {
                unqualified: Some(id.to_string()),
                ..Keyed::derived(resource_type, &["unqualified", sending_application, id])
            },
        }
    }

    /// Identity from source parts when there is no business identifier:
    /// the identifier is a deterministic `urn:uuid` of its own. It is not
    /// the entry's `fullUrl`: servers that resolve `urn:uuid` placeholders
    /// by rewriting every matching string in the Bundle (Medplum does)
    /// would rewrite the identifier too, and the next delivery of the same
    /// message would no longer find the resource and create a duplicate.
    pub fn derived(resource_type: &str, parts: &[&str]) -> Keyed {
        let mut all = Vec::with_capacity(parts.len() + 2);
        all.push(resource_type);
        all.extend_from_slice(parts);
        let uuid = uuid_for(&all);
        all.push("identifier");
        let identifier = uuid_for(&all);
        Keyed {
            identifier: (URI_SYSTEM.to_string(), format!("urn:uuid:{identifier}")),
            uuid,
            unqualified: None,
        }
    }

    pub fn reference(&self) -> String {
        format!("urn:uuid:{}", self.uuid)
    }

    /// Whether the identifier is a derived `urn:uuid` (not a business one).
    pub fn is_derived(&self) -> bool {
        self.identifier.0 == URI_SYSTEM
    }

    /// The identifier element to put on the resource.
    pub fn identifier(&self) -> MapResult<Identifier> {
        built(
            Identifier::builder()
                .system(self.identifier.0.clone())
                .value(self.identifier.1.clone())
                .build(),
        )
    }

    /// The identifiers to put on a resource keyed by [`Keyed::by_id`]: the
    /// unqualified source ID first, when there is one, then the identifier
    /// the resource is written by.
    pub fn identifiers(&self) -> MapResult<Vec<Option<Identifier>>> {
        let mut out = Vec::with_capacity(2);
        if let Some(id) = &self.unqualified {
            out.push(Some(built(
                Identifier::builder().value(id.clone()).build(),
            )?));
        }
        out.push(Some(self.identifier()?));
        Ok(out)
    }
}

/// Entries collected by a mapping.
#[derive(Default)]
pub(crate) struct Transaction {
    entries: Vec<BundleEntry>,
    decimals: Vec<ExactDecimals>,
    full_urls: Vec<String>,
}

impl Transaction {
    /// Adds a resource; a second resource with the same identity (the same
    /// practitioner named twice) is not added again. Returns the reference
    /// other resources use.
    pub fn add(
        &mut self,
        keyed: &Keyed,
        resource_type: &str,
        resource: Resource,
        decimals: ExactDecimals,
        write: Write,
    ) -> MapResult<String> {
        let full_url = keyed.reference();
        if self.full_urls.contains(&full_url) {
            return Ok(full_url);
        }
        let request = match &write {
            Write::Update { system, value } => BundleEntryRequest::builder()
                .method(HTTPVerb::Put)
                .url(format!(
                    "{resource_type}?{}",
                    identifier_query(system, value)
                )),
            Write::CreateIfAbsent { system, value } => BundleEntryRequest::builder()
                .method(HTTPVerb::Post)
                .url(resource_type.to_string())
                .if_none_exist(identifier_query(system, value)),
            Write::UpdateById => BundleEntryRequest::builder()
                .method(HTTPVerb::Put)
                .url(format!("{resource_type}/{}", keyed.uuid)),
        };
        let entry = built(
            BundleEntry::builder()
                .full_url(full_url.clone())
                .resource(resource)
                .request(built(request.build())?)
                .build(),
        )?;
        self.entries.push(entry);
        self.decimals.push(decimals);
        self.full_urls.push(full_url.clone());
        Ok(full_url)
    }

    pub fn contains(&self, reference: &str) -> bool {
        self.full_urls.iter().any(|url| url == reference)
    }

    /// The Bundle as JSON text, every decimal written as sent. Each entry
    /// is written on its own, with its own few decimal pointers, so that
    /// the writer's pointer tracking never searches the whole Bundle's;
    /// the text is the one fhir-sdk's `Bundle` would serialise to.
    pub fn finish(self, patient_key: Option<String>) -> MapResult<MappedBundle> {
        let cannot_write =
            |error| MappingError::internal(format!("cannot write the Bundle: {error}"));
        let mut bundle = String::with_capacity(2048 * (self.entries.len() + 1));
        bundle.push_str(r#"{"resourceType":"Bundle","type":"transaction""#);
        for (index, (entry, recorded)) in self.entries.iter().zip(&self.decimals).enumerate() {
            bundle.push_str(if index == 0 { r#","entry":["# } else { "," });
            let decimals = match recorded.is_empty() {
                true => ExactDecimals::default(),
                false => recorded.nested_under("/resource"),
            };
            bundle.push_str(&to_json(entry, &decimals).map_err(cannot_write)?);
        }
        if !self.entries.is_empty() {
            bundle.push(']');
        }
        bundle.push('}');
        Ok(MappedBundle {
            bundle,
            patient_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_deterministic_and_well_formed() {
        let a = uuid_for(&["Patient", "urn:oid:1.2", "123"]);
        assert_eq!(a, uuid_for(&["Patient", "urn:oid:1.2", "123"]));
        assert_ne!(a, uuid_for(&["Patient", "urn:oid:1.2", "124"]));
        assert_ne!(uuid_for(&["ab", "c"]), uuid_for(&["a", "bc"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    /// `finish` writes entry by entry what serialising fhir-sdk's Bundle
    /// with the decimals nested under each entry writes.
    #[test]
    fn finished_bundle_is_the_fhir_sdk_bundle_text() {
        use crate::fhir::r4b::codes::{BundleType, ObservationStatus};
        use crate::fhir::r4b::resources::{Bundle, Observation, ObservationValue, Organization};
        use crate::fhir::r4b::types::{CodeableConcept, Quantity};
        use crate::fhir::Decimal;

        assert_eq!(
            Transaction::default().finish(None).unwrap().bundle,
            r#"{"resourceType":"Bundle","type":"transaction"}"#
        );
        let mut tx = Transaction::default();
        let organization = Organization::builder().name("Lab".into()).build().unwrap();
        let keyed = Keyed::business("Organization", "urn:oid:1.2", "9");
        let write = Write::create_if_absent(&keyed.identifier);
        let resource = Resource::Organization(organization);
        tx.add(
            &keyed,
            "Organization",
            resource,
            ExactDecimals::default(),
            write,
        )
        .unwrap();
        let value = Decimal::parse("1.50").unwrap();
        let mut observation = Observation::builder()
            .status(ObservationStatus::Final)
            .code(
                CodeableConcept::builder()
                    .text("Glucose".into())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        observation.value = Some(ObservationValue::Quantity(
            Quantity::builder().value(value.value()).build().unwrap(),
        ));
        let mut decimals = ExactDecimals::default();
        decimals.record("/valueQuantity/value", &value);
        let keyed = Keyed::derived("Observation", &["x"]);
        let write = Write::update(&keyed.identifier);
        let resource = Resource::Observation(observation);
        tx.add(&keyed, "Observation", resource, decimals.clone(), write)
            .unwrap();

        let expected = Bundle::builder()
            .r#type(BundleType::Transaction)
            .entry(tx.entries.iter().cloned().map(Some).collect())
            .build()
            .unwrap();
        let expected = to_json(&expected, &decimals.nested_under("/entry/1/resource")).unwrap();
        let written = tx.finish(None).unwrap().bundle;
        assert_eq!(written, expected);
        assert!(written.contains(r#""value":1.50"#));
    }

    #[test]
    fn conditional_urls_escape_search_and_url_syntax() {
        assert_eq!(
            identifier_query("urn:oid:1.2.250", "A|B 1"),
            "identifier=urn%3Aoid%3A1.2.250%7CA%5C%7CB%201"
        );
        assert_eq!(
            identifier_query("s", "a\\b,c$\u{e9}"),
            "identifier=s%7Ca%5C%5Cb%5C%2Cc%5C%24%C3%A9"
        );
    }
}
