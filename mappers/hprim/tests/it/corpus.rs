//! Every HPRIM sample of the shared public corpus (`../shared/corpus/hprim`,
//! read in place, never copied) parses, and gives the values a reader would
//! expect.

use std::path::{Path, PathBuf};

use hprim::net::{self, NetFile};
use hprim::sante::{self, fields, DelimiterStyle, SanteFile, Version};
use hprim::Charset;

use crate::shared::{corpus, files, missing};

/// The HPRIM samples, or `None` when the corpus is absent (skipped, or a
/// failure under PASSERELLE_REQUIRE_PEERS).
fn samples() -> Option<Vec<PathBuf>> {
    let dir = corpus()?.join("hprim");
    if !dir.is_dir() {
        missing("../shared/corpus/hprim", &dir);
        return None;
    }
    Some(files(&dir))
}

fn name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn find(paths: &[PathBuf], file: &str) -> Vec<u8> {
    let path = paths
        .iter()
        .find(|p| name(p) == file)
        .unwrap_or_else(|| panic!("{file} is not in the corpus"));
    std::fs::read(path).unwrap()
}

fn sante(paths: &[PathBuf], file: &str) -> SanteFile {
    sante::parse(&find(paths, file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn net(paths: &[PathBuf], file: &str) -> NetFile {
    net::parse(&find(paths, file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_sample_parses() {
    let Some(paths) = samples() else {
        return;
    };
    assert_eq!(paths.len(), 6, "{paths:#?}");
    let mut sante_files = 0;
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        if sante::looks_like(&bytes) {
            sante::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            sante_files += 1;
        } else {
            net::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        hprim::fuzz_sante(&bytes);
        hprim::fuzz_net(&bytes);
    }
    assert_eq!(sante_files, 1);
}

#[test]
fn sante_uric_acid_oru() {
    let Some(paths) = samples() else {
        return;
    };
    let file = sante(&paths, "ORU_acide_urique_H2.2.hpr");
    assert_eq!(file.delimiters().style(), DelimiterStyle::Hprim);
    assert_eq!(file.charset(), Charset::Utf8 { bom: false });
    assert_eq!(
        file.version(),
        Some(Version {
            number: "H2.2".into(),
            mode: Some("C".into())
        })
    );
    let types: Vec<&str> = file
        .records()
        .iter()
        .map(|r| r.record_type().id())
        .collect();
    assert_eq!(types, ["H", "P", "OBR", "OBX", "L"]);
    let h = file.header().unwrap();
    assert_eq!(h.component_text(fields::H_SENDER, 2), "ORIGIN");
    assert_eq!(h.component_text(fields::H_RECEIVER, 2), "DESTINATION");
    assert_eq!(h.field_text(fields::H_MESSAGE_TYPE), "ORU");
    assert_eq!(h.field_text(fields::H_PROCESSING), "P");

    let patients = file.patients();
    assert_eq!(patients.len(), 1);
    let p = patients[0].patient;
    assert_eq!(p.component_text(fields::P_NAME, 1), "JEAN");
    assert_eq!(p.component_text(fields::P_NAME, 2), "PIERRE");
    assert_eq!(p.field_text(fields::P_BIRTH_DATE), "19500101");
    assert_eq!(p.field_text(fields::P_SEX), "M");
    assert_eq!(p.component_text(fields::P_ADDRESS, 3), "PARIS");

    let order = &patients[0].orders[0];
    assert_eq!(order.order.component_text(fields::OBR_TEST, 1), "AU");
    // The A record continues the OBR: its fields follow on.
    assert_eq!((order.order.line(), order.order.last_line()), (3, 4));
    assert_eq!(order.order.field_text(18), "01 23 45 67 89");
    assert_eq!(order.order.field_text(26), "I");

    let obx = order.results[0].result;
    assert_eq!(obx.line(), 5);
    assert_eq!(obx.field_text(fields::OBX_VALUE_TYPE), "NM");
    assert_eq!(
        obx.component_text(fields::OBX_IDENTIFIER, 2),
        "Acide urique"
    );
    assert_eq!(obx.field_text(fields::OBX_UNITS), "µmol/L");
    assert_eq!(obx.field_text(fields::OBX_STATUS), "I");
    assert_eq!(file.trailer().map(|l| l.line()), Some(6));
}

#[test]
fn net_solabio_header_and_block() {
    let Some(paths) = samples() else {
        return;
    };
    let file = net(&paths, "header-solabio.hpm");
    let h = &file.header;
    assert!(h.is_complete());
    assert_eq!(h.lines().len(), 12);
    assert!(h.index().unwrap().starts_with("SOLABIO"));
    assert_eq!(h.surname(), Some("DUPONT"));
    assert_eq!(h.first_name(), Some("JEAN"));
    assert_eq!(h.address_line1(), Some("1 rue de la Test"));
    assert_eq!(h.address_line2(), None);
    assert_eq!(
        net::split_postcode(h.postcode_and_town().unwrap()),
        (Some("76000"), "VILLE TEST")
    );
    assert_eq!(
        net::parse_date(h.birth_date().unwrap()),
        Some(net::Date {
            year: 1950,
            month: 1,
            day: 1
        })
    );
    assert_eq!(h.nir(), Some("1500176000000 00"));
    assert_eq!(h.lab_reference(), Some("260624HE0103"));
    assert_eq!(h.date(), Some("24/06/2026"));
    assert_eq!(
        net::split_code_name(h.sender().unwrap()),
        ("SOLABIO", "SOLABIO")
    );
    assert_eq!(
        net::split_code_name(h.recipient().unwrap()),
        ("MARTPA", "MARTIN PAUL")
    );
    assert_eq!(file.text.len(), 3);
    assert!(file.free_text().contains("Médecin"));
    assert!(file.ended);
    assert_eq!(file.blocks.len(), 1);
    let block = &file.blocks[0];
    assert!(block.explicit && block.closed);
    assert_eq!(block.results.len(), 2);
    let hb = &block.results[0];
    assert_eq!(hb.label, "HEMOGLOBINE");
    assert_eq!(hb.code.as_deref(), Some("NF   030"));
    assert_eq!(hb.kind.as_deref(), Some("N"));
    assert_eq!(hb.value, "14.8");
    assert_eq!(hb.unit.as_deref(), Some("g/dL"));
    assert_eq!(
        (hb.low.as_deref(), hb.high.as_deref()),
        (Some("12.9"), Some("16.7"))
    );
    assert_eq!(hb.flag_kind(), Some(hprim::AbnormalFlag::Normal));
    assert_eq!(hb.status.as_deref(), Some("F"));
    let text = &block.results[1];
    assert_eq!(text.value, "Diabète");
    assert_eq!(text.unit, None);
}

#[test]
fn net_text_only_report_keeps_results_out_of_the_header() {
    let Some(paths) = samples() else {
        return;
    };
    let file = net(&paths, "text.hpr");
    let h = &file.header;
    assert!(!h.is_complete());
    assert_eq!(h.lines().len(), 7);
    assert_eq!(h.index(), Some("A250513068"));
    assert_eq!(h.surname(), Some("MARTIN"));
    assert_eq!(h.first_name(), Some("DENISE"));
    assert_eq!(h.birth_date(), Some("14/03/1957"));
    assert_eq!(h.nir(), None);
    assert_eq!(file.text.len(), 2);
    assert!(file.text[1].text.starts_with("Glycémie"));
    assert!(file.blocks.is_empty());
    assert!(!file.ended);
}

#[test]
fn net_pipes_without_markers() {
    let Some(paths) = samples() else {
        return;
    };
    let file = net(&paths, "pipes.hpr");
    assert!(file.header.lines().is_empty());
    assert_eq!(file.blocks.len(), 1);
    let block = &file.blocks[0];
    assert!(!block.explicit);
    let labels: Vec<&str> = block.results.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "GLUCOSE A JEUN",
            "HEMOGLOBINE",
            "TSH",
            "CREATININE",
            "BASE EXCESS"
        ]
    );
    assert_eq!(block.results[0].value, "1.42");
    assert_eq!(block.results[2].flag_kind(), Some(hprim::AbnormalFlag::Low));
    let be = &block.results[4];
    assert_eq!(be.value, "-8");
    assert_eq!(
        (be.low.as_deref(), be.high.as_deref()),
        (Some("-2"), Some("2"))
    );
    assert_eq!(be.comments.len(), 1);
    assert_eq!(be.comments[0].text, "Contrôle conseillé à distance.");
}

#[test]
fn net_tags_block() {
    let Some(paths) = samples() else {
        return;
    };
    let file = net(&paths, "tags.hpr");
    assert_eq!(file.blocks.len(), 1);
    let block = &file.blocks[0];
    assert!(block.explicit && block.closed);
    assert!(!file.ended);
    assert_eq!(block.results.len(), 3);
    assert_eq!(block.results[0].comments[0].text, "Hyperglycémie modérée.");
    let ca = &block.results[2];
    assert_eq!(ca.label, "CALCIUM");
    assert_eq!(
        (ca.low.as_deref(), ca.high.as_deref()),
        (Some("2.20"), Some("2.60"))
    );
}

#[test]
fn net_crlf_test_file() {
    let Some(paths) = samples() else {
        return;
    };
    let file = net(&paths, "test-file.hpr");
    assert_eq!(file.charset, Charset::Utf8 { bom: false });
    let results: Vec<_> = file.results().collect();
    assert_eq!(results.len(), 3);
    let crea = results[2];
    assert_eq!(crea.value, "85*");
    assert_eq!(crea.unit.as_deref(), Some("µmol/L"));
    assert_eq!(crea.flag_kind(), Some(hprim::AbnormalFlag::High));
    let comments: Vec<&str> = crea.comments.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        comments,
        [
            "Commentaire test pour le glucose",
            "Valeurs normales détectées"
        ]
    );
}
