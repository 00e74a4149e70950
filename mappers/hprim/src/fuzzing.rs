//! The checks the fuzz targets run on every input, shared with the plain
//! test that replays the fuzz corpus: nothing may panic, and what parses
//! must hold together (every record where the grouping says, escapes that
//! round-trip, line numbers in order).

use crate::net;
use crate::sante::{self, escape, unescape, RecordType};

/// Parses `data` as HPRIM Santé and walks everything it gives.
#[doc(hidden)]
pub fn fuzz_sante(data: &[u8]) {
    let _ = sante::looks_like(data);
    let Ok(file) = sante::parse(data) else {
        return;
    };
    let delimiters = file.delimiters();
    let _ = delimiters.style();
    assert_eq!(delimiters.definition().chars().count(), 4);
    let mut previous_line = 0;
    for record in file.records() {
        assert!(record.line() > previous_line, "records out of order");
        assert!(record.line() <= record.last_line());
        previous_line = record.last_line();
        let id = record.record_type().id();
        assert_eq!(record.field(1).map(|f| f.raw()), Some(id));
        assert!(record.field(0).is_none());
        assert!(record.field(record.field_count() + 1).is_none());
        for field in record.fields() {
            let text = field.text();
            for repetition in field.repetitions() {
                let _ = repetition.text();
                for component in repetition.components() {
                    let _ = component.text();
                    let _ = component.subcomponents().count();
                    let _ = component.subcomponent(2);
                }
            }
            let _ = field.component(3);
            let escaped = escape(&text, &delimiters);
            assert_eq!(
                unescape(&escaped, &delimiters, file.charset()),
                text,
                "escape does not round-trip"
            );
        }
        let _ = record.component_text(4, 2);
    }
    let _ = file.version();
    let count = |t: &RecordType| {
        file.records()
            .iter()
            .filter(|r| r.record_type() == t)
            .count()
    };
    let patients = file.patients();
    assert_eq!(patients.len(), count(&RecordType::Patient));
    let orders: usize = patients.iter().map(|p| p.orders.len()).sum();
    assert_eq!(orders, count(&RecordType::Order));
    let mut grouped = 1 + file.preamble().len() + usize::from(file.trailer().is_some());
    for patient in &patients {
        grouped += 1 + patient.comments.len() + patient.others.len();
        for order in &patient.orders {
            grouped += 1 + order.comments.len();
            for result in &order.results {
                assert_eq!(result.result.record_type(), &RecordType::Result);
                grouped += 1 + result.comments.len();
            }
        }
    }
    assert_eq!(grouped, file.records().len(), "a record is not grouped");
}

/// Parses `data` as HPRIM Net and walks everything it gives.
#[doc(hidden)]
pub fn fuzz_net(data: &[u8]) {
    let _ = net::looks_like(data);
    let Ok(file) = net::parse(data) else {
        return;
    };
    let header = &file.header;
    assert!(header.lines().len() <= net::NetHeader::LINES + 1);
    for n in 0..=14 {
        if let Some(line) = header.line(n) {
            let _ = net::parse_date(line);
            let _ = net::split_postcode(line);
            let _ = net::split_code_name(line);
        }
    }
    let _ = file.free_text();
    for block in &file.blocks {
        for result in &block.results {
            assert!(result.line >= block.line);
            assert!(
                net::soit_rest(&result.label).is_none(),
                "soit line kept as a result"
            );
            let _ = result.flag_kind();
            for measure in result.second.iter().chain(&result.extra_measures) {
                assert!(measure.line >= result.line);
            }
            for comment in &result.comments {
                assert!(comment.line > result.line);
            }
        }
    }
    let header_first = header
        .lines()
        .last()
        .is_none_or(|last| file.text.iter().all(|t| t.line > last.line));
    assert!(header_first, "header lines after text");
    let in_order = file.text.windows(2).all(|w| match w {
        [a, b] => a.line < b.line,
        _ => true,
    });
    assert!(in_order, "text lines out of order");
}
