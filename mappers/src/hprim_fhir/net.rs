//! Reading an HPRIM Net / Médecins file into the neutral model: the header
//! gives the patient (no patient id: the NIR when well formed), the
//! laboratory reference (line 9) the order, and every RES line of every
//! block a result of that one order.

use hprim::net::{parse_date, split_code_name, split_postcode, Measure, NetFile, NetResult};

use super::model::{
    text, well_formed_nir, MeasureData, OrderData, PatientData, Place, Report, ResultData,
};
use crate::mapping::{MappingContext, MappingError};

pub(super) fn read(file: &NetFile, _context: &MappingContext<'_>) -> Result<Report, MappingError> {
    let header = &file.header;
    let code_of = |line: Option<&str>| {
        line.map(|l| split_code_name(l).0.to_string())
            .filter(|c| !c.is_empty())
    };
    let date = |line: Option<&str>| {
        line.and_then(parse_date)
            .map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
    };
    let (postcode, city) = match header.postcode_and_town() {
        Some(line) => {
            let (code, town) = split_postcode(line);
            (code.map(str::to_string), text(town))
        }
        None => (None, None),
    };
    let mut order = OrderData {
        requester_id: None,
        lab_id: header.lab_reference().map(str::to_string),
        has_specimen: false,
        code: None,
        collected: date(header.date()),
        notes: Vec::new(),
        results: Vec::new(),
        report_text: text(&file.free_text()),
    };
    for block in &file.blocks {
        order
            .notes
            .extend(block.comments.iter().filter_map(|c| text(&c.text)));
        for res in &block.results {
            order.results.push(result(res));
        }
    }
    let patient = PatientData {
        requester_id: None,
        lab_id: None,
        nir: header.nir().and_then(well_formed_nir),
        family: header.surname().map(str::to_string),
        given: header
            .first_name()
            .map(str::to_string)
            .into_iter()
            .collect(),
        birth_date: date(header.birth_date()),
        gender: None,
        address_lines: [header.address_line1(), header.address_line2()]
            .into_iter()
            .flatten()
            .map(str::to_string)
            .collect(),
        city,
        postcode,
        notes: Vec::new(),
        orders: vec![order],
        index: 1,
    };
    Ok(Report {
        sender: code_of(header.sender()),
        receiver: code_of(header.recipient()),
        patients: vec![patient],
    })
}

fn result(res: &NetResult) -> ResultData {
    let label = text(&res.label);
    let code = res.code.as_deref().and_then(text);
    ResultData {
        place: Some(Place {
            line: res.line,
            record: "RES",
        }),
        code: code.or_else(|| label.clone()),
        display: label,
        numeric: res
            .kind
            .as_deref()
            .is_some_and(|k| k.trim().eq_ignore_ascii_case("N")),
        primary: MeasureData {
            value: res.value.clone(),
            unit: res.unit.as_deref().and_then(text),
            low: res.low.clone(),
            high: res.high.clone(),
            range_text: None,
        },
        flag: res.flag_kind(),
        status: res.status.as_deref().and_then(text),
        others: res
            .second
            .iter()
            .chain(res.extra_measures.iter())
            .map(measure)
            .collect(),
        notes: res.comments.iter().filter_map(|c| text(&c.text)).collect(),
    }
}

fn measure(measure: &Measure) -> MeasureData {
    MeasureData {
        value: measure.value.clone(),
        unit: measure.unit.as_deref().and_then(text),
        low: measure.low.clone(),
        high: measure.high.clone(),
        range_text: None,
    }
}
