//! The transaction Bundle a mapping produces: one entry per resource, each
//! with a deterministic `urn:uuid` fullUrl (the same source identifiers
//! always give the same ids) and a conditional request, so that replaying a
//! message, or receiving a duplicate, never creates a second resource at a
//! FHIR server.

use sha2::{Digest, Sha256};

use crate::fhir::r4b::codes::HTTPVerb;
use crate::fhir::r4b::resources::{BundleEntryRequest, Resource};
use crate::fhir::r4b::types::Identifier;
use crate::fhir::{write_request, write_resource, write_string, ExactDecimals};
use crate::mapping::{MappedBundle, MappingError};

use super::support::{built, MapResult};

/// The identifier system of deterministic identifiers: the value is the
/// resource's `urn:uuid`, as FHIR allows for identifiers with no business
/// meaning.
pub(crate) const URI_SYSTEM: &str = "urn:ietf:rfc:3986";

/// A deterministic UUID (RFC 9562 version 8, name-based with SHA-256) from
/// the parts that identify a resource at its source.
pub(crate) fn uuid_for(parts: &[&str]) -> String {
    uuid_of(hash_parts(parts))
}

/// The hasher after the parts.
fn hash_parts(parts: &[&str]) -> Sha256 {
    let mut hasher = Sha256::new();
    for part in parts {
        add_part(&mut hasher, part);
    }
    hasher
}

/// One part, followed by a unit separator so that ["ab", "c"] and
/// ["a", "bc"] differ.
fn add_part(hasher: &mut Sha256, part: &str) {
    hasher.update(part.as_bytes());
    hasher.update([0x1f]);
}

fn uuid_of(hasher: Sha256) -> String {
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        push_hex(&mut out, *byte);
    }
    out
}

fn hex_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        push_hex(&mut out, *byte);
    }
    out
}

fn push_hex(out: &mut String, byte: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(char::from(DIGITS[usize::from(byte >> 4)]));
    out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
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
    push_identifier_query(&mut query, system, value);
    query
}

/// Appends `identifier=system|value`, escaped for a search URL.
fn push_identifier_query(out: &mut String, system: &str, value: &str) {
    out.push_str("identifier=");
    push_token_part(out, system);
    out.push_str("%7C");
    push_token_part(out, value);
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
        let mut hasher = hash_parts(&[resource_type]);
        for part in parts {
            add_part(&mut hasher, part);
        }
        // The identifier's uuid is that of the same parts and "identifier":
        // the hash of the shared prefix is computed once.
        let mut identifier = hasher.clone();
        add_part(&mut identifier, "identifier");
        let mut value = String::with_capacity(45);
        value.push_str("urn:uuid:");
        value.push_str(&uuid_of(identifier));
        Keyed {
            identifier: (URI_SYSTEM.to_string(), value),
            uuid: uuid_of(hasher),
            unqualified: None,
        }
    }

    pub fn reference(&self) -> String {
        let mut reference = String::with_capacity(9 + self.uuid.len());
        reference.push_str("urn:uuid:");
        reference.push_str(&self.uuid);
        reference
    }

    /// Whether the identifier is a derived `urn:uuid` (not a business one).
    pub fn is_derived(&self) -> bool {
        self.identifier.0 == URI_SYSTEM
    }

    /// The identifier element to put on the resource.
    pub fn identifier(&self) -> MapResult<Identifier> {
        let mut identifier = built(Identifier::builder().build())?;
        identifier.system = Some(self.identifier.0.clone());
        identifier.value = Some(self.identifier.1.clone());
        Ok(identifier)
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
    entries: Vec<Entry>,
}

/// One Bundle entry, kept in parts so that the resource is written with
/// its own decimal pointers (`/valueQuantity/value`, not
/// `/resource/valueQuantity/value`).
struct Entry {
    full_url: String,
    resource: Resource,
    decimals: ExactDecimals,
    request: BundleEntryRequest,
}

impl Entry {
    /// The fhir-sdk entry these parts are.
    #[cfg(test)]
    fn bundle_entry(&self) -> crate::fhir::r4b::resources::BundleEntry {
        use crate::fhir::r4b::resources::BundleEntry;
        let mut entry = BundleEntry::builder().build().unwrap();
        entry.full_url = Some(self.full_url.clone());
        entry.resource = Some(self.resource.clone());
        entry.request = Some(self.request.clone());
        entry
    }
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
        if self.holds(keyed) {
            return Ok(full_url);
        }
        let request = match &write {
            Write::Update { system, value } => {
                let mut url = String::with_capacity(resource_type.len() + 64);
                url.push_str(resource_type);
                url.push('?');
                push_identifier_query(&mut url, system, value);
                BundleEntryRequest::builder().method(HTTPVerb::Put).url(url)
            }
            Write::CreateIfAbsent { system, value } => BundleEntryRequest::builder()
                .method(HTTPVerb::Post)
                .url(resource_type.to_string())
                .if_none_exist(identifier_query(system, value)),
            Write::UpdateById => BundleEntryRequest::builder()
                .method(HTTPVerb::Put)
                .url(format!("{resource_type}/{}", keyed.uuid)),
        };
        self.entries.push(Entry {
            full_url: full_url.clone(),
            resource,
            decimals,
            request: built(request.build())?,
        });
        Ok(full_url)
    }

    /// Whether an entry has this identity.
    pub fn holds(&self, keyed: &Keyed) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.full_url.strip_prefix("urn:uuid:") == Some(keyed.uuid.as_str()))
    }

    /// The Bundle as JSON text, every decimal written as sent. Each entry
    /// is written as fhir-sdk's `BundleEntry` writes one (fullUrl,
    /// resource, request), the resource with its own few decimal pointers,
    /// so that the writer's pointer tracking never searches the whole
    /// Bundle's; the text is the one fhir-sdk's `Bundle` would serialise to
    /// (a test compares).
    pub fn finish(self, patient_key: Option<String>) -> MapResult<MappedBundle> {
        let cannot_write =
            |error| MappingError::internal(format!("cannot write the Bundle: {error}"));
        let mut bundle = Vec::with_capacity(2048 * (self.entries.len() + 1));
        bundle.extend_from_slice(br#"{"resourceType":"Bundle","type":"transaction""#);
        for (index, entry) in self.entries.iter().enumerate() {
            bundle.extend_from_slice(if index == 0 { br#","entry":["# } else { b"," });
            bundle.extend_from_slice(br#"{"fullUrl":"#);
            write_string(&mut bundle, &entry.full_url);
            bundle.extend_from_slice(br#","resource":"#);
            write_resource(&mut bundle, &entry.resource, &entry.decimals).map_err(cannot_write)?;
            bundle.extend_from_slice(br#","request":"#);
            write_request(&mut bundle, &entry.request).map_err(cannot_write)?;
            bundle.push(b'}');
        }
        if !self.entries.is_empty() {
            bundle.push(b']');
        }
        bundle.push(b'}');
        let bundle = String::from_utf8(bundle)
            .map_err(|error| MappingError::internal(format!("cannot write the Bundle: {error}")))?;
        Ok(MappedBundle {
            bundle,
            patient_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::to_json;

    #[test]
    fn uuids_are_deterministic_and_well_formed() {
        let a = uuid_for(&["Patient", "urn:oid:1.2", "123"]);
        assert_eq!(a, uuid_for(&["Patient", "urn:oid:1.2", "123"]));
        assert_ne!(a, uuid_for(&["Patient", "urn:oid:1.2", "124"]));
        assert_ne!(uuid_for(&["ab", "c"]), uuid_for(&["a", "bc"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        // Pinned: ids already written at FHIR servers must never change.
        assert_eq!(a, "573fddfe-7f8b-86a5-9de5-e940b1cc6d6e");
        let keyed = Keyed::derived("Observation", &["a", "b"]);
        assert_eq!(keyed.uuid, "a1461fbe-b810-8a29-a81b-81fd36d61d80");
        assert_eq!(keyed.uuid, uuid_for(&["Observation", "a", "b"]));
        assert_eq!(
            keyed.identifier.1,
            format!(
                "urn:uuid:{}",
                uuid_for(&["Observation", "a", "b", "identifier"])
            )
        );
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
            .entry(tx.entries.iter().map(|e| Some(e.bundle_entry())).collect())
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
