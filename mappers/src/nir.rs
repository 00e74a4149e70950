//! The NIR (French social security number, the INS-NIR's value) as the
//! HPRIM and CDA mappers accept it.

/// The NIR (French social security number) when well formed: 13
/// characters (2A/2B for Corsica) and a key that checks (97 minus the
/// number modulo 97).
pub(crate) fn well_formed_nir(raw: &str) -> Option<String> {
    let nir: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    if nir.len() != 15 || !nir.is_ascii() {
        return None;
    }
    let (body, key) = nir.split_at(13);
    let numeric_body = match body.get(5..7) {
        Some("2A") | Some("2a") => format!("{}19{}", body.get(..5)?, body.get(7..)?),
        Some("2B") | Some("2b") => format!("{}18{}", body.get(..5)?, body.get(7..)?),
        _ => body.to_string(),
    };
    if !numeric_body.bytes().all(|b| b.is_ascii_digit()) || !key.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let number: u64 = numeric_body.parse().ok()?;
    let key: u64 = key.parse().ok()?;
    if !matches!(nir.as_bytes().first(), Some(b'1'..=b'4' | b'7' | b'8')) {
        return None;
    }
    (97 - number % 97 == key).then(|| nir.to_ascii_uppercase())
}
