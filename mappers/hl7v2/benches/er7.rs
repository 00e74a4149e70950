//! ER7 parse and serialise throughput over the shared public corpus
//! (`../shared/corpus`; a synthetic ORU when it is absent).
//!
//!     cargo bench -p hl7v2 --bench er7

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hl7v2::{build_ack_for_bench, split_messages, Message};

fn corpus_messages(subdir: &str) -> Vec<Vec<u8>> {
    let root = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus"
    ))
    .join(subdir);
    let mut out = Vec::new();
    collect(&root, &mut out);
    if out.is_empty() {
        let mut oru = b"MSH|^~\\&|LAB|SITE|GW|GW|20260101||ORU^R01^ORU_R01|C1|P|2.5\rPID|1||42^^^SITE^PI||DOE^JOHN\rOBR|1\r".to_vec();
        for n in 1..=10 {
            oru.extend_from_slice(
                format!("OBX|{n}|NM|2345-7^Glucose^LN||1.50|g/L|0.70-1.10|H|||F\r").as_bytes(),
            );
        }
        out.push(oru);
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<Vec<u8>>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("hl7") || e.eq_ignore_ascii_case("er7"))
        {
            if let Ok(bytes) = std::fs::read(&path) {
                for message in split_messages(&bytes) {
                    if Message::parse(message).is_ok() {
                        out.push(message.to_vec());
                    }
                }
            }
        }
    }
}

fn benches(c: &mut Criterion) {
    // Small US messages (Microsoft FHIR-Converter samples, ~4 kB each).
    let small = corpus_messages("microsoft-fhir-converter");
    let mut group = c.benchmark_group("er7_small");
    group.throughput(Throughput::Bytes(
        small.iter().map(Vec::len).sum::<usize>() as u64
    ));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for message in &small {
                black_box(
                    Message::parse(black_box(message))
                        .map(|m| m.segment_count())
                        .ok(),
                );
            }
        })
    });
    group.finish();

    let messages = corpus_messages("");
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("er7");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("parse_corpus", |b| {
        b.iter(|| {
            for message in &messages {
                black_box(
                    Message::parse(black_box(message))
                        .map(|m| m.segment_count())
                        .ok(),
                );
            }
        })
    });
    group.bench_function("parse_and_read_header_and_obx", |b| {
        b.iter(|| {
            for message in &messages {
                if let Ok(m) = Message::parse(message) {
                    black_box(m.control_id());
                    black_box(m.get("PID-3.1"));
                    black_box(m.get("PID-5.1"));
                    for obx in m.segments_named("OBX") {
                        black_box(obx.field(5).map(|f| m.decode(f.raw)));
                    }
                }
            }
        })
    });
    group.bench_function("serialise_corpus", |b| {
        let parsed: Vec<Message<'_>> = messages
            .iter()
            .filter_map(|m| Message::parse(m).ok())
            .collect();
        b.iter(|| {
            let mut total = 0;
            for message in &parsed {
                total += black_box(message.as_bytes().to_vec()).len();
            }
            total
        })
    });
    group.finish();
    let mut acks = c.benchmark_group("ack");
    acks.throughput(Throughput::Elements(messages.len() as u64));
    acks.bench_function("build_ack_corpus", |b| {
        let parsed: Vec<Message<'_>> = messages
            .iter()
            .filter_map(|m| Message::parse(m).ok())
            .collect();
        b.iter(|| {
            for message in &parsed {
                black_box(build_ack_for_bench(message));
            }
        })
    });
    acks.finish();
}

criterion_group!(er7, benches);
criterion_main!(er7);
