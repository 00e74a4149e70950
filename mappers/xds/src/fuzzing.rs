//! The entry point of the `xds` fuzz target, shared with the test that
//! replays its corpus: any bytes, under any Content-Type, as an ITI-41
//! request, as an answer, as a value set and as XML to canonicalise.
//! None may panic.

/// Reads `data` as an MTOM ITI-41 request (the first line is taken as the
/// Content-Type) and as a registry answer.
pub fn fuzz_read(data: &[u8]) {
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(end) => (
            String::from_utf8_lossy(data.get(..end).unwrap_or_default()).into_owned(),
            data.get(end + 1..).unwrap_or_default(),
        ),
        None => (String::new(), data),
    };
    let _ = crate::read::read_provide_and_register(&content_type, body);
    let _ = crate::response::read(&content_type, body);
    let _ = crate::svs::read(body);
    let _ = crate::c14n::canonicalize(body, crate::c14n::Apex::Root, &Default::default());
    let _ = crate::c14n::canonicalize(
        body,
        crate::c14n::Apex::WithId {
            attribute: "ID",
            value: "_a",
        },
        &crate::c14n::Options {
            inclusive_prefixes: &["#default", "xsi"],
            omit_signatures: true,
        },
    );
}
