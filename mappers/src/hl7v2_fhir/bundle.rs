//! The transaction Bundle a mapping produces: one entry per resource, each
//! with a deterministic `urn:uuid` fullUrl (the same source identifiers
//! always give the same ids) and a conditional request, so that replaying a
//! message, or receiving a duplicate, never creates a second resource at a
//! FHIR server.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::fhir::r4b::resources::Resource;
use crate::fhir::r4b::types::Identifier;
use crate::fhir::{write_resource, write_string, ExactDecimals};
use crate::mapping::{MappedBundle, MappingError};

use super::elements;
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
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = hasher.finalize();
    // Written as bytes, then checked as UTF-8 once: pushing 36 chars one by
    // one costs more than the hash on a CPU with SHA instructions.
    let mut text = [b'-'; 36];
    let mut at = 0;
    for (index, byte) in digest.iter().take(16).enumerate() {
        let byte = match index {
            6 => (byte & 0x0f) | 0x80,
            8 => (byte & 0x3f) | 0x80,
            _ => *byte,
        };
        if matches!(index, 4 | 6 | 8 | 10) {
            at += 1;
        }
        if let Some(pair) = text.get_mut(at..at + 2) {
            pair.copy_from_slice(&[
                DIGITS[usize::from(byte >> 4)],
                DIGITS[usize::from(byte & 0x0f)],
            ]);
        }
        at += 2;
    }
    std::str::from_utf8(&text)
        .map(str::to_owned)
        .unwrap_or_default()
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

/// How an entry is written at the server, by the identifier of its
/// [`Keyed`] identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// `PUT Type?identifier=system|value`: created if absent, replaced if
    /// present (the message is the source of truth for it).
    Update,
    /// `POST Type` with `ifNoneExist: identifier=system|value`: created
    /// only if absent (reference data such as practitioners, where the
    /// message is not the source of truth).
    CreateIfAbsent,
    /// `PUT Type/<uuid>` with the resource's `id` set to the uuid: for
    /// resources that have no identifier element to search on (Binary).
    /// Servers that accept client-assigned ids (HAPI, Medplum, Firely)
    /// create it the first time and overwrite it with the same bytes after.
    UpdateById,
}

/// Appends `identifier=system|value`, escaped for a search URL.
pub(crate) fn push_identifier_query(out: &mut Vec<u8>, system: &str, value: &str) {
    out.extend_from_slice(b"identifier=");
    push_token_part(out, system);
    out.extend_from_slice(b"%7C");
    push_token_part(out, value);
}

/// Appends one part of a token search value: `|`, `,`, `$` and `\` are
/// escaped with `\` by FHIR search rules, then the whole is URL-encoded
/// (RFC 3986 unreserved characters kept). The output is ASCII.
fn push_token_part(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 8);
    // Runs of unreserved characters (all of a uuid's) are copied whole.
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if UNRESERVED[usize::from(byte)] {
            continue;
        }
        out.extend_from_slice(bytes.get(start..at).unwrap_or_default());
        start = at + 1;
        if matches!(byte, b'\\' | b'|' | b',' | b'$') {
            out.extend_from_slice(b"%5C");
        }
        out.extend_from_slice(&[
            b'%',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0x0f)],
        ]);
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// RFC 3986's unreserved characters, by byte.
const UNRESERVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        byte += 1;
    }
    table
};

/// A resource's deterministic identity: its `urn:uuid` and the identifier
/// it is written by (a business identifier when the source has one).
#[derive(Debug, Clone)]
pub(crate) struct Keyed {
    pub uuid: String,
    /// (system, value); the system of a derived identity is
    /// [`URI_SYSTEM`], not copied for each resource.
    pub identifier: (Cow<'static, str>, String),
    /// A source ID that no assigning authority qualifies: kept on the
    /// resource as an identifier without a system, but not searched on.
    pub unqualified: Option<String>,
}

impl Keyed {
    /// Identity from a business identifier.
    pub fn business(resource_type: &str, system: &str, value: &str) -> Keyed {
        Keyed {
            uuid: uuid_for(&[resource_type, system, value]),
            identifier: (Cow::Owned(system.to_string()), value.to_string()),
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
            identifier: (Cow::Borrowed(URI_SYSTEM), value),
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
        let mut identifier = elements::identifier();
        identifier.system = Some(self.identifier.0.to_string());
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

/// The Bundle a mapping writes: each entry is written as JSON when it is
/// added, so that its fhir-sdk resource is freed at once (the next
/// resource's allocations reuse that memory while it is still in cache)
/// and no second pass over the entries is needed.
pub(crate) struct Transaction {
    /// `{"resourceType":"Bundle","type":"transaction"` and the entries
    /// written so far, each as fhir-sdk's `BundleEntry` writes one.
    written: Vec<u8>,
    /// The uuid of each entry written, for [`Transaction::holds`].
    uuids: Vec<String>,
}

const BUNDLE_START: &[u8] = br#"{"resourceType":"Bundle","type":"transaction""#;

impl Default for Transaction {
    fn default() -> Self {
        // An ORU with ten results is about 17 kB: one allocation for most.
        let mut written = Vec::with_capacity(32 * 1024);
        written.extend_from_slice(BUNDLE_START);
        Transaction {
            written,
            uuids: Vec::new(),
        }
    }
}

impl Transaction {
    /// Adds a resource; a second resource with the same identity (the same
    /// practitioner named twice) is not added again. Returns the reference
    /// other resources use.
    ///
    /// The entry is written as its parts (fullUrl, resource, request), the
    /// resource with its own few decimal pointers (`/valueQuantity/value`,
    /// not `/entry/3/resource/valueQuantity/value`), so that the writer's
    /// pointer tracking never searches the whole Bundle's; the text is the
    /// one fhir-sdk's `Bundle` would serialise to (a test compares).
    pub fn add(
        &mut self,
        keyed: &Keyed,
        resource_type: &str,
        resource: Resource,
        decimals: ExactDecimals,
        write: Write,
    ) -> MapResult<String> {
        self.add_borrowed(keyed, resource_type, &resource, &decimals, write)
    }

    /// [`Transaction::add`] of a resource the caller keeps (to refill it
    /// for the next entry: see `elements::Spare`).
    pub fn add_borrowed(
        &mut self,
        keyed: &Keyed,
        resource_type: &str,
        resource: &Resource,
        decimals: &ExactDecimals,
        write: Write,
    ) -> MapResult<String> {
        let full_url = keyed.reference();
        if self.holds(keyed) {
            return Ok(full_url);
        }
        let out = &mut self.written;
        out.extend_from_slice(if self.uuids.is_empty() {
            br#","entry":["#
        } else {
            b","
        });
        out.extend_from_slice(br#"{"fullUrl":"#);
        write_string(out, &full_url);
        out.extend_from_slice(br#","resource":"#);
        write_resource(out, resource, decimals).map_err(cannot_write)?;
        out.extend_from_slice(br#","request":"#);
        write_request(out, resource_type, keyed, write);
        out.push(b'}');
        self.uuids.push(keyed.uuid.clone());
        Ok(full_url)
    }

    /// Whether an entry has this identity.
    pub fn holds(&self, keyed: &Keyed) -> bool {
        self.uuids.contains(&keyed.uuid)
    }

    /// The Bundle as JSON text, every decimal written as sent.
    pub fn finish(self, patient_key: Option<String>) -> MapResult<MappedBundle> {
        let mut bundle = self.written;
        if !self.uuids.is_empty() {
            bundle.push(b']');
        }
        bundle.push(b'}');
        let bundle = String::from_utf8(bundle).map_err(cannot_write)?;
        Ok(MappedBundle {
            bundle,
            patient_key,
        })
    }
}

/// A Bundle that cannot be written is a bug in a mapping, never the
/// sender's fault.
fn cannot_write(error: impl std::fmt::Display) -> MappingError {
    MappingError::internal(format!("cannot write the Bundle: {error}"))
}

/// An entry's `request` as fhir-sdk's `BundleEntryRequest` writes it
/// (method, url, then ifNoneExist), written straight from the identity:
/// the URL's characters are the resource type's letters, the uuid's hex
/// digits and [`push_token_part`]'s output, none of which JSON escapes.
fn write_request(out: &mut Vec<u8>, resource_type: &str, keyed: &Keyed, write: Write) {
    let method = match write {
        Write::Update | Write::UpdateById => "PUT",
        Write::CreateIfAbsent => "POST",
    };
    out.extend_from_slice(br#"{"method":""#);
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(br#"","url":""#);
    out.extend_from_slice(resource_type.as_bytes());
    let (system, value) = &keyed.identifier;
    match write {
        Write::Update => {
            out.push(b'?');
            push_identifier_query(out, system, value);
        }
        Write::CreateIfAbsent => {
            out.extend_from_slice(br#"","ifNoneExist":""#);
            push_identifier_query(out, system, value);
        }
        Write::UpdateById => {
            out.push(b'/');
            out.extend_from_slice(keyed.uuid.as_bytes());
        }
    }
    out.extend_from_slice(br#""}"#);
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

    /// The conditional search of a request, as text.
    fn identifier_query(system: &str, value: &str) -> String {
        let mut query = Vec::new();
        push_identifier_query(&mut query, system, value);
        String::from_utf8(query).unwrap()
    }

    /// What `add` writes, entry by entry, is what serialising fhir-sdk's
    /// Bundle of the same entries (decimals nested under each entry)
    /// writes, for each kind of request; a resource added twice is one
    /// entry.
    #[test]
    fn written_bundle_is_the_fhir_sdk_bundle_text() {
        use crate::fhir::r4b::codes::{BundleType, HTTPVerb, ObservationStatus};
        use crate::fhir::r4b::resources::{
            Binary, Bundle, BundleEntry, BundleEntryRequest, Observation, ObservationValue,
            Organization,
        };
        use crate::fhir::r4b::types::{CodeableConcept, Quantity};
        use crate::fhir::Decimal;

        assert_eq!(
            Transaction::default().finish(None).unwrap().bundle,
            r#"{"resourceType":"Bundle","type":"transaction"}"#
        );
        let mut tx = Transaction::default();
        let mut expected = Vec::new();
        let mut expect = |keyed: &Keyed, resource: &Resource, request: BundleEntryRequest| {
            let mut entry = BundleEntry::builder().build().unwrap();
            entry.full_url = Some(keyed.reference());
            entry.resource = Some(resource.clone());
            entry.request = Some(request);
            expected.push(Some(entry));
        };

        let organization = Organization::builder().name("Lab".into()).build().unwrap();
        let resource = Resource::Organization(organization);
        // A value with every kind of escape a search URL needs.
        let keyed = Keyed::business("Organization", "urn:oid:1.2", "A|b\\c, d$\u{e9}");
        let request = BundleEntryRequest::builder()
            .method(HTTPVerb::Post)
            .url("Organization".into())
            .if_none_exist(identifier_query("urn:oid:1.2", "A|b\\c, d$\u{e9}"))
            .build()
            .unwrap();
        expect(&keyed, &resource, request);
        let write = Write::CreateIfAbsent;
        let none = ExactDecimals::default;
        tx.add(&keyed, "Organization", resource.clone(), none(), write)
            .unwrap();
        // The same identity again: no second entry.
        tx.add(&keyed, "Organization", resource, none(), write)
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
        let resource = Resource::Observation(observation);
        let request = BundleEntryRequest::builder()
            .method(HTTPVerb::Put)
            .url(format!(
                "Observation?{}",
                identifier_query(&keyed.identifier.0, &keyed.identifier.1)
            ))
            .build()
            .unwrap();
        expect(&keyed, &resource, request);
        let write = Write::Update;
        tx.add(&keyed, "Observation", resource, decimals.clone(), write)
            .unwrap();

        let binary = Binary::builder()
            .content_type("text/plain".into())
            .build()
            .unwrap();
        let resource = Resource::Binary(binary);
        let keyed = Keyed::derived("Binary", &["y"]);
        let request = BundleEntryRequest::builder()
            .method(HTTPVerb::Put)
            .url(format!("Binary/{}", keyed.uuid))
            .build()
            .unwrap();
        expect(&keyed, &resource, request);
        tx.add(&keyed, "Binary", resource, none(), Write::UpdateById)
            .unwrap();

        let expected = Bundle::builder()
            .r#type(BundleType::Transaction)
            .entry(expected)
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
