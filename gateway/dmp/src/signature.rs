//! The signed submission set: an IHE DSG signature document sent with the
//! documents of each ITI-41 submission, signed with the structure's seal
//! certificate (the one that signs the VIHF), tied to the submission set
//! by a `signs` association.
//!
//! The DMP's own rules for it are in its non-public integration guide;
//! this follows the shape of the ANS's public DMP-feeding reference
//! software (DRIMbox): a detached XML-DSIG `Signature` whose `SignedInfo`
//! references a `Manifest` and XAdES `SignedProperties` (signing time and
//! signing certificate), the `Manifest` holding one `Reference` per
//! document (`urn:oid:` + its uniqueId, the digest of its bytes) and one
//! to the submission set (`urn:oid:` + its uniqueId; a set has no bytes,
//! its digest is the placeholder `AA==`), the purpose "Source"
//! (`1.2.840.10065.1.12.1.14`) as a `SignatureProperty`. Our choices, said
//! in docs/dmp.md: exclusive c14n, SHA-256 and RSA-SHA256 (as the VIHF)
//! where DRIMbox uses inclusive c14n and SHA-1.
//!
//! Built here ([`sign`], [`entry`]) and checked here ([`verify`]): the
//! simulator verifies what the connector signs, and xmlsec1 verifies it
//! too (tests).

use base64::Engine;

use xds::c14n::{canonicalize, Apex, Options};
use xds::metadata::{Author, Code, DocumentEntry};

use crate::dsig;
use crate::vihf::{certificate_names, VihfError, VihfSigner, DSIG, EXC_C14N, RSA_SHA256, SHA256};

/// XAdES 1.1.1, as DRIMbox writes it.
pub const XADES: &str = "http://uri.etsi.org/01903/v1.1.1#";
/// The `Type` of a reference to a Manifest.
const MANIFEST_TYPE: &str = "http://www.w3.org/2000/09/xmldsig#Manifest";
/// The `Type` of a reference to XAdES SignedProperties.
const SIGNED_PROPERTIES_TYPE: &str = "http://uri.etsi.org/01903/v1.1.1#SignedProperties";
/// The purpose of the signature: ASTM E1762 "Source".
pub const PURPOSE_SOURCE: &str = "1.2.840.10065.1.12.1.14";
/// The class code of a signature document (IHE DSG).
pub const CLASS_DIGITAL_SIGNATURE: &str = "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1";
/// The digest of the submission set in the Manifest: a set has no bytes.
const SET_DIGEST_PLACEHOLDER: &str = "AA==";

const MANIFEST_ID: &str = "IHEManifest";
const SIGNED_PROPERTIES_ID: &str = "S0-SignedProperties";
const SIGNATURE_ID: &str = "IHESignature";

/// A document the signature covers: its uniqueId and bytes.
pub struct Signed<'a> {
    pub unique_id: &'a str,
    pub bytes: &'a [u8],
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

fn invalid(why: &str) -> VihfError {
    VihfError::Invalid(why.to_string())
}

/// The exclusive c14n of the element of `xml` whose `Id` is `id`.
fn canonical_by_id(xml: &[u8], id: &str) -> Result<Vec<u8>, VihfError> {
    canonicalize(
        xml,
        Apex::WithId {
            attribute: "Id",
            value: id,
        },
        &Options {
            inclusive_prefixes: &[],
            omit_signatures: false,
        },
    )
    .map_err(|e| invalid(&e.to_string()))
}

/// The signature document of the submission set `set_unique_id` holding
/// `documents`, signed at `now_ms` with the seal certificate.
pub fn sign(
    signer: &VihfSigner,
    set_unique_id: &str,
    documents: &[Signed<'_>],
    now_ms: i64,
) -> Result<Vec<u8>, VihfError> {
    let certificate = signer.certificate();
    let names = certificate_names(certificate)
        .ok_or_else(|| invalid("the seal certificate cannot be read"))?;
    let mut manifest = format!(
        "<Manifest Id=\"{MANIFEST_ID}\"><Reference URI=\"urn:oid:{}\"><DigestMethod Algorithm=\"{SHA256}\"></DigestMethod><DigestValue>{SET_DIGEST_PLACEHOLDER}</DigestValue></Reference>",
        escape(set_unique_id)
    );
    for document in documents {
        manifest.push_str(&format!(
            "<Reference URI=\"urn:oid:{}\"><DigestMethod Algorithm=\"{SHA256}\"></DigestMethod><DigestValue>{}</DigestValue></Reference>",
            escape(document.unique_id),
            base64(&sha256(document.bytes))
        ));
    }
    manifest.push_str("</Manifest>");
    let properties = format!(
        "<xades:QualifyingProperties xmlns:xades=\"{XADES}\" Target=\"#{SIGNATURE_ID}\"><xades:SignedProperties Id=\"{SIGNED_PROPERTIES_ID}\"><xades:SignedSignatureProperties><xades:SigningTime>{}</xades:SigningTime><xades:SigningCertificate><xades:Cert><xades:CertDigest><DigestMethod Algorithm=\"{SHA256}\"></DigestMethod><DigestValue>{}</DigestValue></xades:CertDigest><xades:IssuerSerial><X509IssuerName>{}</X509IssuerName><X509SerialNumber>{}</X509SerialNumber></xades:IssuerSerial></xades:Cert></xades:SigningCertificate><xades:SignaturePolicyIdentifier><xades:SignaturePolicyImplied></xades:SignaturePolicyImplied></xades:SignaturePolicyIdentifier></xades:SignedSignatureProperties><xades:SignedDataObjectProperties></xades:SignedDataObjectProperties></xades:SignedProperties></xades:QualifyingProperties>",
        crate::vihf::instant(now_ms),
        base64(&sha256(certificate)),
        escape(&names.issuer),
        names.serial,
    );
    let render = |manifest_digest: &str, properties_digest: &str, value: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Signature xmlns=\"{DSIG}\" Id=\"{SIGNATURE_ID}\"><SignedInfo><CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></CanonicalizationMethod><SignatureMethod Algorithm=\"{RSA_SHA256}\"></SignatureMethod><Reference Type=\"{MANIFEST_TYPE}\" URI=\"#{MANIFEST_ID}\"><Transforms><Transform Algorithm=\"{EXC_C14N}\"></Transform></Transforms><DigestMethod Algorithm=\"{SHA256}\"></DigestMethod><DigestValue>{manifest_digest}</DigestValue></Reference><Reference Type=\"{SIGNED_PROPERTIES_TYPE}\" URI=\"#{SIGNED_PROPERTIES_ID}\"><Transforms><Transform Algorithm=\"{EXC_C14N}\"></Transform></Transforms><DigestMethod Algorithm=\"{SHA256}\"></DigestMethod><DigestValue>{properties_digest}</DigestValue></Reference></SignedInfo><SignatureValue>{value}</SignatureValue><KeyInfo><X509Data><X509Certificate>{}</X509Certificate></X509Data></KeyInfo><Object><SignatureProperties><SignatureProperty Id=\"purposeOfSignature\" Target=\"#{SIGNATURE_ID}\">{PURPOSE_SOURCE}</SignatureProperty></SignatureProperties></Object><Object>{manifest}</Object><Object>{properties}</Object></Signature>",
            base64(certificate)
        )
    };
    // The digests of the Manifest and the SignedProperties do not depend
    // on SignedInfo: computed on the document before it is filled in.
    let draft = render("", "", "");
    let manifest_digest = base64(&sha256(&canonical_by_id(draft.as_bytes(), MANIFEST_ID)?));
    let properties_digest = base64(&sha256(&canonical_by_id(
        draft.as_bytes(),
        SIGNED_PROPERTIES_ID,
    )?));
    let unsigned = render(&manifest_digest, &properties_digest, "");
    let value = signer.rsa_sha256(&dsig::canonical_signed_info(unsigned.as_bytes())?)?;
    Ok(render(&manifest_digest, &properties_digest, &base64(&value)).into_bytes())
}

/// The document entry of the signature document (IHE DSG metadata as the
/// French XDS affinity domain codes it: class "Digital Signature", type
/// ASTM E1762 "Full Document", format `xmldsig#`, event "Source",
/// language `art`, hidden from professionals and the patient), for the
/// submission whose first clinical entry is `first` and whose structure
/// author is `structure`.
pub fn entry(
    first: &DocumentEntry,
    structure: &Author,
    unique_id: String,
    bytes: &[u8],
    submission_time: &str,
) -> DocumentEntry {
    DocumentEntry {
        id: "Signature01".into(),
        unique_id,
        patient_id: first.patient_id.clone(),
        source_patient_id: first.source_patient_id.clone(),
        source_patient_info: Vec::new(),
        mime_type: "text/xml".into(),
        hash: crate::codes::sha1_hex(bytes),
        size: bytes.len() as u64,
        language_code: "art".into(),
        creation_time: submission_time.to_string(),
        service_start_time: Some(submission_time.to_string()),
        service_stop_time: Some(submission_time.to_string()),
        title: Some("Source".into()),
        comments: None,
        class_code: Code::new(CLASS_DIGITAL_SIGNATURE, "URN", "Digital Signature"),
        type_code: Code::new("E1762", "ASTM", "Full Document"),
        format_code: Code::new(DSIG, "URN", "Default Signature Style"),
        healthcare_facility_type: first.healthcare_facility_type.clone(),
        practice_setting: first.practice_setting.clone(),
        confidentiality: vec![
            Code::new("N", "2.16.840.1.113883.5.25", "Normal"),
            Code::new(
                "MASQUE_PS",
                "1.2.250.1.213.1.1.4.13",
                "Document masqué aux professionnels de santé",
            ),
            Code::new(
                "INVISIBLE_PATIENT",
                "1.2.250.1.213.1.1.4.13",
                "Document non visible par le patient",
            ),
        ],
        event_codes: vec![Code::new(PURPOSE_SOURCE, "1.2.840.10065.1.12", "Source")],
        authors: vec![structure.clone()],
        legal_authenticator: first.legal_authenticator.clone(),
    }
}

/// Whether an entry is a signature document (by its class code).
pub fn is_signature(entry: &DocumentEntry) -> bool {
    entry.class_code.code == CLASS_DIGITAL_SIGNATURE
}

/// What a verified signature document signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest {
    /// The Manifest's references: URI and digest (SHA-256).
    pub references: Vec<(String, Vec<u8>)>,
    /// The signer's certificate subject.
    pub signer: String,
    /// The signer's certificate (DER), for a trust store to judge.
    pub certificate: Vec<u8>,
}

impl SignedManifest {
    /// Whether the Manifest covers the document `unique_id` with exactly
    /// these bytes.
    pub fn covers(&self, unique_id: &str, bytes: &[u8]) -> bool {
        let uri = format!("urn:oid:{unique_id}");
        let digest = sha256(bytes);
        self.references
            .iter()
            .any(|(reference, value)| *reference == uri && *value == digest)
    }

    /// Whether the Manifest names the submission set `unique_id`.
    pub fn names_set(&self, unique_id: &str) -> bool {
        let uri = format!("urn:oid:{unique_id}");
        self.references
            .iter()
            .any(|(reference, _)| *reference == uri)
    }
}

/// Verifies a signature document: its SignedInfo (exclusive c14n,
/// RSA-SHA256 by the certificate it carries), the digests of the Manifest
/// and the SignedProperties it references, and the SignedProperties'
/// certificate digest. Which documents the Manifest covers is for the
/// caller ([`SignedManifest::covers`]).
pub fn verify(xml: &[u8]) -> Result<SignedManifest, VihfError> {
    let limits = cda::Limits {
        max_bytes: xds::read::MAX_ENVELOPE_BYTES,
        max_depth: 32,
    };
    let root = cda::xml::parse(xml, &limits).map_err(|e| invalid(&e.to_string()))?;
    let is = dsig::is;
    if !is(&root, DSIG, "Signature") {
        return Err(invalid("the signature document is not a ds:Signature"));
    }
    let signed_info = root
        .child_in(DSIG, "SignedInfo")
        .ok_or_else(|| invalid("no SignedInfo"))?;
    dsig::check_methods(signed_info)?;
    let mut manifest_id = None;
    let mut properties_id = None;
    for reference in signed_info.elements().filter(|e| is(e, DSIG, "Reference")) {
        let id = reference
            .attr("URI")
            .and_then(|uri| uri.strip_prefix('#'))
            .ok_or_else(|| {
                invalid("a SignedInfo Reference is not to an element of the document")
            })?;
        if dsig::transforms(reference) != [EXC_C14N]
            || dsig::algorithm(reference, "DigestMethod") != Some(SHA256)
        {
            return Err(invalid(
                "a reference is not exclusive c14n with a SHA-256 digest",
            ));
        }
        if sha256(&canonical_by_id(xml, id)?) != dsig::digest_value(reference)? {
            return Err(VihfError::Invalid(format!(
                "the digest of #{id} does not match: it was changed after signing"
            )));
        }
        match reference.attr("Type") {
            Some(MANIFEST_TYPE) => manifest_id = Some(id.to_string()),
            Some(SIGNED_PROPERTIES_TYPE) => properties_id = Some(id.to_string()),
            _ => {}
        }
    }
    let (Some(manifest_id), Some(properties_id)) = (manifest_id, properties_id) else {
        return Err(invalid(
            "SignedInfo does not reference both a Manifest and XAdES SignedProperties",
        ));
    };
    let certificate = dsig::verify_value(xml, &root)?;
    let descendants = root.descendants();
    let with_id = |id: &str| {
        descendants
            .iter()
            .copied()
            .find(|e| e.attr("Id") == Some(id))
    };
    let manifest = with_id(&manifest_id)
        .filter(|e| is(e, DSIG, "Manifest"))
        .ok_or_else(|| invalid("the Manifest reference is not to a Manifest"))?;
    let properties = with_id(&properties_id)
        .filter(|e| is(e, XADES, "SignedProperties"))
        .ok_or_else(|| invalid("the SignedProperties reference is not to SignedProperties"))?;
    let certificate_digest = properties
        .descendants()
        .into_iter()
        .find(|e| is(e, XADES, "CertDigest"))
        .ok_or_else(|| invalid("the SignedProperties name no SigningCertificate"))?;
    if dsig::digest_value(certificate_digest)? != sha256(&certificate) {
        return Err(invalid(
            "the SigningCertificate is not the certificate that signed",
        ));
    }
    let mut references = Vec::new();
    for reference in manifest.elements().filter(|e| is(e, DSIG, "Reference")) {
        let uri = reference.attr("URI").unwrap_or_default().to_string();
        if dsig::algorithm(reference, "DigestMethod") != Some(SHA256) {
            return Err(invalid("a Manifest reference's digest is not SHA-256"));
        }
        references.push((uri, dsig::digest_value(reference)?));
    }
    let signer = certificate_names(&certificate)
        .map(|names| names.subject)
        .ok_or_else(|| invalid("the signing certificate cannot be read"))?;
    Ok(SignedManifest {
        references,
        signer,
        certificate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vihf::tests::seal;
    use std::process::Command;

    const SET: &str = "2.25.123456789";
    const CDA: &[u8] = b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>";

    fn signed(signer: &VihfSigner) -> Vec<u8> {
        sign(
            signer,
            SET,
            &[Signed {
                unique_id: "1.2.250.1.999.7.9.1",
                bytes: CDA,
            }],
            1_765_000_000_123,
        )
        .unwrap()
    }

    #[test]
    fn a_signed_submission_set_verifies_and_a_changed_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let signer = VihfSigner::load(&seal(dir.path())).unwrap();
        let document = signed(&signer);
        let manifest = verify(&document).unwrap();
        assert!(manifest.covers("1.2.250.1.999.7.9.1", CDA));
        assert!(!manifest.covers("1.2.250.1.999.7.9.1", b"<other/>"));
        assert!(!manifest.covers("1.2.250.1.999.7.9.2", CDA));
        assert!(manifest.names_set(SET));
        assert_eq!(manifest.signer, "C=FR, O=Passerelle test, CN=DMP SIGN");
        let text = String::from_utf8(document).unwrap();
        // Another document in the Manifest: its digest no longer matches.
        let changed = text.replace("1.2.250.1.999.7.9.1", "1.2.250.1.999.7.9.2");
        let error = verify(changed.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("#IHEManifest"), "{error}");
        // Another signing time.
        let changed = text.replace("2025-12-06T05:46:40.123Z", "2025-12-06T05:46:41.123Z");
        let error = verify(changed.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("#S0-SignedProperties"), "{error}");
        // Another key's certificate.
        let other_dir = tempfile::tempdir().unwrap();
        let other = VihfSigner::load(&seal(other_dir.path())).unwrap();
        let theirs = String::from_utf8(signed(&other)).unwrap();
        let certificate = |text: &str| {
            let start = text.find("<X509Certificate>").unwrap();
            let end = text.find("</X509Certificate>").unwrap();
            text[start..end].to_string()
        };
        let swapped = text.replace(&certificate(&text), &certificate(&theirs));
        let error = verify(swapped.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("does not verify"), "{error}");
        assert!(verify(CDA).is_err());
        assert!(verify(b"not xml").is_err());
    }

    #[test]
    fn the_signature_entry_carries_the_dsg_codes() {
        let first = DocumentEntry {
            patient_id: "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH".into(),
            ..Default::default()
        };
        let entry = entry(
            &first,
            &Author::default(),
            "2.25.1".into(),
            b"<x/>",
            "20251206054640",
        );
        assert!(is_signature(&entry));
        assert_eq!(entry.type_code.code, "E1762");
        assert_eq!(entry.format_code.code, "http://www.w3.org/2000/09/xmldsig#");
        assert_eq!(entry.hash, crate::codes::sha1_hex(b"<x/>"));
        assert_eq!(entry.size, 4);
        assert_eq!(entry.patient_id, first.patient_id);
    }

    /// xmlsec1 (another XML-DSIG implementation) verifies the signature
    /// document: SignedInfo, the Manifest's and the SignedProperties'
    /// digests, the RSA signature.
    #[test]
    fn xmlsec1_verifies_the_submission_set_signature() {
        if Command::new("xmlsec1").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
                "xmlsec1 is required here: run .ci/peers.sh"
            );
            println!("skipped: xmlsec1 is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let settings = seal(dir.path());
        let signer = VihfSigner::load(&settings).unwrap();
        let check = |document: &[u8]| {
            let file = dir.path().join("signature.xml");
            std::fs::write(&file, document).unwrap();
            Command::new("xmlsec1")
                .arg("--verify")
                .arg("--pubkey-cert-pem")
                .arg(&settings.certificate_file)
                .args(["--id-attr:Id", "Manifest"])
                // The Manifest's references name documents by uniqueId
                // (urn:oid:), which xmlsec1 cannot fetch: it checks
                // SignedInfo's references and the signature value, this
                // crate checks the Manifest's digests (test above).
                .arg("--ignore-manifests")
                .args(["--id-attr:Id", &format!("{XADES}:SignedProperties")])
                .arg(&file)
                .output()
                .unwrap()
        };
        let document = signed(&signer);
        let output = check(&document);
        assert!(
            output.status.success(),
            "xmlsec1 refused the signature: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let changed = String::from_utf8(document)
            .unwrap()
            .replace(SET, "2.25.987654321");
        let output = check(changed.as_bytes());
        assert!(!output.status.success(), "xmlsec1 took a changed signature");
    }
}
