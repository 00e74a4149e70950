//! Reading an HPRIM Santé file into the neutral model (field numbers as in
//! `hprim::sante::fields`: field 1 is the record type).

use hprim::sante::{fields, Record, SanteFile};
use hprim::AbnormalFlag;

use super::model::{
    compact_datetime, gender, range_of, text, well_formed_nir, MeasureData, OrderData, PatientData,
    Place, Report, ResultData,
};
use crate::mapping::{MappingContext, MappingError};

/// P.3: the requester's patient id; P.4: the laboratory's; P.5: a further
/// id, taken as the NIR when it is a well-formed one.
const P_REQUESTER_ID: usize = 3;
const P_LAB_ID: usize = 4;
const P_OTHER_ID: usize = 5;
/// OBR.3: the requester's sample (order) number; OBR.4: the laboratory's;
/// OBR.8: when the sample was taken (OBR.7 when OBR.8 is empty).
const OBR_REQUESTER_ID: usize = 3;
const OBR_LAB_ID: usize = 4;
const OBR_REQUESTED_AT: usize = 7;
const OBR_COLLECTED_AT: usize = 8;

pub(super) fn read(file: &SanteFile, context: &MappingContext<'_>) -> Result<Report, MappingError> {
    let zone = &context.site.timezone;
    let header = file.header();
    let mut report = Report {
        sender: header.and_then(|h| first_component(h, fields::H_SENDER)),
        receiver: header.and_then(|h| first_component(h, fields::H_RECEIVER)),
        patients: Vec::new(),
    };
    for (index, group) in file.patients().iter().enumerate() {
        let p = group.patient;
        let name = p.field(fields::P_NAME);
        let component = |n: usize| {
            name.as_ref()
                .and_then(|f| f.component(n))
                .and_then(|c| text(&c.text()))
        };
        let address = p.field(fields::P_ADDRESS);
        let address_part = |n: usize| {
            address
                .as_ref()
                .and_then(|f| f.component(n))
                .and_then(|c| text(&c.text()))
        };
        let mut patient = PatientData {
            requester_id: first_component(p, P_REQUESTER_ID),
            lab_id: first_component(p, P_LAB_ID),
            nir: first_component(p, P_OTHER_ID).and_then(|id| well_formed_nir(&id)),
            family: component(1),
            given: component(2).into_iter().collect(),
            birth_date: compact_datetime(
                p.field_text(fields::P_BIRTH_DATE).get(..8).unwrap_or(""),
                zone,
            ),
            gender: gender(&p.field_text(fields::P_SEX)),
            address_lines: [address_part(1), address_part(2)]
                .into_iter()
                .flatten()
                .collect(),
            city: address_part(3),
            postcode: address_part(5),
            notes: group.comments.iter().filter_map(|c| comment(c)).collect(),
            orders: Vec::new(),
            index: index + 1,
        };
        for order_group in &group.orders {
            let obr = order_group.order;
            let test = obr.field(fields::OBR_TEST);
            let code = test.as_ref().and_then(|f| {
                let code = f.component(1).and_then(|c| text(&c.text()));
                let display = f.component(2).and_then(|c| text(&c.text()));
                match (code, display) {
                    (Some(code), display) => Some((code, display)),
                    (None, Some(display)) => Some((display.clone(), Some(display))),
                    (None, None) => None,
                }
            });
            let collected = [OBR_COLLECTED_AT, OBR_REQUESTED_AT]
                .iter()
                .find_map(|n| compact_datetime(&obr.field_text(*n), zone));
            let mut order = OrderData {
                requester_id: first_component(obr, OBR_REQUESTER_ID),
                lab_id: first_component(obr, OBR_LAB_ID),
                has_specimen: true,
                code,
                collected,
                notes: order_group
                    .comments
                    .iter()
                    .filter_map(|c| comment(c))
                    .collect(),
                results: Vec::new(),
                report_text: None,
            };
            for result_group in &order_group.results {
                order
                    .results
                    .push(result(result_group.result, &result_group.comments));
            }
            patient.orders.push(order);
        }
        report.patients.push(patient);
    }
    Ok(report)
}

fn place(record: &Record, name: &'static str) -> Place {
    Place {
        line: record.line(),
        record: name,
    }
}

fn result(obx: &Record, comments: &[&Record]) -> ResultData {
    let identifier = obx.field(fields::OBX_IDENTIFIER);
    let part = |n: usize| {
        identifier
            .as_ref()
            .and_then(|f| f.component(n))
            .and_then(|c| text(&c.text()))
    };
    let (low, high, range_text) = range_of(&obx.field_text(fields::OBX_RANGE));
    ResultData {
        place: Some(place(obx, "OBX")),
        code: part(1),
        display: part(2),
        numeric: obx
            .field_text(fields::OBX_VALUE_TYPE)
            .trim()
            .eq_ignore_ascii_case("NM"),
        primary: MeasureData {
            value: obx.field_text(fields::OBX_VALUE).into_owned(),
            unit: text(&obx.field_text(fields::OBX_UNITS)),
            low,
            high,
            range_text,
        },
        flag: AbnormalFlag::parse(&obx.field_text(fields::OBX_FLAGS)),
        status: text(&obx.field_text(fields::OBX_STATUS)),
        others: Vec::new(),
        notes: comments.iter().filter_map(|c| comment(c)).collect(),
    }
}

/// The first non-blank component of a field (`~001` is `001`).
fn first_component(record: &Record, n: usize) -> Option<String> {
    let field = record.field(n)?;
    let found = field.components().find_map(|c| text(&c.text()));
    found
}

fn comment(record: &Record) -> Option<String> {
    text(&record.field_text(fields::C_TEXT))
}
