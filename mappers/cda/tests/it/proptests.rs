//! Properties: arbitrary bytes never panic the reader and any error names
//! a place inside them; any PQ decimal text comes back as written; any
//! nesting deeper than the limit is refused, never overflowing the stack.

use proptest::prelude::*;

use crate::{document, result_body, RECORD_TARGET};

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        cda::fuzz_read(&bytes);
    }

    #[test]
    fn mutated_documents_never_panic(at in 0usize..1200, byte in any::<u8>()) {
        let mut bytes = document(RECORD_TARGET, &result_body(r#"<value xsi:type="PQ" value="1.50" unit="g/L"/>"#)).into_bytes();
        let at = at % bytes.len();
        bytes[at] = byte;
        cda::fuzz_read(&bytes);
    }

    #[test]
    fn pq_text_is_kept(integer in 0u32..100000, fraction in "[0-9]{0,6}") {
        let value = if fraction.is_empty() { integer.to_string() } else { format!("{integer}.{fraction}") };
        let text = document(RECORD_TARGET, &result_body(&format!(r#"<value xsi:type="PQ" value="{value}" unit="g/L"/>"#)));
        let read = cda::read(text.as_bytes()).unwrap();
        match &read.lab.unwrap().observations[0].value {
            Some(cda::Value::Quantity(q)) => prop_assert_eq!(q.value.as_deref(), Some(value.as_str())),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn depth_over_the_limit_is_refused(depth in 1usize..400) {
        let text = format!("<ClinicalDocument xmlns=\"urn:hl7-org:v3\">{}{}</ClinicalDocument>", "<a>".repeat(depth), "</a>".repeat(depth));
        let limits = cda::Limits { max_depth: 64, ..cda::Limits::default() };
        let result = cda::read_with_limits(text.as_bytes(), &limits);
        prop_assert_eq!(result.is_ok(), depth < 64);
    }
}
