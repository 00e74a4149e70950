//! Property tests: arbitrary bytes (and arbitrary sequences of plausible
//! lines) never make a parser panic; a well-formed file generated from
//! random values (random delimiters, escapes, accents, line ends, `A`
//! continuations, Windows-1252 or UTF-8) parses back to the same values.

use hprim::net;
use hprim::sante::{self, escape, fields, Delimiters};
use proptest::prelude::*;
use proptest::sample::Index;

fn regex(pattern: &str) -> impl Strategy<Value = String> {
    proptest::string::string_regex(pattern).unwrap_or_else(|_| unreachable!())
}

fn terminator() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\r"), Just("\n"), Just("\r\n")]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        prefix in 0usize..5,
    ) {
        let prefixes: [&[u8]; 5] = [
            b"",
            b"H|~^\\&|",
            b"H|^~\\&|x\rP|1\rOBR|1\rOBX|1|",
            b"****LAB****\nRES|",
            b"\xEF\xBB\xBFA\nB\nC\nD\nE\nF\n01/01/2000\n",
        ];
        let mut input = prefixes.get(prefix).copied().unwrap_or_default().to_vec();
        input.extend_from_slice(&bytes);
        hprim::fuzz_sante(&input);
        hprim::fuzz_net(&input);
        hprim::fuzz_sante(&bytes);
        hprim::fuzz_net(&bytes);
    }

    #[test]
    fn arbitrary_record_sequences_never_panic(
        lines in proptest::collection::vec(
            regex("(H|P|OBR|OBX|C|L|A|FAC|REG|X1)(\\|[a-zé~^\\\\&|]{0,6})?"),
            0..12,
        ),
        header in prop_oneof![Just("H|~^\\&|"), Just("H|^~\\&|"), Just("")],
        end in terminator(),
    ) {
        let input = format!("{header}{end}{}", lines.join(end));
        hprim::fuzz_sante(input.as_bytes());
        hprim::fuzz_net(input.as_bytes());
    }

    #[test]
    fn arbitrary_net_lines_never_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                regex("RES\\|[a-z0-9 |,.-]{0,20}"),
                regex("TEX\\|[a-z ]{0,8}"),
                regex(" ?[sS]oit[ :|]?[0-9a-z ,/|]{0,10}"),
                Just("****LAB****".to_string()),
                Just("****FIN****".to_string()),
                Just("****FINFICHIER****".to_string()),
                regex("[a-z0-9 /]{0,12}"),
            ],
            0..30,
        ),
        end in terminator(),
    ) {
        let input = lines.join(end);
        hprim::fuzz_net(input.as_bytes());
        hprim::fuzz_sante(input.as_bytes());
    }
}

fn delimiters() -> impl Strategy<Value = Delimiters> {
    let pool: Vec<char> = "|^~\\&#!$%*+/:;=?@_".chars().collect();
    prop_oneof![
        Just(Delimiters::HPRIM),
        Just(Delimiters::HL7),
        proptest::sample::subsequence(pool, 5)
            .prop_shuffle()
            .prop_map(|c| Delimiters {
                field: c[0],
                component: c[1],
                repetition: c[2],
                escape: c[3],
                subcomponent: c[4],
            }),
    ]
}

fn text() -> impl Strategy<Value = String> {
    regex("[a-zA-Z0-9 éèôÀ€|^~&\\\\#!$%*+/:;=?@_.\\n\\r-]{0,12}")
}

fn components() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(text(), 1..4)
}

/// An OBX: identifier components, value, optional comment.
type GenResult = (Vec<String>, String, Option<String>);
/// An OBR: test components and results.
type GenOrder = (Vec<String>, Vec<GenResult>);
/// A P: name components and orders.
type GenPatient = (Vec<String>, Vec<GenOrder>);

fn patients() -> impl Strategy<Value = Vec<GenPatient>> {
    let result = (components(), text(), proptest::option::of(text()));
    let order = (components(), proptest::collection::vec(result, 0..3));
    let patient = (components(), proptest::collection::vec(order, 0..3));
    proptest::collection::vec(patient, 1..4)
}

/// Cuts a record into its line and `A` continuation lines at the given
/// positions (never inside the record type and its separator).
fn cut(record: &str, id_len: usize, cuts: &[usize], field: char) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for &at in cuts {
        if at > start && at > id_len {
            pieces.push(record[start..at].to_string());
            start = at;
        }
    }
    pieces.push(record[start..].to_string());
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| if i == 0 { p } else { format!("A{field}{p}") })
        .collect()
}

proptest! {
    #[test]
    fn generated_sante_files_round_trip(
        d in delimiters(),
        patients in patients(),
        end in terminator(),
        splits in proptest::collection::vec((any::<Index>(), any::<Index>()), 0..6),
        windows_1252 in any::<bool>(),
        bom in any::<bool>(),
    ) {
        let (f, c) = (d.field, d.component);
        let join = |parts: &[String]| {
            parts
                .iter()
                .map(|p| escape(p, &d))
                .collect::<Vec<_>>()
                .join(&c.to_string())
        };
        // (record, length of its type)
        let mut records: Vec<(String, usize)> = vec![(
            format!(
                "H{f}{}{f}MSG{f}{f}LAB{c}Labo{f}{f}ORU{f}{f}{f}GW{f}{f}P{f}H2.2{c}C{f}20260101",
                d.definition()
            ),
            1,
        )];
        for (n, (name, orders)) in patients.iter().enumerate() {
            records.push((
                format!("P{f}{}{f}{f}{f}{f}{}{f}Hélène{f}19500101", n + 1, join(name)),
                1,
            ));
            for (m, (test, results)) in orders.iter().enumerate() {
                records.push((format!("OBR{f}{}{f}{f}{f}{}", m + 1, join(test)), 3));
                for (k, (identifier, value, comment)) in results.iter().enumerate() {
                    records.push((
                        format!(
                            "OBX{f}{}{f}ST{f}{}{f}{f}{}{f}u",
                            k + 1,
                            join(identifier),
                            escape(value, &d)
                        ),
                        3,
                    ));
                    if let Some(comment) = comment {
                        records.push((format!("C{f}1{f}L{f}{}", escape(comment, &d)), 1));
                    }
                }
            }
        }
        records.push((format!("L{f}1"), 1));

        // Where to cut records into A continuations (never the H record).
        let mut cuts: Vec<Vec<usize>> = vec![Vec::new(); records.len()];
        for (record, position) in &splits {
            let r = record.index(records.len());
            if r == 0 {
                continue;
            }
            let (text, _) = &records[r];
            let boundaries: Vec<usize> = text
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .collect();
            cuts[r].push(boundaries[position.index(boundaries.len())]);
        }
        let mut lines = Vec::new();
        for ((record, id_len), mut at) in records.iter().zip(cuts) {
            at.sort_unstable();
            lines.extend(cut(record, *id_len, &at, f));
        }
        let text = lines.join(end) + end;
        let (encoded, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&text);
        let bytes = if windows_1252 && !unmappable {
            encoded.into_owned()
        } else if bom {
            [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat()
        } else {
            text.into_bytes()
        };

        let file = sante::parse(&bytes).unwrap();
        prop_assert_eq!(file.delimiters(), d);
        let version = file.version().unwrap();
        prop_assert_eq!(version.number.as_str(), "H2.2");
        prop_assert_eq!(version.mode.as_deref(), Some("C"));
        prop_assert_eq!(file.header().unwrap().component_text(fields::H_SENDER, 2), "Labo");
        let parsed = file.patients();
        prop_assert_eq!(parsed.len(), patients.len());
        for (got, (name, orders)) in parsed.iter().zip(&patients) {
            for (i, part) in name.iter().enumerate() {
                prop_assert_eq!(&got.patient.component_text(fields::P_NAME, i + 1), part);
            }
            prop_assert_eq!(got.patient.field_text(7), "Hélène");
            prop_assert_eq!(got.patient.field_text(fields::P_BIRTH_DATE), "19500101");
            prop_assert_eq!(got.orders.len(), orders.len());
            for (got, (test, results)) in got.orders.iter().zip(orders) {
                for (i, part) in test.iter().enumerate() {
                    prop_assert_eq!(&got.order.component_text(fields::OBR_TEST, i + 1), part);
                }
                prop_assert_eq!(got.results.len(), results.len());
                for (got, (identifier, value, comment)) in got.results.iter().zip(results) {
                    for (i, part) in identifier.iter().enumerate() {
                        prop_assert_eq!(
                            &got.result.component_text(fields::OBX_IDENTIFIER, i + 1),
                            part
                        );
                    }
                    prop_assert_eq!(&got.result.field_text(fields::OBX_VALUE), value);
                    prop_assert_eq!(got.result.field_text(fields::OBX_UNITS), "u");
                    let comments: Vec<String> = got
                        .comments
                        .iter()
                        .map(|c| c.field_text(fields::C_TEXT).into_owned())
                        .collect();
                    prop_assert_eq!(comments, comment.iter().cloned().collect::<Vec<_>>());
                }
            }
        }
        hprim::fuzz_sante(&bytes);
    }
}

fn number() -> impl Strategy<Value = String> {
    regex("-?[0-9]{1,3}([.,][0-9]{1,2})?")
}

fn is_soit(label: &str) -> bool {
    let lower = label.to_lowercase();
    lower.starts_with("soit") && !lower[4..].starts_with(char::is_alphanumeric)
}

/// A RES line's values: label, code, kind, value, unit, range (mode 0
/// none, 1 two fields, 2 "min-max" in one), flag, status, soit line,
/// comment.
#[derive(Debug, Clone)]
struct GenRes {
    label: String,
    code: String,
    kind: &'static str,
    value: String,
    unit: String,
    range: (u8, String, String),
    flag: &'static str,
    status: &'static str,
    soit: Option<(String, String)>,
    comment: Option<String>,
}

fn res() -> impl Strategy<Value = GenRes> {
    (
        regex("[A-Za-z][A-Za-z0-9 éè./()%]{0,15}").prop_filter("soit", |l| !is_soit(l)),
        regex("[A-Z0-9]{0,6}"),
        prop_oneof![Just(""), Just("N"), Just("A")],
        regex("[0-9a-zé<>*,. -]{0,8}"),
        regex("[a-zA-Zµ/%]{0,6}"),
        (0u8..3, number(), number()),
        prop_oneof![
            Just(""),
            Just("N"),
            Just("L"),
            Just("H"),
            Just("LL"),
            Just("HH")
        ],
        prop_oneof![Just(""), Just("F"), Just("P")],
        proptest::option::of((number(), regex("[a-zA-Zµ/]{1,6}"))),
        proptest::option::of(regex("[A-Za-z0-9 éè.,]{0,20}")),
    )
        .prop_map(
            |(label, code, kind, value, unit, range, flag, status, soit, comment)| GenRes {
                label,
                code,
                kind,
                value,
                unit,
                range,
                flag,
                status,
                soit,
                comment,
            },
        )
}

proptest! {
    #[test]
    fn generated_net_files_round_trip(
        header in proptest::collection::vec(regex("[A-Za-z0-9 éèÀ'.,/-]{0,20}"), 12),
        free_text in proptest::collection::vec(regex("[A-Za-z][A-Za-z0-9 éè:,.]{0,30}"), 0..4),
        results in proptest::collection::vec(res(), 0..8),
        end in terminator(),
        windows_1252 in any::<bool>(),
    ) {
        let mut lines: Vec<String> = header.clone();
        lines.extend(free_text.iter().cloned());
        lines.push("****LAB****".into());
        for r in &results {
            let (low, high) = match r.range.0 {
                0 => (String::new(), String::new()),
                1 => (r.range.1.clone(), r.range.2.clone()),
                _ => (format!("{}-{}", r.range.1, r.range.2), String::new()),
            };
            lines.push(format!(
                "RES|{}|{}|{}|{}|{}|{low}|{high}|{}|{}",
                r.label, r.code, r.kind, r.value, r.unit, r.flag, r.status
            ));
            if let Some((value, unit)) = &r.soit {
                lines.push(format!("RES|soit|{}|N|{value}|{unit}", r.code));
            }
            if let Some(comment) = &r.comment {
                lines.push(format!("TEX|{comment}"));
            }
        }
        lines.push("****FIN****".into());
        lines.push("****FINFICHIER****".into());
        let text = lines.join(end) + end;
        let (encoded, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&text);
        let bytes = if windows_1252 && !unmappable {
            encoded.into_owned()
        } else {
            text.into_bytes()
        };

        let file = net::parse(&bytes).unwrap();
        let got_header: Vec<&str> = file.header.lines().iter().map(|l| l.text.as_str()).collect();
        prop_assert_eq!(got_header, header.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(file.free_text(), free_text.join("\n"));
        prop_assert!(file.ended);
        prop_assert_eq!(file.blocks.len(), 1);
        let got = &file.blocks[0].results;
        prop_assert_eq!(got.len(), results.len());
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        for (got, r) in got.iter().zip(&results) {
            prop_assert_eq!(&got.label, r.label.trim());
            prop_assert_eq!(&got.code, &some(&r.code));
            prop_assert_eq!(&got.kind, &some(r.kind));
            prop_assert_eq!(&got.value, &r.value);
            prop_assert_eq!(&got.unit, &some(&r.unit));
            let (low, high) = if r.range.0 == 0 {
                (None, None)
            } else {
                (Some(r.range.1.clone()), Some(r.range.2.clone()))
            };
            prop_assert_eq!(&got.low, &low);
            prop_assert_eq!(&got.high, &high);
            prop_assert_eq!(&got.flag, &some(r.flag));
            prop_assert_eq!(&got.status, &some(r.status));
            let second = got.second.as_ref().map(|m| (m.value.clone(), m.unit.clone().unwrap_or_default()));
            prop_assert_eq!(second, r.soit.clone());
            let comments: Vec<String> = got.comments.iter().map(|c| c.text.clone()).collect();
            let expected: Vec<String> = r.comment.iter().map(|c| c.trim_end().to_string()).collect();
            prop_assert_eq!(comments, expected);
        }
        hprim::fuzz_net(&bytes);
    }
}
