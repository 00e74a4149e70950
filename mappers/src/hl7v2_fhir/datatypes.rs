//! HL7 v2 data types to FHIR data types: DTM/TS to date, dateTime and
//! instant (keeping the sender's precision and time zone), CE/CWE to
//! CodeableConcept, CX and EI to Identifier, XPN, XAD and XTN to HumanName,
//! Address and ContactPoint, and the code-system names HL7 v2 uses to FHIR
//! system URIs.

use std::borrow::Cow;

use fhir_sdk::time::{self, Month, OffsetDateTime, PrimitiveDateTime, UtcOffset};
use fhir_sdk::{Date, DateTime, Instant};

use crate::fhir::r4b::codes;
use crate::fhir::r4b::types::{
    Address, CodeableConcept, Coding, ContactPoint, Extension, ExtensionValue, HumanName,
    Identifier, Reference,
};
use crate::hl7v2::{Field, Message};

use super::elements;
use super::support::{built, comp_of, comp_str_of, sub_of, whole_of, Env, MapResult, Seg};

/// An HL7 v2 DTM as sent: `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dtm {
    pub year: i32,
    pub month: Option<u8>,
    pub day: Option<u8>,
    pub hour: Option<u8>,
    pub minute: Option<u8>,
    pub second: Option<u8>,
    pub nanos: u32,
    pub offset_seconds: Option<i32>,
}

fn digits(text: &str, range: std::ops::Range<usize>) -> Option<u32> {
    let part = text.get(range)?;
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// Parses an HL7 v2 DTM (also the first component of a TS).
pub(crate) fn parse_dtm(text: &str) -> Result<Dtm, &'static str> {
    let text = text.trim();
    let (stamp, offset) = match text.find(['+', '-']) {
        Some(at) => (
            text.get(..at).unwrap_or(""),
            Some(text.get(at..).unwrap_or("")),
        ),
        None => (text, None),
    };
    let (main, fraction) = match stamp.split_once('.') {
        Some((main, fraction)) => (main, Some(fraction)),
        None => (stamp, None),
    };
    if !matches!(main.len(), 4 | 6 | 8 | 10 | 12 | 14) {
        return Err("not an HL7 date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])");
    }
    let number = |range| digits(main, range).ok_or("not an HL7 date/time (digits expected)");
    let year = number(0..4)? as i32;
    let month = (main.len() >= 6).then(|| number(4..6)).transpose()?;
    let day = (main.len() >= 8).then(|| number(6..8)).transpose()?;
    let hour = (main.len() >= 10).then(|| number(8..10)).transpose()?;
    let minute = (main.len() >= 12).then(|| number(10..12)).transpose()?;
    let second = (main.len() >= 14).then(|| number(12..14)).transpose()?;
    let nanos = match fraction {
        Some(fraction) => {
            if second.is_none()
                || fraction.is_empty()
                || fraction.len() > 9
                || !fraction.bytes().all(|b| b.is_ascii_digit())
            {
                return Err("bad fraction of a second");
            }
            let value: u32 = fraction.parse().map_err(|_| "bad fraction of a second")?;
            value * 10u32.pow(9 - fraction.len() as u32)
        }
        None => 0,
    };
    let offset_seconds = match offset {
        Some(offset) => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let body = offset.get(1..).unwrap_or("");
            if body.len() != 4 {
                return Err("time zone must be +/-HHMM");
            }
            let hours = digits(body, 0..2).ok_or("time zone must be +/-HHMM")? as i32;
            let minutes = digits(body, 2..4).ok_or("time zone must be +/-HHMM")? as i32;
            if hours > 14 || minutes > 59 {
                return Err("time zone out of range");
            }
            Some(sign * (hours * 3600 + minutes * 60))
        }
        None => None,
    };
    let dtm = Dtm {
        year,
        month: month.map(|m| m as u8),
        day: day.map(|d| d as u8),
        hour: hour.map(|h| h as u8),
        minute: minute.map(|m| m as u8),
        second: second.map(|s| s as u8),
        nanos,
        offset_seconds,
    };
    // Validate the calendar parts once, here.
    dtm.calendar_date()?;
    if dtm.hour.is_some_and(|h| h > 23)
        || dtm.minute.is_some_and(|m| m > 59)
        || dtm.second.is_some_and(|s| s > 59)
    {
        return Err("time of day out of range");
    }
    Ok(dtm)
}

impl Dtm {
    fn calendar_date(self) -> Result<Option<time::Date>, &'static str> {
        // FHIR's own range starts at 0001, but fhir-sdk writes a year or a
        // year-month before 1000 as an error: refuse it here, located.
        if !(1000..=9999).contains(&self.year) {
            return Err("year out of range (1000 to 9999)");
        }
        let Some(month) = self.month else {
            return Ok(None);
        };
        let month = Month::try_from(month).map_err(|_| "month out of range")?;
        let Some(day) = self.day else {
            return Ok(None);
        };
        time::Date::from_calendar_date(self.year, month, day)
            .map(Some)
            .map_err(|_| "no such day")
    }

    /// The date part at the precision sent (YYYY, YYYY-MM or YYYY-MM-DD).
    pub fn to_date(self) -> Result<Date, &'static str> {
        match (self.month, self.calendar_date()?) {
            (None, _) => Ok(Date::Year(self.year)),
            (Some(month), None) => Ok(Date::YearMonth(
                self.year,
                Month::try_from(month).map_err(|_| "month out of range")?,
            )),
            (Some(_), Some(date)) => Ok(Date::Date(date)),
        }
    }

    /// A FHIR dateTime: a date at the precision sent, or with a time of day
    /// an instant in the sender's zone (the DTM's own offset, else MSH-7's,
    /// else the site's zone), since FHIR requires a zone on every time.
    pub fn to_datetime(self, env: &Env<'_, '_>) -> Result<DateTime, &'static str> {
        match self.hour {
            None => self.to_date().map(DateTime::Date),
            Some(_) => self.to_instant(env).map(DateTime::DateTime),
        }
    }

    /// A FHIR instant; a value without a time of day is taken as midnight.
    pub fn to_instant(self, env: &Env<'_, '_>) -> Result<Instant, &'static str> {
        let date = self
            .calendar_date()?
            .ok_or("an instant needs at least a full date")?;
        let time = time::Time::from_hms_nano(
            self.hour.unwrap_or(0),
            self.minute.unwrap_or(0),
            self.second.unwrap_or(0),
            self.nanos,
        )
        .map_err(|_| "time of day out of range")?;
        let offset = match self.offset_seconds.or(env.sender_offset) {
            Some(offset) => offset,
            None => env
                .context
                .site
                .timezone
                .offset_seconds(
                    self.year as i16,
                    date.month() as i8,
                    date.day() as i8,
                    self.hour.unwrap_or(0) as i8,
                    self.minute.unwrap_or(0) as i8,
                    self.second.unwrap_or(0) as i8,
                )
                .ok_or("time cannot be placed in the site's time zone")?,
        };
        let offset = UtcOffset::from_whole_seconds(offset).map_err(|_| "time zone out of range")?;
        let local: OffsetDateTime = PrimitiveDateTime::new(date, time).assume_offset(offset);
        Ok(Instant(local))
    }
}

impl Seg<'_, '_> {
    fn dtm(&self, n: usize) -> MapResult<Option<Dtm>> {
        match self.comp_str(n, 1) {
            None => Ok(None),
            Some(text) => parse_dtm(&text)
                .map(Some)
                .map_err(|why| self.invalid(n, why)),
        }
    }

    /// Field `n` (DTM, or TS whose first component is the time) as a date.
    pub fn date(&self, n: usize) -> MapResult<Option<Date>> {
        match self.dtm(n)? {
            None => Ok(None),
            Some(dtm) => dtm.to_date().map(Some).map_err(|why| self.invalid(n, why)),
        }
    }

    /// Field `n` as a FHIR dateTime.
    pub fn datetime(&self, n: usize, env: &Env<'_, '_>) -> MapResult<Option<DateTime>> {
        match self.dtm(n)? {
            None => Ok(None),
            Some(dtm) => dtm
                .to_datetime(env)
                .map(Some)
                .map_err(|why| self.invalid(n, why)),
        }
    }

    /// Field `n` as a FHIR instant.
    pub fn instant(&self, n: usize, env: &Env<'_, '_>) -> MapResult<Option<Instant>> {
        match self.dtm(n)? {
            None => Ok(None),
            Some(dtm) => dtm
                .to_instant(env)
                .map(Some)
                .map_err(|why| self.invalid(n, why)),
        }
    }

    /// The first repetition of field `n` (CE/CWE/CNE/CF) as a CodeableConcept.
    pub fn codeable(&self, n: usize) -> MapResult<Option<CodeableConcept>> {
        match self.field(n) {
            None => Ok(None),
            Some(field) => codeable_concept(self.msg, &field.repetition(1)),
        }
    }

    /// Every repetition of field `n` as CodeableConcepts.
    pub fn codeables(&self, n: usize) -> MapResult<Vec<CodeableConcept>> {
        let mut out = Vec::new();
        for rep in self.repetitions(n) {
            if let Some(concept) = codeable_concept(self.msg, &rep)? {
                out.push(concept);
            }
        }
        Ok(out)
    }

    /// A coded field with a code from an HL7 table (`ID`/`IS`), as a
    /// Coding in `http://terminology.hl7.org/CodeSystem/v2-<table>`.
    pub fn table_coding(&self, n: usize, table: &str) -> MapResult<Option<CodeableConcept>> {
        match self.text(n) {
            None => Ok(None),
            Some(code) => Ok(Some(concept(
                Some(&format!("http://terminology.hl7.org/CodeSystem/v2-{table}")),
                &code,
                None,
            )?)),
        }
    }
}

/// The FHIR system URI for an HL7 v2 coding-system name (CWE-3), `None`
/// for local systems that have no URI (the code is kept without a system).
pub(crate) fn coding_system_uri(name: &str) -> Option<Cow<'static, str>> {
    let name = name.trim();
    // A scan without allocating: this runs for every coded value.
    if let Some((_, uri)) = KNOWN_CODING_SYSTEMS
        .iter()
        .find(|(names, _)| names.iter().any(|known| known.eq_ignore_ascii_case(name)))
    {
        return Some(Cow::Borrowed(uri));
    }
    // HL7 tables: HL70078 / HL7nnnn → the v2 code system.
    if let Some(table) = name
        .get(..3)
        .filter(|prefix| prefix.eq_ignore_ascii_case("HL7"))
        .and_then(|_| name.get(3..))
    {
        if table.len() == 4 && table.bytes().all(|b| b.is_ascii_digit()) {
            return Some(Cow::Owned(format!(
                "http://terminology.hl7.org/CodeSystem/v2-{table}"
            )));
        }
    }
    if is_oid(name) {
        return Some(Cow::Owned(format!("urn:oid:{name}")));
    }
    if name.starts_with("http://") || name.starts_with("https://") || name.starts_with("urn:") {
        return Some(Cow::Owned(name.to_string()));
    }
    None
}

/// HL7 v2 coding-system names (compared without case) and their FHIR URIs.
const KNOWN_CODING_SYSTEMS: &[(&[&str], &str)] = &[
    (&["LN", "LOINC"], "http://loinc.org"),
    (
        &["SCT", "SNM", "SNOMED", "SNOMED-CT", "SNOMEDCT"],
        "http://snomed.info/sct",
    ),
    (
        &["I10", "ICD10", "ICD-10"],
        "http://hl7.org/fhir/sid/icd-10",
    ),
    (&["I10C", "ICD10CM"], "http://hl7.org/fhir/sid/icd-10-cm"),
    (&["I9", "I9C", "ICD9"], "http://hl7.org/fhir/sid/icd-9-cm"),
    (
        &["CIM10", "CIM-10"],
        "https://smt.esante.gouv.fr/terminologie-cim-10/",
    ),
    (&["UCUM", "ANS+"], "http://unitsofmeasure.org"),
    (&["CVX"], "http://hl7.org/fhir/sid/cvx"),
    (&["MVX"], "http://hl7.org/fhir/sid/mvx"),
    (&["NDC"], "http://hl7.org/fhir/sid/ndc"),
    (
        &["RXNORM", "RXN"],
        "http://www.nlm.nih.gov/research/umls/rxnorm",
    ),
    (&["ATC", "WHOATC"], "http://www.whocc.no/atc"),
    (&["CPT", "C4"], "http://www.ama-assn.org/go/cpt"),
    (&["NUCC"], "http://nucc.org/provider-taxonomy"),
    (
        &["NCIT"],
        "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
    ),
    (&["CDCPHINVS"], "urn:oid:2.16.840.1.114222.4.5.274"),
    (&["ISO3166", "ISO3166_1"], "urn:iso:std:iso:3166"),
    (&["UCD"], "urn:oid:1.2.250.1.213.2.3.2"),
    (&["CIP"], "urn:oid:1.2.250.1.213.2.3.1"),
    (&["CCAM"], "https://smt.esante.gouv.fr/terminologie-ccam/"),
    (&["LPDOCUMENT", "LP"], "http://loinc.org"),
];

pub(crate) use mapping_settings::is_oid;

fn coding(system: Option<&str>, code: &str, display: Option<&str>) -> MapResult<Coding> {
    // Filled in place (codings are built for every OBX): see `elements`.
    let mut coding = elements::coding();
    coding.code = Some(code.to_string());
    coding.system = system.map(str::to_string);
    coding.display = display.map(str::to_string);
    Ok(coding)
}

/// A CodeableConcept with one coding.
pub(crate) fn concept(
    system: Option<&str>,
    code: &str,
    display: Option<&str>,
) -> MapResult<CodeableConcept> {
    let mut concept = elements::codeable_concept();
    concept.coding = vec![Some(coding(system, code, display)?)];
    Ok(concept)
}

/// A CodeableConcept with text only.
pub(crate) fn text_concept(text: &str) -> MapResult<CodeableConcept> {
    built(CodeableConcept::builder().text(text.to_string()).build())
}

/// CE/CWE/CNE: identifier^text^system^alt identifier^alt text^alt system.
pub(crate) fn codeable_concept<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
) -> MapResult<Option<CodeableConcept>> {
    let mut concept = elements::codeable_concept();
    Ok(refill_codeable_concept(msg, rep, &mut concept).then_some(concept))
}

/// [`codeable_concept`] written over `concept` (see
/// [`elements::refill_coding`]); false, with `concept` left half
/// written, when the field gives no code and no text.
pub(crate) fn refill_codeable_concept<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    concept: &mut CodeableConcept,
) -> bool {
    let mut codings = 0;
    for (code_at, text_at, system_at) in [(1, 2, 3), (4, 5, 6)] {
        let Some(code) = comp_str_of(msg, rep, code_at) else {
            continue;
        };
        let display = comp_str_of(msg, rep, text_at);
        let system = comp_str_of(msg, rep, system_at).and_then(|s| coding_system_uri(&s));
        elements::refill_coding_at(
            &mut concept.coding,
            codings,
            system.as_deref(),
            &code,
            display.as_deref(),
        );
        codings += 1;
    }
    concept.coding.truncate(codings);
    let text = comp_str_of(msg, rep, 9).or_else(|| match codings {
        // A CE with only a text (or a plain value) keeps it as text.
        0 => comp_str_of(msg, rep, 2).or_else(|| whole_of(msg, rep).map(Cow::Owned)),
        _ => None,
    });
    elements::reset_concept(concept, text.as_deref());
    codings > 0 || text.is_some()
}

/// Where an identifier's namespace comes from: an HD (namespace ID ^
/// universal ID ^ universal ID type) resolved against the site settings.
pub(crate) fn system_for_authority(
    env: &Env<'_, '_>,
    namespace: Option<&str>,
    universal_id: Option<&str>,
    universal_type: Option<&str>,
) -> Option<String> {
    identifier_system(
        &env.context.site.identifier_systems,
        namespace,
        universal_id,
        universal_type,
    )
}

pub use mapping_settings::identifier_system;

/// French national identifiers by OID (ANS) and their type code in
/// fr-core-cs-v2-0203: `.8` the INS-NIR, `.9` the INS-NIA, `.10` the
/// INS-NIR of test patients and `.11` the INS-NIR of demonstration
/// patients; the last two are NIRs too, never NIAs. FR Core Patient INS
/// also has the codes INS-NIR-TEST and INS-NIR-DEMO for them; they are not
/// written yet because the gateway's PDQ/PIX answers copy this code into
/// PID-3.5, where PAM-FR expects INS-NIR (see docs/mapping.md).
pub(crate) fn ins_kind(system: &str) -> Option<&'static str> {
    match system {
        "urn:oid:1.2.250.1.213.1.4.8"
        | "urn:oid:1.2.250.1.213.1.4.10"
        | "urn:oid:1.2.250.1.213.1.4.11" => Some("INS-NIR"),
        "urn:oid:1.2.250.1.213.1.4.9" => Some("INS-NIA"),
        _ => None,
    }
}

pub(crate) const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
pub(crate) const FR_CORE_V2_0203: &str =
    "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203";

/// CX: ID ^ check digit ^ scheme ^ assigning authority (HD) ^ type code.
pub(crate) fn cx_identifier<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    env: &Env<'_, '_>,
    fallback_authority: Option<&str>,
) -> MapResult<Option<Identifier>> {
    let Some(value) = comp_of(msg, rep, 1) else {
        return Ok(None);
    };
    let namespace = sub_of(msg, rep, 4, 1);
    let universal = sub_of(msg, rep, 4, 2);
    let universal_type = sub_of(msg, rep, 4, 3);
    let system = system_for_authority(
        env,
        namespace.as_deref().or(if universal.is_none() {
            fallback_authority
        } else {
            None
        }),
        universal.as_deref(),
        universal_type.as_deref(),
    );
    let type_code = comp_of(msg, rep, 5);
    let mut builder = Identifier::builder().value(value);
    let ins = system.as_deref().and_then(ins_kind);
    match (ins, type_code.as_deref()) {
        (Some(kind), _) => {
            // FR Core Patient INS: the NIA is a waiting number (`temp`),
            // every NIR (real, test or demonstration) is `official`.
            let ins_use = match kind {
                "INS-NIA" => codes::IdentifierUse::Temp,
                _ => codes::IdentifierUse::Official,
            };
            builder = builder
                .r#use(ins_use)
                .r#type(concept(Some(FR_CORE_V2_0203), kind, None)?);
        }
        (None, Some(code)) => {
            if code == "PI" {
                builder = builder.r#use(codes::IdentifierUse::Usual);
            }
            builder = builder.r#type(concept(Some(V2_0203), code, None)?);
        }
        (None, None) => {}
    }
    if let Some(system) = system {
        builder = builder.system(system);
    }
    if let Some(display) = namespace.or(universal) {
        builder = builder.assigner(built(Reference::builder().display(display).build())?);
    }
    built(builder.build()).map(Some)
}

/// EI: entity ID ^ namespace ID ^ universal ID ^ universal ID type.
pub(crate) fn ei_identifier<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    env: &Env<'_, '_>,
    fallback_authority: Option<&str>,
) -> MapResult<Option<Identifier>> {
    let Some(value) = comp_of(msg, rep, 1) else {
        return Ok(None);
    };
    let namespace = comp_of(msg, rep, 2);
    let universal = comp_of(msg, rep, 3);
    let universal_type = comp_of(msg, rep, 4);
    let system = system_for_authority(
        env,
        namespace.as_deref().or(if universal.is_none() {
            fallback_authority
        } else {
            None
        }),
        universal.as_deref(),
        universal_type.as_deref(),
    );
    let mut builder = Identifier::builder().value(value);
    if let Some(system) = system {
        builder = builder.system(system);
    }
    built(builder.build()).map(Some)
}

fn name_use(code: &str) -> Option<codes::NameUse> {
    match code {
        // PAM-FR and the INS rules: L is the birth (legal) name, D the
        // name used.
        "L" | "B" => Some(codes::NameUse::Official),
        "D" | "A" => Some(codes::NameUse::Usual),
        "M" => Some(codes::NameUse::Maiden),
        "N" => Some(codes::NameUse::Nickname),
        "S" => Some(codes::NameUse::Anonymous),
        "T" => Some(codes::NameUse::Temp),
        _ => None,
    }
}

/// XPN: family ^ given ^ second given names ^ suffix ^ prefix ^ degree ^
/// name type. (XCN carries the same parts shifted by one: see
/// [`xcn_name`].)
pub(crate) fn xpn_name<'a>(msg: &Message<'a>, rep: &Field<'a>) -> MapResult<Option<HumanName>> {
    person_name(msg, rep, 0)
}

/// The name inside an XCN (ID ^ family ^ given ^ ... ^ prefix ^ degree).
pub(crate) fn xcn_name<'a>(msg: &Message<'a>, rep: &Field<'a>) -> MapResult<Option<HumanName>> {
    person_name(msg, rep, 1)
}

pub(crate) const FR_CORE_BIRTH_LIST_GIVEN_NAME: &str =
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-birth-list-given-name";

/// A message following the French extension (MSH-12 `2.5^FRA^2.11` or an
/// IHE France profile in MSH-21).
pub(crate) fn is_french(msg: &Message<'_>) -> bool {
    msg.get("MSH-12.2").as_deref() == Some("FRA")
        || msg
            .get("MSH-21")
            .is_some_and(|profile| profile.contains("IHE_FRANCE") || profile.contains("FRA"))
}

fn person_name<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    shift: usize,
) -> MapResult<Option<HumanName>> {
    // The family name is an FN whose first subcomponent is the surname.
    let family = sub_of(msg, rep, 1 + shift, 1);
    let mut given = Vec::new();
    let first = comp_of(msg, rep, 2 + shift);
    let others = comp_of(msg, rep, 3 + shift);
    // French identity rules (PAM-FR with the INS): for the birth name,
    // XPN-3 is the whole list of birth given names, the first one included,
    // which FR Core carries as an extension rather than as more given names.
    let birth_list = match (is_french(msg), comp_of(msg, rep, 7 + shift * 3).as_deref()) {
        (true, Some("L")) if shift == 0 => others.clone(),
        _ => None,
    };
    if let Some(first) = first {
        given.push(Some(first));
    }
    if let (Some(others), None) = (others, &birth_list) {
        given.extend(others.split_whitespace().map(|g| Some(g.to_string())));
    }
    let suffix = comp_of(msg, rep, 4 + shift);
    let prefix = comp_of(msg, rep, 5 + shift);
    if family.is_none() && given.is_empty() {
        return Ok(None);
    }
    let mut builder = HumanName::builder().given(given);
    if let Some(list) = birth_list {
        builder = builder.extension(vec![built(
            Extension::builder()
                .url(FR_CORE_BIRTH_LIST_GIVEN_NAME.to_string())
                .value(ExtensionValue::String(list))
                .build(),
        )?]);
    }
    if let Some(family) = family {
        builder = builder.family(family);
    }
    if let Some(suffix) = suffix {
        builder = builder.suffix(vec![Some(suffix)]);
    }
    if let Some(prefix) = prefix {
        builder = builder.prefix(vec![Some(prefix)]);
    }
    // XPN-7 is the name type; in an XCN it is component 10.
    let type_at = if shift == 0 { 7 } else { 10 };
    if let Some(kind) = comp_of(msg, rep, type_at).as_deref().and_then(name_use) {
        builder = builder.r#use(kind);
    }
    built(builder.build()).map(Some)
}

/// XAD: street ^ other designation ^ city ^ state ^ zip ^ country ^ type.
pub(crate) fn xad_address<'a>(msg: &Message<'a>, rep: &Field<'a>) -> MapResult<Option<Address>> {
    let mut lines = Vec::new();
    if let Some(street) = sub_of(msg, rep, 1, 1) {
        lines.push(Some(street));
    }
    if let Some(other) = comp_of(msg, rep, 2) {
        lines.push(Some(other));
    }
    let city = comp_of(msg, rep, 3);
    let state = comp_of(msg, rep, 4);
    let postal = comp_of(msg, rep, 5);
    let country = comp_of(msg, rep, 6);
    // XAD-9 is a CWE in v2.5+ (`code&text&system`): the code.
    let district = sub_of(msg, rep, 9, 1);
    if lines.is_empty()
        && city.is_none()
        && postal.is_none()
        && country.is_none()
        && state.is_none()
    {
        return Ok(None);
    }
    let mut builder = Address::builder().line(lines);
    if let Some(city) = city {
        builder = builder.city(city);
    }
    if let Some(state) = state {
        builder = builder.state(state);
    }
    if let Some(postal) = postal {
        builder = builder.postal_code(postal);
    }
    if let Some(country) = country {
        builder = builder.country(country);
    }
    if let Some(district) = district {
        builder = builder.district(district);
    }
    match comp_of(msg, rep, 7).as_deref() {
        Some("H") | Some("P") => builder = builder.r#use(codes::AddressUse::Home),
        Some("B") | Some("O") => builder = builder.r#use(codes::AddressUse::Work),
        Some("C") => builder = builder.r#use(codes::AddressUse::Temp),
        Some("BI") => builder = builder.r#use(codes::AddressUse::Billing),
        Some("M") => builder = builder.r#type(codes::AddressType::Postal),
        // BDL is the birth place, handled by the caller.
        _ => {}
    }
    built(builder.build()).map(Some)
}

/// XTN: [formatted number] ^ use code ^ equipment type ^ email ^ country ^
/// area ^ local number ^ extension. `default_use` applies when XTN-2 is
/// empty (PID-13 is home, PID-14 work).
pub(crate) fn xtn_contact<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    default_use: Option<codes::ContactPointUse>,
) -> MapResult<Option<ContactPoint>> {
    let equipment = comp_of(msg, rep, 3);
    let email = comp_of(msg, rep, 4);
    let number = match (comp_of(msg, rep, 6), comp_of(msg, rep, 7)) {
        (Some(area), Some(local)) => Some(format!("{area}{local}")),
        (None, Some(local)) => Some(local),
        // XTN-12, the unformatted number (v2.5+), before the legacy XTN-1.
        _ => comp_of(msg, rep, 12).or_else(|| comp_of(msg, rep, 1)),
    };
    let (system, value) = match (equipment.as_deref(), email, number) {
        (Some("Internet") | Some("X.400"), Some(email), _) => {
            (codes::ContactPointSystem::Email, email)
        }
        (_, Some(email), None) => (codes::ContactPointSystem::Email, email),
        (Some("FX"), _, Some(number)) => (codes::ContactPointSystem::Fax, number),
        (Some("BP"), _, Some(number)) => (codes::ContactPointSystem::Pager, number),
        (Some("Internet"), _, Some(number)) => (codes::ContactPointSystem::Url, number),
        (_, _, Some(number)) => (codes::ContactPointSystem::Phone, number),
        (_, None, None) => return Ok(None),
    };
    let mut builder = ContactPoint::builder().system(system).value(value);
    let use_code = match comp_of(msg, rep, 2).as_deref() {
        Some("PRN") | Some("ORN") | Some("VHN") => Some(codes::ContactPointUse::Home),
        Some("WPN") => Some(codes::ContactPointUse::Work),
        Some("PRS") => Some(codes::ContactPointUse::Mobile),
        _ if equipment.as_deref() == Some("CP") => Some(codes::ContactPointUse::Mobile),
        Some(_) => None,
        None => default_use,
    };
    if let Some(use_code) = use_code {
        builder = builder.r#use(use_code);
    }
    built(builder.build()).map(Some)
}

/// The AdministrativeGender for an HL7 table 0001 code.
pub(crate) fn gender(code: &str) -> Option<codes::AdministrativeGender> {
    match code.to_ascii_uppercase().as_str() {
        "M" => Some(codes::AdministrativeGender::Male),
        "F" => Some(codes::AdministrativeGender::Female),
        "O" | "A" | "N" => Some(codes::AdministrativeGender::Other),
        "U" => Some(codes::AdministrativeGender::Unknown),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{MappingContext, SiteSettings};

    fn env_for<'c, 's>(context: &'c MappingContext<'s>) -> Env<'c, 's> {
        Env {
            context,
            sender_offset: None,
        }
    }

    #[test]
    fn dtm_precision_and_zones() {
        let site = SiteSettings::default();
        let context = MappingContext {
            site: &site,
            now: "2026-01-01T00:00:00Z",
        };
        let env = env_for(&context);
        let as_json = |text: &str| {
            let value = parse_dtm(text).unwrap().to_datetime(&env).unwrap();
            serde_json::to_string(&value).unwrap()
        };
        assert_eq!(as_json("2024"), "\"2024\"");
        assert_eq!(as_json("202403"), "\"2024-03\"");
        assert_eq!(as_json("20240315"), "\"2024-03-15\"");
        assert_eq!(
            as_json("202403151230+0200"),
            "\"2024-03-15T12:30:00+02:00\""
        );
        assert_eq!(
            as_json("20240315123045.25-0500"),
            "\"2024-03-15T12:30:45.25-05:00\""
        );
        // No offset: Paris time, winter and summer.
        assert_eq!(as_json("20240115083000"), "\"2024-01-15T08:30:00+01:00\"");
        assert_eq!(as_json("20240715083000"), "\"2024-07-15T08:30:00+02:00\"");
        for bad in [
            "",
            "2024-03-15",
            "20241332",
            "20240230",
            "2024031525",
            "202403151230+2",
            "abcd",
            // Found by `cargo fuzz`: fhir-sdk cannot write a year before
            // 1000, so mapping one failed as an internal error.
            "0506",
            "050601",
            "09991231",
        ] {
            assert!(parse_dtm(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sender_offset_applies_before_the_site_zone() {
        let site = SiteSettings::default();
        let context = MappingContext {
            site: &site,
            now: "2026-01-01T00:00:00Z",
        };
        let env = Env {
            context: &context,
            sender_offset: Some(-4 * 3600),
        };
        let value = parse_dtm("20240115083000")
            .unwrap()
            .to_datetime(&env)
            .unwrap();
        assert_eq!(
            serde_json::to_string(&value).unwrap(),
            "\"2024-01-15T08:30:00-04:00\""
        );
    }

    #[test]
    fn coding_systems() {
        assert_eq!(coding_system_uri("LN").as_deref(), Some("http://loinc.org"));
        assert_eq!(
            coding_system_uri("HL70078").as_deref(),
            Some("http://terminology.hl7.org/CodeSystem/v2-0078")
        );
        assert_eq!(
            coding_system_uri("1.2.250.1.213.1.1.4.12").as_deref(),
            Some("urn:oid:1.2.250.1.213.1.1.4.12")
        );
        assert_eq!(coding_system_uri("L"), None);
        assert_eq!(coding_system_uri("99LOCAL"), None);
    }
}
