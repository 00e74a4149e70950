use super::values::{base64, date_time, sha1, well_formed_nir};
use super::*;
use crate::mapping::{SiteSettings, SiteTimeZone};

#[test]
fn sha1_matches_the_fips_vectors() {
    let hex = |bytes: [u8; 20]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        hex(sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(
        hex(sha1(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
    assert_eq!(base64(&sha1(b"abc")), "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
}

#[test]
fn timestamps_become_fhir_date_times() {
    let paris = SiteTimeZone::default();
    assert_eq!(
        date_time("20210401171000+0100", &paris).as_deref(),
        Some("2021-04-01T17:10:00+01:00")
    );
    assert_eq!(
        date_time("202101040735+0100", &paris).as_deref(),
        Some("2021-01-04T07:35:00+01:00")
    );
    assert_eq!(
        date_time("20240715103000", &paris).as_deref(),
        Some("2024-07-15T10:30:00+02:00")
    );
    assert_eq!(date_time("19790328", &paris).as_deref(), Some("1979-03-28"));
    assert_eq!(date_time("197903", &paris).as_deref(), Some("1979-03"));
    assert_eq!(date_time("20210230", &paris), None);
    assert_eq!(date_time("2021040117+01", &paris), None);
}

#[test]
fn nir_key_checks() {
    assert_eq!(
        well_formed_nir("279035121518989").as_deref(),
        Some("279035121518989")
    );
    assert_eq!(well_formed_nir("279035121518988"), None);
}

#[test]
fn content_types() {
    assert!(is_cda_content_type("application/hl7-v3+xml; charset=UTF-8"));
    assert!(is_cda_content_type("text/xml"));
    assert!(!is_cda_content_type("application/fhir+json"));
    let site = SiteSettings::default();
    let context = MappingContext {
        site: &site,
        now: "2026-11-23T10:00:00Z",
    };
    let error =
        map_content_type("application/json", b"", &OruConfig::default(), &context).unwrap_err();
    assert_eq!(error.kind, MappingErrorKind::Unsupported);
}
