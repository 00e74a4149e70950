//! The VIHF ("vecteur d'identification et d'habilitation formelles"): the
//! SAML 2.0 assertion the DMP requires in the WS-Security header of every
//! request, saying which structure, which software and which responsible
//! person act for which patient, signed with the structure's seal
//! ("cachet") certificate: XML-DSIG, enveloped signature, exclusive
//! canonicalisation, RSA-SHA256, the certificate in `KeyInfo`. Attributes
//! as the ANS profile maps them for an automated flow (`AUTOMATE`,
//! `Authentification_Mode` `INDIRECTE`, `Ressource_URN` `urn:dmp`).
//!
//! Built and checked here: the connector signs ([`VihfSigner`]), the
//! simulator verifies ([`verify`]). Canonicalisation is `xds::c14n`'s,
//! proven against signatures made by xmlsec1.

use std::path::Path;

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use passerelle_config::DmpVihf;
use xds::c14n::{canonicalize, Apex, Options};

use crate::dsig;

/// SAML 2.0 assertions.
pub const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// XML-DSIG.
pub const DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
pub(crate) const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub(crate) const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
pub(crate) const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";

/// Why the seal certificate or key cannot be used, or a VIHF is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VihfError {
    #[error("{file}: {message}")]
    Key { file: String, message: String },
    #[error("the VIHF: {0}")]
    Invalid(String),
}

/// Signs VIHFs with the structure's seal certificate.
pub struct VihfSigner {
    key: RsaKeyPair,
    certificate: Vec<u8>,
    issuer: String,
    settings: DmpVihf,
    rng: SystemRandom,
}

impl std::fmt::Debug for VihfSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VihfSigner")
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// Who acts, for one VIHF.
pub struct Subject<'a> {
    pub structure_id: &'a str,
    pub lps_name: &'a str,
    pub lps_version: &'a str,
    pub lps_homologation: &'a str,
    /// The patient's INS as a CX (`value^^^&OID&ISO^NH`).
    pub ins: &'a str,
}

impl VihfSigner {
    pub fn load(settings: &DmpVihf) -> Result<VihfSigner, VihfError> {
        let fail = |file: &Path, message: String| VihfError::Key {
            file: file.display().to_string(),
            message,
        };
        let key = match PrivateKeyDer::from_pem_file(&settings.private_key_file).map_err(|e| {
            fail(
                &settings.private_key_file,
                format!("no PEM private key: {e}"),
            )
        })? {
            PrivateKeyDer::Pkcs8(pkcs8) => RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(pkcs1) => RsaKeyPair::from_der(pkcs1.secret_pkcs1_der()),
            _ => {
                return Err(fail(
                    &settings.private_key_file,
                    "not an RSA key (the seal certificate's key is RSA)".into(),
                ))
            }
        }
        .map_err(|e| fail(&settings.private_key_file, format!("not an RSA key: {e}")))?;
        let certificate = CertificateDer::from_pem_file(&settings.certificate_file)
            .map_err(|e| {
                fail(
                    &settings.certificate_file,
                    format!("no PEM certificate: {e}"),
                )
            })?
            .to_vec();
        let issuer = subject_dn(&certificate).ok_or_else(|| {
            fail(
                &settings.certificate_file,
                "the certificate's subject cannot be read".into(),
            )
        })?;
        Ok(VihfSigner {
            key,
            certificate,
            issuer,
            settings: settings.clone(),
            rng: SystemRandom::new(),
        })
    }

    /// The `wsse:Security` header block holding a signed VIHF for
    /// `subject`, issued at `now_ms` with the assertion id `id`.
    pub fn security_header(
        &self,
        subject: &Subject<'_>,
        id: &str,
        now_ms: i64,
    ) -> Result<String, VihfError> {
        let unsigned = assertion(&self.settings, &self.issuer, subject, id, now_ms);
        let signed = self.sign(&unsigned, id)?;
        Ok(format!(
            "<wsse:Security xmlns:wsse=\"{WSSE}\">{signed}</wsse:Security>"
        ))
    }

    /// The seal certificate (DER).
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// An RSA-SHA256 (PKCS #1 v1.5) signature of `bytes` with the seal
    /// key.
    pub(crate) fn rsa_sha256(&self, bytes: &[u8]) -> Result<Vec<u8>, VihfError> {
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, bytes, &mut signature)
            .map_err(|_| VihfError::Invalid("RSA signing failed".into()))?;
        Ok(signature)
    }

    /// Inserts the enveloped signature after the assertion's `Issuer`.
    fn sign(&self, assertion: &str, id: &str) -> Result<String, VihfError> {
        let options = Options {
            inclusive_prefixes: &[],
            omit_signatures: true,
        };
        let canonical = canonicalize(
            assertion.as_bytes(),
            Apex::WithId {
                attribute: "ID",
                value: id,
            },
            &options,
        )
        .map_err(|e| VihfError::Invalid(e.to_string()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &canonical);
        let digest = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        let signed_info = format!(
            "<SignedInfo xmlns=\"{DSIG}\"><CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></CanonicalizationMethod><SignatureMethod Algorithm=\"{RSA_SHA256}\"></SignatureMethod><Reference URI=\"#{id}\"><Transforms><Transform Algorithm=\"{ENVELOPED}\"></Transform><Transform Algorithm=\"{EXC_C14N}\"></Transform></Transforms><DigestMethod Algorithm=\"{SHA256}\"></DigestMethod><DigestValue>{digest}</DigestValue></Reference></SignedInfo>"
        );
        let canonical_info = canonicalize(
            signed_info.as_bytes(),
            Apex::Root,
            &Options {
                inclusive_prefixes: &[],
                omit_signatures: false,
            },
        )
        .map_err(|e| VihfError::Invalid(e.to_string()))?;
        let signature =
            base64::engine::general_purpose::STANDARD.encode(self.rsa_sha256(&canonical_info)?);
        let certificate = base64::engine::general_purpose::STANDARD.encode(&self.certificate);
        let element = format!(
            "<Signature xmlns=\"{DSIG}\">{}<SignatureValue>{signature}</SignatureValue><KeyInfo><X509Data><X509Certificate>{certificate}</X509Certificate></X509Data></KeyInfo></Signature>",
            signed_info.replacen(&format!("<SignedInfo xmlns=\"{DSIG}\">"), "<SignedInfo>", 1)
        );
        let at = assertion
            .find("</Issuer>")
            .map(|i| i + "</Issuer>".len())
            .ok_or_else(|| VihfError::Invalid("the assertion has no Issuer".into()))?;
        Ok(format!("{}{element}{}", &assertion[..at], &assertion[at..]))
    }
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` of `now_ms`.
pub fn instant(now_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(now_ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn assertion(
    settings: &DmpVihf,
    issuer: &str,
    subject: &Subject<'_>,
    id: &str,
    now_ms: i64,
) -> String {
    let now = instant(now_ms);
    let attribute = |name: &str, value: &str| {
        format!(
            "<Attribute Name=\"{}\"><AttributeValue>{}</AttributeValue></Attribute>",
            escape(name),
            escape(value)
        )
    };
    let mut attributes = String::new();
    attributes.push_str(&attribute("VIHF_Version", "3.0"));
    attributes.push_str(&attribute("Authentification_Mode", "INDIRECTE"));
    attributes.push_str(&attribute(
        "Secteur_Activite",
        &format!("{}^{}", settings.sector.code, settings.sector.scheme),
    ));
    attributes.push_str(&attribute(
        "urn:oasis:names:tc:xacml:2.0:resource:resource-id",
        subject.ins,
    ));
    attributes.push_str(&attribute("Ressource_URN", "urn:dmp"));
    attributes.push_str(&attribute(
        "urn:oasis:names:tc:xspa:1.0:subject:subject-id",
        &settings.subject_id,
    ));
    attributes.push_str(&attribute("Identifiant_Structure", subject.structure_id));
    attributes.push_str(&attribute("LPS_Nom", subject.lps_name));
    attributes.push_str(&attribute("LPS_Version", subject.lps_version));
    attributes.push_str(&attribute(
        "LPS_ID_HOMOLOGATION_DMP",
        subject.lps_homologation,
    ));
    attributes.push_str(
        "<Attribute Name=\"urn:oasis:names:tc:xspa:1.0:subject:purposeofuse\"><AttributeValue><PurposeOfUse xmlns=\"urn:hl7-org:v3\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" code=\"normal\" codeSystem=\"1.2.250.1.213.1.1.4.248\" displayName=\"Accès normal\" xsi:type=\"CE\"></PurposeOfUse></AttributeValue></Attribute>",
    );
    attributes.push_str(&format!(
        "<Attribute Name=\"urn:oasis:names:tc:xacml:2.0:subject:role\"><AttributeValue><Role xmlns=\"urn:hl7-org:v3\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" code=\"{}\" codeSystem=\"{}\" displayName=\"{}\" xsi:type=\"CE\"></Role></AttributeValue></Attribute>",
        escape(&settings.role.code),
        escape(&settings.role.scheme),
        escape(&settings.role.display)
    ));
    format!(
        "<Assertion xmlns=\"{SAML}\" ID=\"{id}\" IssueInstant=\"{now}\" Version=\"2.0\"><Issuer Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName\">{}</Issuer><Subject><NameID>{}</NameID></Subject><AuthnStatement AuthnInstant=\"{now}\"><AuthnContext><AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified</AuthnContextClassRef></AuthnContext></AuthnStatement><AttributeStatement>{attributes}</AttributeStatement></Assertion>",
        escape(issuer),
        escape(&settings.responsible_id)
    )
}

/// What a verified VIHF says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedVihf {
    pub issuer: String,
    /// The certificate that signed it (DER), for a trust store to judge.
    pub certificate: Vec<u8>,
    /// The `resource-id` attribute: the patient's INS (CX).
    pub resource_id: String,
    pub attributes: Vec<(String, String)>,
}

/// The attributes a VIHF must carry (the ANS profile's, for a structure
/// feeding the DMP).
const REQUIRED: [&str; 10] = [
    "VIHF_Version",
    "Authentification_Mode",
    "Secteur_Activite",
    "urn:oasis:names:tc:xacml:2.0:resource:resource-id",
    "Ressource_URN",
    "urn:oasis:names:tc:xspa:1.0:subject:subject-id",
    "Identifiant_Structure",
    "LPS_Nom",
    "LPS_Version",
    "LPS_ID_HOMOLOGATION_DMP",
];

/// Verifies the VIHF of a SOAP envelope: its structure (the required
/// attributes), its reference (the whole assertion, exclusive c14n,
/// SHA-256) and its RSA-SHA256 signature by the certificate it carries.
/// Whether that certificate is the structure's is for a trust store
/// ([`TrustAnchors`]).
pub fn verify(envelope: &[u8]) -> Result<VerifiedVihf, VihfError> {
    let limits = cda::Limits {
        max_bytes: xds::read::MAX_ENVELOPE_BYTES,
        max_depth: 64,
    };
    let root = cda::xml::parse(envelope, &limits).map_err(|e| VihfError::Invalid(e.to_string()))?;
    verify_read(&root, envelope)
}

/// [`verify`] of an envelope already parsed (`root`), whose bytes are
/// `envelope` (what the signature covers is canonicalised from them).
pub fn verify_read(root: &cda::xml::Element, envelope: &[u8]) -> Result<VerifiedVihf, VihfError> {
    let invalid = |why: &str| VihfError::Invalid(why.to_string());
    let in_ns = |e: &cda::xml::Element, ns: &str, name: &str| {
        e.name.namespace.as_deref() == Some(ns) && e.name.name == name
    };
    let assertion = root
        .descendants()
        .into_iter()
        .find(|e| in_ns(e, SAML, "Assertion"))
        .ok_or_else(|| invalid("no saml:Assertion in the WS-Security header"))?;
    let id = assertion
        .attr("ID")
        .ok_or_else(|| invalid("the assertion has no ID"))?;
    let issuer = assertion
        .child_in(SAML, "Issuer")
        .and_then(cda::xml::Element::clean_text)
        .ok_or_else(|| invalid("no Issuer"))?;
    let mut attributes = Vec::new();
    for statement in assertion
        .elements()
        .filter(|e| in_ns(e, SAML, "AttributeStatement"))
    {
        for attribute in statement.elements().filter(|e| in_ns(e, SAML, "Attribute")) {
            let name = attribute.attr("Name").unwrap_or_default().to_string();
            let value = attribute
                .child_in(SAML, "AttributeValue")
                .map(|v| v.text().trim().to_string())
                .unwrap_or_default();
            attributes.push((name, value));
        }
    }
    for required in REQUIRED {
        if !attributes
            .iter()
            .any(|(name, value)| name == required && !value.is_empty())
        {
            return Err(VihfError::Invalid(format!(
                "the attribute {required} is missing"
            )));
        }
    }
    let signature = assertion
        .child_in(DSIG, "Signature")
        .ok_or_else(|| invalid("the assertion is not signed"))?;
    let signed_info = signature
        .child_in(DSIG, "SignedInfo")
        .ok_or_else(|| invalid("no SignedInfo"))?;
    dsig::check_methods(signed_info)?;
    let reference = signed_info
        .child_in(DSIG, "Reference")
        .ok_or_else(|| invalid("no Reference"))?;
    if reference.attr("URI") != Some(&format!("#{id}")) {
        return Err(invalid("the signature does not reference the assertion"));
    }
    if dsig::algorithm(reference, "DigestMethod") != Some(SHA256) {
        return Err(invalid("the digest is not SHA-256"));
    }
    if dsig::transforms(reference) != [ENVELOPED, EXC_C14N] {
        return Err(invalid(
            "the transforms are not enveloped-signature then exclusive c14n",
        ));
    }
    let inclusive: Vec<String> = reference
        .child_in(DSIG, "Transforms")
        .into_iter()
        .flat_map(|t| t.descendants())
        .filter(|e| e.name.name == "InclusiveNamespaces")
        .filter_map(|e| e.attr("PrefixList"))
        .flat_map(|list| {
            list.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let inclusive: Vec<&str> = inclusive.iter().map(String::as_str).collect();
    let digest_value = dsig::digest_value(reference)?;
    let canonical = canonicalize(
        envelope,
        Apex::WithId {
            attribute: "ID",
            value: id,
        },
        &Options {
            inclusive_prefixes: &inclusive,
            omit_signatures: true,
        },
    )
    .map_err(|e| VihfError::Invalid(e.to_string()))?;
    if ring::digest::digest(&ring::digest::SHA256, &canonical).as_ref() != digest_value.as_slice() {
        return Err(invalid(
            "the assertion's digest does not match: it was changed after signing",
        ));
    }
    let certificate = dsig::verify_value(envelope, signature)?;
    let resource_id = attributes
        .iter()
        .find(|(name, _)| name == "urn:oasis:names:tc:xacml:2.0:resource:resource-id")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    Ok(VerifiedVihf {
        issuer,
        certificate,
        resource_id,
        attributes,
    })
}

/// The certificate authorities whose certificates may sign (for the DMP,
/// the IGC-Santé's): a signer's certificate must chain to one of them,
/// within its validity dates.
pub struct TrustAnchors {
    certificates: Vec<CertificateDer<'static>>,
}

/// Any extended key usage: a seal certificate's EKU varies by authority;
/// what matters here is who issued it.
struct AnyKeyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyKeyUsage {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for id in iter {
            id?;
        }
        Ok(())
    }
}

impl TrustAnchors {
    /// Reads the PEM certificates of `path`.
    pub fn load(path: &Path) -> Result<TrustAnchors, VihfError> {
        let fail = |message: String| VihfError::Key {
            file: path.display().to_string(),
            message,
        };
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(format!("cannot be read: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(format!("not PEM certificates: {e}")))?;
        if certificates.is_empty() {
            return Err(fail("holds no certificate".into()));
        }
        Ok(TrustAnchors { certificates })
    }

    /// Whether `certificate` (DER) was issued by one of the authorities
    /// and is valid now.
    pub fn check(&self, certificate: &[u8]) -> Result<(), VihfError> {
        let anchors = self
            .certificates
            .iter()
            .map(|c| webpki::anchor_from_trusted_cert(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| VihfError::Invalid("a trust anchor is not a certificate".into()))?;
        let certificate = CertificateDer::from(certificate);
        let end_entity = webpki::EndEntityCert::try_from(&certificate)
            .map_err(|_| VihfError::Invalid("the X509Certificate is not a certificate".into()))?;
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &[],
                rustls::pki_types::UnixTime::now(),
                AnyKeyUsage,
                None,
                None,
            )
            .map(|_| ())
            .map_err(|error| {
                VihfError::Invalid(format!(
                    "the certificate is not issued by a trusted authority ({error})"
                ))
            })
    }
}

/// Checks an RSA-SHA256 signature of `message` by the DER `certificate`'s
/// key.
pub(crate) fn verify_rsa_sha256(
    certificate: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), VihfError> {
    let certificate_der = CertificateDer::from(certificate);
    let end_entity = webpki::EndEntityCert::try_from(&certificate_der)
        .map_err(|_| VihfError::Invalid("the X509Certificate is not a certificate".into()))?;
    end_entity
        .verify_signature(webpki::ring::RSA_PKCS1_2048_8192_SHA256, message, signature)
        .map_err(|_| {
            VihfError::Invalid(
                "the signature does not verify with the certificate it carries".into(),
            )
        })
}

/// The subject of a DER certificate as `C=FR, O=..., CN=...` (RFC 4514
/// attribute names for the usual types, in the certificate's order).
pub fn subject_dn(certificate: &[u8]) -> Option<String> {
    certificate_names(certificate).map(|names| names.subject)
}

/// What identifies a certificate: its serial number (decimal), issuer and
/// subject (`C=FR, O=..., CN=...`), as XAdES's `IssuerSerial` and the
/// VIHF's `Issuer` name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateNames {
    pub serial: String,
    pub issuer: String,
    pub subject: String,
}

/// Reads a DER certificate's serial number, issuer and subject.
pub fn certificate_names(certificate: &[u8]) -> Option<CertificateNames> {
    let (certificate, _) = der_element(certificate, 0x30)?;
    let (tbs, _) = der_element(certificate, 0x30)?;
    let mut rest = tbs;
    // [0] version (optional), serial, signature algorithm, issuer,
    // validity, subject.
    if rest.first() == Some(&0xa0) {
        rest = der_skip(rest)?;
    }
    let (serial, rest) = der_element(rest, 0x02)?;
    let rest = der_skip(rest)?;
    let (issuer, rest) = der_element(rest, 0x30)?;
    let rest = der_skip(rest)?;
    let (subject, _) = der_element(rest, 0x30)?;
    Some(CertificateNames {
        serial: decimal(serial),
        issuer: distinguished_name(issuer)?,
        subject: distinguished_name(subject)?,
    })
}

/// The content of a DER `Name` as `C=FR, O=..., CN=...`.
fn distinguished_name(name: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    let mut sets = name;
    while !sets.is_empty() {
        let (set, after) = der_element(sets, 0x31)?;
        let (pair, _) = der_element(set, 0x30)?;
        let (oid, value_rest) = der_element(pair, 0x06)?;
        let tag = *value_rest.first()?;
        let (value, _) = der_element(value_rest, tag)?;
        let name = match oid {
            [0x55, 0x04, 0x03] => "CN",
            [0x55, 0x04, 0x06] => "C",
            [0x55, 0x04, 0x07] => "L",
            [0x55, 0x04, 0x08] => "ST",
            [0x55, 0x04, 0x0a] => "O",
            [0x55, 0x04, 0x0b] => "OU",
            [0x55, 0x04, 0x05] => "SERIALNUMBER",
            _ => "OID",
        };
        parts.push(format!("{name}={}", String::from_utf8_lossy(value)));
        sets = after;
    }
    Some(parts.join(", "))
}

/// A DER INTEGER's content (big-endian, non-negative for a serial) in
/// decimal.
fn decimal(big_endian: &[u8]) -> String {
    // Repeated division by 10 of the base-256 number.
    let mut number: Vec<u8> = big_endian.to_vec();
    let mut digits = Vec::new();
    while number.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    if digits.is_empty() {
        return "0".into();
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

/// One DER element with `tag`: its content and what follows.
fn der_element(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *bytes.first()? != tag {
        return None;
    }
    let (length, header) = der_length(bytes.get(1..)?)?;
    let start = 1 + header;
    let content = bytes.get(start..start.checked_add(length)?)?;
    Some((content, bytes.get(start + length..)?))
}

fn der_skip(bytes: &[u8]) -> Option<&[u8]> {
    let (length, header) = der_length(bytes.get(1..)?)?;
    bytes.get(1 + header + length..)
}

/// A DER length and the bytes it took.
fn der_length(bytes: &[u8]) -> Option<(usize, usize)> {
    let first = *bytes.first()?;
    if first < 0x80 {
        return Some((usize::from(first), 1));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > 4 {
        return None;
    }
    let mut length = 0usize;
    for byte in bytes.get(1..=count)? {
        length = (length << 8) | usize::from(*byte);
    }
    Some((length, 1 + count))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    pub(crate) fn seal(dir: &Path) -> DmpVihf {
        let output = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/C=FR/O=Passerelle test/CN=DMP SIGN"])
            .arg("-keyout")
            .arg(dir.join("seal.key"))
            .arg("-out")
            .arg(dir.join("seal.pem"))
            .output()
            .expect("openssl");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        DmpVihf {
            certificate_file: dir.join("seal.pem"),
            private_key_file: dir.join("seal.key"),
            sector: passerelle_config::DmpCode {
                code: "SA25".into(),
                scheme: "1.2.250.1.71.4.2.4".into(),
                display: "Laboratoire".into(),
            },
            subject_id: "Passerelle & co, <test>".into(),
            responsible_id: "801234567866".into(),
            role: passerelle_config::DmpCode {
                code: "AUTOMATE".into(),
                scheme: "1.2.250.1.213.1.1.4.6".into(),
                display: "AUTOMATE".into(),
            },
        }
    }

    const INS: &str = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH";

    /// A signed VIHF inside a SOAP envelope, as the connector sends it.
    fn signed_envelope(signer: &VihfSigner) -> String {
        let subject = Subject {
            structure_id: "1120459876",
            lps_name: "Passerelle",
            lps_version: "0.1.0",
            lps_homologation: "TEST",
            ins: INS,
        };
        let header = signer
            .security_header(&subject, "_a1b2c3", 1_765_000_000_123)
            .unwrap();
        format!(
            "<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:wsa=\"http://www.w3.org/2005/08/addressing\"><soap:Header>{header}</soap:Header><soap:Body></soap:Body></soap:Envelope>"
        )
    }

    #[test]
    fn a_signed_vihf_verifies_and_a_changed_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let signer = VihfSigner::load(&seal(dir.path())).unwrap();
        assert_eq!(signer.issuer, "C=FR, O=Passerelle test, CN=DMP SIGN");
        let envelope = signed_envelope(&signer);
        let verified = verify(envelope.as_bytes()).unwrap();
        assert_eq!(verified.resource_id, INS);
        assert_eq!(verified.issuer, "C=FR, O=Passerelle test, CN=DMP SIGN");
        assert!(verified.attributes.iter().any(|(n, v)| n
            == "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
            && v == "Passerelle & co, <test>"));
        // Another patient in the assertion: the digest no longer matches.
        let changed = envelope.replace("279035121518989^", "179035121518989^");
        let error = verify(changed.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("digest"), "{error}");
        // A signature value from another key.
        let other_dir = tempfile::tempdir().unwrap();
        let other = VihfSigner::load(&seal(other_dir.path())).unwrap();
        let theirs = signed_envelope(&other);
        let their_certificate = |text: &str| {
            let start = text.find("<X509Certificate>").unwrap();
            let end = text.find("</X509Certificate>").unwrap();
            text[start..end].to_string()
        };
        let swapped = envelope.replace(&their_certificate(&envelope), &their_certificate(&theirs));
        let error = verify(swapped.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("does not verify"), "{error}");
        // An attribute the DMP requires, gone.
        let start = envelope.find("<Attribute Name=\"LPS_Nom\">").unwrap();
        let end = start + envelope[start..].find("</Attribute>").unwrap() + "</Attribute>".len();
        let missing = format!("{}{}", &envelope[..start], &envelope[end..]);
        let error = verify(missing.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("LPS_Nom"), "{error}");
        assert!(
            verify(b"<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\"/>")
                .is_err()
        );
    }

    /// xmlsec1 (another implementation of XML-DSIG and exclusive c14n)
    /// verifies the VIHF the connector signs.
    #[test]
    fn xmlsec1_verifies_the_vihf() {
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
        let file = dir.path().join("envelope.xml");
        std::fs::write(&file, signed_envelope(&signer)).unwrap();
        let output = Command::new("xmlsec1")
            .arg("--verify")
            .arg("--pubkey-cert-pem")
            .arg(&settings.certificate_file)
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            ])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "xmlsec1 refused the VIHF: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let changed = dir.path().join("changed.xml");
        std::fs::write(
            &changed,
            signed_envelope(&signer).replace("urn:dmp", "urn:other"),
        )
        .unwrap();
        let output = Command::new("xmlsec1")
            .arg("--verify")
            .arg("--pubkey-cert-pem")
            .arg(&settings.certificate_file)
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            ])
            .arg(&changed)
            .output()
            .unwrap();
        assert!(!output.status.success(), "xmlsec1 took a changed VIHF");
    }

    #[test]
    fn serial_numbers_are_written_in_decimal() {
        assert_eq!(decimal(&[0x00]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(
            decimal(&[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12]),
            "335812727670730321938"
        );
    }

    #[test]
    fn instants_are_utc_with_milliseconds() {
        assert_eq!(instant(1_765_000_000_123), "2025-12-06T05:46:40.123Z");
    }
}
