//! The synthetic edge cases under `tests/cases/` (written for this crate,
//! no patient data), and refusals built inline.

use hprim::net::{self, Measure};
use hprim::sante::{self, fields, DelimiterStyle, RecordType};
use hprim::{AbnormalFlag, Charset, ErrorKind};

use crate::shared::case;

#[test]
fn sante_multi_patient_crlf() {
    let file = sante::parse(&case("sante_multi_patient.hpr")).unwrap();
    assert_eq!(file.delimiters().style(), DelimiterStyle::Hprim);
    assert_eq!(file.charset(), Charset::Utf8 { bom: false });
    assert_eq!(file.version().unwrap().number, "H2.2");
    let patients = file.patients();
    assert_eq!(patients.len(), 2);

    let a = &patients[0];
    assert_eq!(a.patient.line(), 2);
    assert_eq!(a.patient.component_text(fields::P_NAME, 1), "MARTIN");
    assert_eq!(a.patient.component_text(fields::P_NAME, 2), "Claire");
    assert_eq!(a.patient.component_text(fields::P_ADDRESS, 3), "Rouen");
    assert_eq!(a.comments.len(), 1);
    assert_eq!(a.comments[0].field_text(fields::C_TEXT), "Patiente à jeun");
    assert_eq!(a.orders.len(), 2);
    let nfs = &a.orders[0];
    assert_eq!(
        nfs.order.component_text(fields::OBR_TEST, 2),
        "Numération formule sanguine"
    );
    assert_eq!(nfs.results.len(), 2);
    let plq = &nfs.results[1];
    assert_eq!(plq.result.field_text(fields::OBX_VALUE), "520");
    assert_eq!(
        AbnormalFlag::parse(&plq.result.field_text(fields::OBX_FLAGS)),
        Some(AbnormalFlag::CriticalHigh)
    );
    assert_eq!(plq.comments.len(), 1);
    assert_eq!(a.orders[1].results.len(), 1);

    let b = &patients[1];
    let name = b.patient.field(fields::P_NAME).unwrap();
    // `^` is the repetition separator in HPRIM style.
    assert_eq!(name.repetitions().count(), 2);
    assert_eq!(name.repetition(2).unwrap().text(), "Jean");
    assert_eq!(name.component(2).unwrap().text(), "Paul");
    let k = &b.orders[0].results[0];
    assert_eq!(
        AbnormalFlag::parse(&k.result.field_text(fields::OBX_FLAGS)),
        Some(AbnormalFlag::CriticalLow)
    );
    // A text result without a unit.
    let aspect = b.orders[0].results[1].result;
    assert_eq!(aspect.field_text(fields::OBX_VALUE), "Hémolysé");
    assert_eq!(aspect.field_text(fields::OBX_UNITS), "");
    assert_eq!(file.trailer().unwrap().line(), 14);
}

#[test]
fn sante_hl7_style_delimiters_lf() {
    let file = sante::parse(&case("sante_hl7_delimiters.hpr")).unwrap();
    assert_eq!(file.delimiters().style(), DelimiterStyle::Hl7);
    assert_eq!(file.delimiters().definition(), "^~\\&");
    let version = file.version().unwrap();
    assert_eq!(
        (version.number.as_str(), version.mode.as_deref()),
        ("H2.1", Some("C"))
    );
    let p = file.patients()[0].patient;
    let name = p.field(fields::P_NAME).unwrap();
    assert_eq!(name.repetitions().count(), 2);
    assert_eq!(
        name.repetition(2).unwrap().component(1).unwrap().text(),
        "DUBOIS"
    );
    let tsh = file.patients()[0].orders[0].results[0].result;
    assert_eq!(
        tsh.component_text(fields::OBX_IDENTIFIER, 2),
        "Thyréostimuline"
    );
    assert_eq!(tsh.field_text(fields::OBX_RANGE), "0.27-4.20");
}

#[test]
fn sante_continuations_cr() {
    let file = sante::parse(&case("sante_continuation.hpr")).unwrap();
    let h = file.header().unwrap();
    assert_eq!(h.component_text(fields::H_SENDER, 2), "Laboratoire Sud");
    assert_eq!(h.field_text(fields::H_MESSAGE_TYPE), "ORU");
    assert_eq!(file.version().unwrap().number, "H2.2");
    let p = file.patients()[0].patient;
    assert_eq!((p.line(), p.last_line()), (3, 4));
    assert_eq!(
        p.component_text(fields::P_ADDRESS, 1),
        "3 avenue de la République"
    );
    assert_eq!(p.component_text(fields::P_ADDRESS, 5), "69003");
    let comment = file.patients()[0].orders[0].results[0].comments[0];
    assert_eq!((comment.line(), comment.last_line()), (7, 9));
    assert_eq!(
        comment.field_text(fields::C_TEXT),
        "Commentaire long qui continue sur la ligne suivante et encore une autre."
    );
    assert_eq!(file.records().len(), 6);
}

#[test]
fn sante_windows_1252_accents() {
    let bytes = case("sante_windows1252.hpr");
    assert!(std::str::from_utf8(&bytes).is_err());
    let file = sante::parse(&bytes).unwrap();
    assert_eq!(file.charset(), Charset::Windows1252);
    let h = file.header().unwrap();
    assert_eq!(
        h.component_text(fields::H_SENDER, 2),
        "Laboratoire de l'Évêché"
    );
    let p = file.patients()[0].patient;
    assert_eq!(p.component_text(fields::P_NAME, 1), "LEFÈVRE");
    assert_eq!(p.component_text(fields::P_NAME, 2), "Hélène");
    assert_eq!(p.component_text(fields::P_NAME, 3), "Françoise");
    let comment = file.patients()[0].orders[0].results[0].comments[0];
    assert_eq!(
        comment.field_text(fields::C_TEXT),
        "Prélèvement reçu à 8 h ; coût 5 €"
    );
}

#[test]
fn sante_utf8_bom_escapes_and_other_records() {
    let file = sante::parse(&case("sante_utf8_bom.hpr")).unwrap();
    assert_eq!(file.charset(), Charset::Utf8 { bom: true });
    assert_eq!(file.header().unwrap().line(), 1);
    let patient = &file.patients()[0];
    assert_eq!(patient.patient.component_text(fields::P_NAME, 1), "NGUYỄN");
    assert_eq!(
        patient.patient.component_text(fields::P_NAME, 2),
        "Thị Hồng"
    );
    let others: Vec<&str> = patient
        .others
        .iter()
        .map(|r| r.record_type().id())
        .collect();
    assert_eq!(others, ["FAC", "ACT", "REG", "AP", "AC"]);
    assert_eq!(
        patient.others[0].record_type(),
        &RecordType::Other("FAC".into())
    );
    let results = &patient.orders[0].results;
    // A missing unit.
    assert_eq!(results[0].result.field_text(fields::OBX_UNITS), "");
    assert_eq!(
        results[1].result.field_text(fields::OBX_VALUE),
        "Valeur A|B, C~D, E^F, G\\H, I&J"
    );
    // An escaped delimiter does not split.
    let value = results[1].result.field(fields::OBX_VALUE).unwrap();
    assert_eq!(value.components().count(), 1);
    assert_eq!(value.repetitions().count(), 1);
}

#[test]
fn sante_refusals_name_the_place_not_the_content() {
    // Input, error, line, record type, field.
    type Case<'a> = (&'a [u8], ErrorKind, usize, Option<&'a str>, Option<usize>);
    let cases: &[Case] = &[
        (b"P|1||||SECRET\r", ErrorKind::NoHeader, 1, Some("P"), None),
        (
            b"H|~~\\&|\r",
            ErrorKind::BadDelimiters("the five delimiters are not all different"),
            1,
            Some("H"),
            Some(2),
        ),
        (
            b"H|~^\\&\rP|1\r SECRET|x\r",
            ErrorKind::NotARecord,
            3,
            None,
            None,
        ),
        (
            b"H|~^\\&\r\nOBR|1|SECRET\r\n",
            ErrorKind::OutOfOrder { expected: "P" },
            2,
            Some("OBR"),
            None,
        ),
        (
            b"H|~^\\&\nP|1\nOBX|1|SECRET\n",
            ErrorKind::OutOfOrder { expected: "OBR" },
            3,
            Some("OBX"),
            None,
        ),
        (
            b"H|~^\\&\nP|1\nL|1\nC|1|SECRET\n",
            ErrorKind::AfterTerminator,
            4,
            Some("C"),
            None,
        ),
        (
            b"H|~^\\&\nH|~^\\&|SECRET\n",
            ErrorKind::SecondHeader,
            2,
            Some("H"),
            None,
        ),
        (
            b"\xEF\xBB\xBFH|~^\\&\nP|1||||SECR\xC9T\n",
            ErrorKind::InvalidUtf8AfterBom,
            2,
            None,
            None,
        ),
        (b"\n\r\n", ErrorKind::Empty, 0, None, None),
    ];
    for (bytes, kind, line, record, field) in cases {
        let error = sante::parse(bytes).unwrap_err();
        assert_eq!(&error.kind, kind, "{error}");
        assert_eq!(error.line, *line, "{error}");
        assert_eq!(error.record.as_deref(), *record, "{error}");
        assert_eq!(error.field, *field, "{error}");
        let text = error.to_string();
        assert!(!text.contains("SECR"), "{text}");
        if *line > 0 {
            assert!(text.starts_with(&format!("line {line}")), "{text}");
        }
    }
}

#[test]
fn net_soit_lines_ranges_and_flags() {
    let file = net::parse(&case("net_soit.hpr")).unwrap();
    assert!(file.header.is_complete());
    assert_eq!(file.header.lines().len(), 12);
    assert_eq!(file.header.surname(), Some("ROBERT"));
    assert_eq!(file.header.address_line2(), Some("Bâtiment B"));
    assert_eq!(file.header.date(), Some("15/01/2026"));
    assert_eq!(file.text.len(), 3);
    assert_eq!(file.text[2].text, "");
    assert!(file.ended);
    let block = &file.blocks[0];
    assert!(block.explicit && block.closed);
    assert_eq!(block.comments[0].text, "BIOCHIMIE");
    let labels: Vec<&str> = block.results.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "GLYCEMIE A JEUN",
            "CREATININE",
            "POTASSIUM",
            "SODIUM",
            "BASE EXCESS",
            "RAPPORT A/G",
            "ASPECT",
            "HEMOGLOBINE"
        ]
    );
    let r = &block.results;
    // "min-max" in the low field.
    assert_eq!(
        (r[0].low.as_deref(), r[0].high.as_deref()),
        (Some("0,74"), Some("1,06"))
    );
    assert_eq!(r[0].value, "1,30");
    // A RES soit line.
    assert_eq!(
        r[0].second,
        Some(Measure {
            line: 19,
            value: "7,21".into(),
            unit: Some("mmol/L".into()),
            low: Some("4,11".into()),
            high: Some("5,88".into()),
        })
    );
    // A plain soit line, then a TEX for the same result.
    let crea = &r[1];
    let second = crea.second.as_ref().unwrap();
    assert_eq!(
        (second.value.as_str(), second.unit.as_deref()),
        ("84", Some("µmol/L"))
    );
    assert_eq!(
        crea.comments[0].text,
        "Débit de filtration glomérulaire estimé"
    );
    assert_eq!(r[2].flag_kind(), Some(AbnormalFlag::CriticalHigh));
    assert_eq!(r[3].flag_kind(), Some(AbnormalFlag::CriticalLow));
    assert_eq!(
        (r[4].low.as_deref(), r[4].high.as_deref()),
        (Some("-2"), Some("2"))
    );
    // A missing unit.
    assert_eq!(r[5].unit, None);
    assert_eq!(
        (r[5].low.as_deref(), r[5].high.as_deref()),
        (Some("1,2"), Some("2,2"))
    );
    assert_eq!(r[6].kind.as_deref(), Some("A"));
    assert_eq!(r[6].value, "Limpide");
    assert_eq!(r[6].comments[0].text, "Sérum non hémolysé");
    // Second value in fields 10 to 13.
    let hb = r[7].second.as_ref().unwrap();
    assert_eq!(
        (
            hb.value.as_str(),
            hb.unit.as_deref(),
            hb.low.as_deref(),
            hb.high.as_deref()
        ),
        ("8,57", Some("mmol/L"), Some("7,45"), Some("9,93"))
    );
}

#[test]
fn net_thirteen_line_header() {
    let file = net::parse(&case("net_13_line_header.hpr")).unwrap();
    assert_eq!(file.header.lines().len(), 13);
    assert_eq!(file.header.line(13), None);
    assert_eq!(file.header.recipient(), Some("DRPETIT    Dr Petit Jacques"));
    assert_eq!(file.free_text(), "Texte libre du compte rendu.");
    assert_eq!(file.results().count(), 1);
}

#[test]
fn net_windows_1252_cr() {
    let bytes = case("net_windows1252.hpr");
    assert!(std::str::from_utf8(&bytes).is_err());
    let file = net::parse(&bytes).unwrap();
    assert_eq!(file.charset, Charset::Windows1252);
    assert_eq!(file.header.surname(), Some("LEFÈVRE"));
    assert_eq!(file.header.first_name(), Some("Hélène"));
    assert_eq!(file.header.address_line1(), Some("12 rue de l'Église"));
    assert_eq!(file.free_text(), "Résultats validés par le Dr Müller.");
    let chol = file.results().next().unwrap();
    assert_eq!(
        (chol.low.as_deref(), chol.high.as_deref()),
        (None, Some("2,00"))
    );
    assert_eq!(chol.second.as_ref().unwrap().high.as_deref(), Some("5,17"));
    assert_eq!(
        chol.comments[0].text,
        "Contrôle conseillé dans 3 mois (coût 12 €)."
    );
}

#[test]
fn net_utf8_bom_without_end_marker() {
    let file = net::parse(&case("net_utf8_bom.hpr")).unwrap();
    assert_eq!(file.charset, Charset::Utf8 { bom: true });
    assert_eq!(file.header.index(), Some("CR-2026-0042"));
    assert_eq!(file.header.surname(), Some("GÉRARD"));
    assert_eq!(file.header.first_name(), Some("Zoé"));
    assert!(!file.ended);
    assert!(file.blocks[0].closed);
    let ferritin = file.results().next().unwrap();
    assert_eq!(ferritin.unit.as_deref(), Some("µg/L"));
    assert_eq!(
        (ferritin.low.as_deref(), ferritin.high.as_deref()),
        (Some("20"), Some("200"))
    );
}

#[test]
fn net_without_header_or_markers() {
    let file = net::parse(&case("net_no_markers.hpr")).unwrap();
    assert!(file.header.lines().is_empty());
    let block = &file.blocks[0];
    assert!(!block.explicit && !block.closed);
    assert_eq!(block.results.len(), 2);
    assert_eq!(block.results[0].comments[0].text, "À jeun.");
    let urea = &block.results[1];
    assert_eq!(
        (urea.low.as_deref(), urea.high.as_deref()),
        (Some("2,5"), Some("7,5"))
    );
    assert_eq!(urea.second.as_ref().unwrap().value, "0,72");
}

#[test]
fn net_refusals_name_the_line() {
    let error = net::parse(b"RES|A|A|N|1\r\n****FINFICHIER****\r\nSECRET\r\n").unwrap_err();
    assert_eq!(
        (error.kind.clone(), error.line),
        (ErrorKind::TextAfterEnd, 3)
    );
    assert!(!error.to_string().contains("SECRET"));
    let error = net::parse(b"\xEF\xBB\xBFDUPONT\nJ\xC9AN\n").unwrap_err();
    assert_eq!(
        (error.kind.clone(), error.line),
        (ErrorKind::InvalidUtf8AfterBom, 2)
    );
    let error = net::parse(b"\xFE\xFF\0D\0U").unwrap_err();
    assert_eq!(error.kind, ErrorKind::Utf16);
    assert_eq!(net::parse(b"").unwrap_err().kind, ErrorKind::Empty);
}

#[test]
fn detection_tells_the_formats_apart() {
    for name in [
        "sante_multi_patient.hpr",
        "sante_hl7_delimiters.hpr",
        "sante_continuation.hpr",
        "sante_windows1252.hpr",
        "sante_utf8_bom.hpr",
    ] {
        let bytes = case(name);
        assert!(sante::looks_like(&bytes), "{name}");
        assert!(!net::looks_like(&bytes), "{name}");
    }
    for name in [
        "net_soit.hpr",
        "net_13_line_header.hpr",
        "net_windows1252.hpr",
        "net_utf8_bom.hpr",
        "net_no_markers.hpr",
    ] {
        let bytes = case(name);
        assert!(net::looks_like(&bytes), "{name}");
        assert!(!sante::looks_like(&bytes), "{name}");
    }
}
