//! The XML-DSIG reading both of the connector's signatures share (the
//! VIHF's enveloped one and the submission set's detached one): the
//! algorithms a `SignedInfo` names, a reference's transforms and digest,
//! and the signature value checked with the certificate the signature
//! carries. Only exclusive c14n, SHA-256 and RSA-SHA256 are taken.

use base64::Engine;

use xds::c14n::{canonicalize, Apex, Options};

use crate::vihf::{verify_rsa_sha256, VihfError, DSIG, EXC_C14N, RSA_SHA256};

type Element = cda::xml::Element;

fn invalid(why: &str) -> VihfError {
    VihfError::Invalid(why.to_string())
}

/// Whether `element` is `name` in namespace `namespace`.
pub(crate) fn is(element: &Element, namespace: &str, name: &str) -> bool {
    element.name.namespace.as_deref() == Some(namespace) && element.name.name == name
}

/// The `Algorithm` of `parent`'s `ds:name` child.
pub(crate) fn algorithm<'a>(parent: &'a Element, name: &str) -> Option<&'a str> {
    parent
        .child_in(DSIG, name)
        .and_then(|e| e.attr("Algorithm"))
}

/// Checks that `signed_info` names exclusive c14n and RSA-SHA256.
pub(crate) fn check_methods(signed_info: &Element) -> Result<(), VihfError> {
    if algorithm(signed_info, "CanonicalizationMethod") != Some(EXC_C14N)
        || algorithm(signed_info, "SignatureMethod") != Some(RSA_SHA256)
    {
        return Err(invalid(
            "the signature is not exclusive c14n with RSA-SHA256",
        ));
    }
    Ok(())
}

/// The `Algorithm`s of a reference's transforms, in order.
pub(crate) fn transforms(reference: &Element) -> Vec<&str> {
    reference
        .child_in(DSIG, "Transforms")
        .map(|t| {
            t.elements()
                .filter(|e| is(e, DSIG, "Transform"))
                .filter_map(|e| e.attr("Algorithm"))
                .collect()
        })
        .unwrap_or_default()
}

/// Base64 text (whitespace ignored); `what` names it in the error.
pub(crate) fn base64(text: Option<String>, what: &str) -> Result<Vec<u8>, VihfError> {
    let text: String = text.unwrap_or_default().split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| VihfError::Invalid(format!("{what} is not base64")))
}

/// A reference's (or a XAdES digest's) `ds:DigestValue`.
pub(crate) fn digest_value(parent: &Element) -> Result<Vec<u8>, VihfError> {
    base64(
        parent
            .child_in(DSIG, "DigestValue")
            .and_then(Element::clean_text),
        "DigestValue",
    )
}

/// The exclusive c14n of the first `SignedInfo` of `xml`: what is signed.
pub(crate) fn canonical_signed_info(xml: &[u8]) -> Result<Vec<u8>, VihfError> {
    canonicalize(
        xml,
        Apex::Named {
            namespace: DSIG,
            local: "SignedInfo",
        },
        &Options {
            inclusive_prefixes: &[],
            omit_signatures: false,
        },
    )
    .map_err(|e| VihfError::Invalid(e.to_string()))
}

/// Checks the `SignatureValue` of `signature` (an element of `xml`) over
/// the exclusive c14n of the first `SignedInfo` of `xml`, with the
/// certificate in its `KeyInfo`; that certificate (DER).
pub(crate) fn verify_value(xml: &[u8], signature: &Element) -> Result<Vec<u8>, VihfError> {
    let canonical_info = canonical_signed_info(xml)?;
    let signature_value = base64(
        signature.child_in(DSIG, "SignatureValue").map(|e| e.text()),
        "SignatureValue",
    )?;
    let certificate = base64(
        signature
            .descendants()
            .into_iter()
            .find(|e| is(e, DSIG, "X509Certificate"))
            .map(|e| e.text()),
        "X509Certificate",
    )?;
    verify_rsa_sha256(&certificate, &canonical_info, &signature_value)?;
    Ok(certificate)
}
