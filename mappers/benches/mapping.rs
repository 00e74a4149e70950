//! HL7 v2 to FHIR R4 conversion throughput per core: parse, map with the
//! built-in mappers and write the transaction Bundle JSON, for a PAM-FR
//! ADT^A01 with INS and for an ORU^R01 with 10 OBX.
//!
//!     cargo bench -p mappers --bench mapping

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mappers::hl7v2::Message;
use mappers::hl7v2_fhir::{builtin_registry, BuiltinConfig};
use mappers::mapping::{MappingContext, SiteSettings, SourceMessage};

// The `passerelle` binary's allocator, so that the figures are the gateway's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ADT_A01: &str = "MSH|^~\\&|GAM|CHU-X|DPI|CHU-X|20240306111154||ADT^A01^ADT_A01|3975|P|2.5^FRA^2.11|||||FRA|UNICODE UTF-8|FR||2.11^IHE_FRANCE-2.11-PAM\rEVN||20240306111154||||20240306110000|\rPID|1||000003^^^CHU-X&000897406&N^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS^^20101207||PAT-TROIS^DOMINIQUE^DOMINIQUE^^^^L||19790328|F|||28 Av de Breteuil^^PARIS^^75007^FRA^H^^^^^^^~^^^^^^BDL^^63220|||||S||24000006^^^CHU-X&000897406&M^AN|||||||1|||||N||VALI|20240306111153||||||\rPD1||U||||||||||N|||||||||\rPV1|1|I|^^^CHU-X&000897406&M^O^^|R|||801234567897^Reault^Pierre^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS|||||||||N|801234567897^Reault^Pierre^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS||000897406^^^CHU-X&000897406&M^VN^^20210409|||N||||||||||||||4||||||||20240306110000|||||||V|\rZBE|312^CHU-X^000897406|20240306110000||INSERT|N||Chir V^^^^^CHU-X&000897406&N^UF^^^6268|Chir V^^^^^CHU-X&000897406&N^UF^^^6268|HMS\rZFA|ACTIF|20240306111154|||||||INO|20240306111154|IC|20240306111154\rZFD|||Y|N|INSI|20211201||\r";

/// A typical lab result: one OBR with 10 numeric OBX (values, units,
/// reference ranges, flags).
fn oru_r01() -> String {
    let mut oru = String::from("MSH|^~\\&|LAB|BIOLAB|DPI|CHU-X|20240306111154+0100||ORU^R01^ORU_R01|L0001|P|2.5|||||FRA|8859/1\rPID|1||000003^^^CHU-X&000897406&N^PI||PAT-TROIS^DOMINIQUE^^^^^L||19790328|F\rPV1|1|O\rORC|RE|P123|F456\rOBR|1|P123|F456|24326-1^Electrolytes^LN|||20240306080000|||||||||801234567897^Reault^Pierre||||||20240306110000||CH|F\r");
    let tests = [
        ("2951-2", "Sodium", "mmol/L", "140.0", "135.0-145.0", "N"),
        ("2823-3", "Potassium", "mmol/L", "4.10", "3.50-5.00", "N"),
        ("2075-0", "Chloride", "mmol/L", "101", "98-107", "N"),
        ("2028-9", "CO2", "mmol/L", "24", "22-29", "N"),
        ("3094-0", "Urea", "mmol/L", "5.4", "2.5-7.5", "N"),
        ("2160-0", "Creatinine", "umol/L", "88", "60-110", "N"),
        ("2345-7", "Glucose", "g/L", "1.50", "0.70-1.10", "H"),
        ("17861-6", "Calcium", "mmol/L", "2.35", "2.15-2.55", "N"),
        ("2777-1", "Phosphate", "mmol/L", "1.10", "0.80-1.45", "N"),
        ("19123-9", "Magnesium", "mmol/L", "0.85", "0.70-1.00", "N"),
    ];
    for (index, (code, name, unit, value, range, flag)) in tests.iter().enumerate() {
        oru.push_str(&format!(
            "OBX|{n}|NM|{code}^{name}^LN||{value}|{unit}^^UCUM|{range}|{flag}|||F|||20240306080000\r",
            n = index + 1
        ));
    }
    oru
}

fn bench_mapping(c: &mut Criterion) {
    let registry = builtin_registry(&BuiltinConfig::default());
    let site = SiteSettings::default();
    let context = MappingContext {
        site: &site,
        now: "2026-11-23T10:00:00Z",
    };
    let oru = oru_r01();
    let mut group = c.benchmark_group("hl7v2_to_fhir");
    group.throughput(Throughput::Elements(1));
    for (name, raw) in [
        ("adt_a01_pam_fr", ADT_A01),
        ("oru_r01_10_obx", oru.as_str()),
    ] {
        // Fail loudly rather than time an error path.
        let message = Message::parse(raw.as_bytes()).expect("sample parses");
        registry
            .map(SourceMessage::Hl7v2(&message), &context)
            .expect("sample maps");
        group.bench_function(name, |b| {
            b.iter(|| {
                let message = Message::parse(black_box(raw.as_bytes())).expect("parses");
                let bundle = registry
                    .map(SourceMessage::Hl7v2(&message), &context)
                    .expect("maps");
                black_box(bundle.bundle.len())
            })
        });
    }
    group.finish();
    fhir_sdk_floor(c, &registry, &context, &oru);
    completeness_check(c, &registry, &context, &oru);
}

/// The completeness check script output and Bundle edits go through
/// (`fhir_check`, compiled unoptimised for build time: see the workspace
/// Cargo.toml), on the ORU's mapped Bundle.
fn completeness_check(
    c: &mut Criterion,
    registry: &mappers::mapping::MapperRegistry,
    context: &MappingContext<'_>,
    oru: &str,
) {
    let message = Message::parse(oru.as_bytes()).expect("sample parses");
    let mapped = registry
        .map(SourceMessage::Hl7v2(&message), context)
        .expect("sample maps");
    mappers::fhir::check_resource_json(&mapped.bundle).expect("the Bundle passes");
    let mut group = c.benchmark_group("fhir_check");
    group.throughput(Throughput::Elements(1));
    group.bench_function("oru_r01_10_obx_bundle", |b| {
        b.iter(|| mappers::fhir::check_resource_json(black_box(&mapped.bundle)).is_ok())
    });
    group.finish();
}

/// What fhir-sdk's types cost on their own for the ORU's Bundle entries,
/// whatever the mapping does: writing them with fhir-sdk's serde code and
/// serde_json (no exact decimals) and with Passerelle's own writer (a
/// String per entry), and cloning then dropping them (the
/// allocations of building the boxed elements, and freeing them). These
/// bound from below what `oru_r01_10_obx` can reach while the mappers build
/// fhir-sdk resources.
fn fhir_sdk_floor(
    c: &mut Criterion,
    registry: &mappers::mapping::MapperRegistry,
    context: &MappingContext<'_>,
    oru: &str,
) {
    use mappers::fhir::r4b::resources::{Bundle, BundleEntry};
    let message = Message::parse(oru.as_bytes()).expect("sample parses");
    let text = registry
        .map(SourceMessage::Hl7v2(&message), context)
        .expect("sample maps")
        .bundle;
    let bundle: Bundle = serde_json::from_str(&text).expect("the Bundle reads back");
    let entries: Vec<BundleEntry> = bundle.entry.iter().flatten().cloned().collect();
    let mut group = c.benchmark_group("fhir_sdk_floor_oru_r01_10_obx");
    group.throughput(Throughput::Elements(1));
    group.bench_function("serde_write_entries", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(32768);
            for entry in black_box(&entries) {
                serde_json::to_writer(&mut out, entry).expect("writes");
            }
            out.len()
        })
    });
    group.bench_function("passerelle_write_entries", |b| {
        let none = mappers::fhir::ExactDecimals::default();
        b.iter(|| {
            let mut length = 0;
            for entry in black_box(&entries) {
                length += mappers::fhir::to_json(entry, &none).expect("writes").len();
            }
            length
        })
    });
    group.bench_function("clone_and_drop_entries", |b| {
        b.iter(|| black_box(black_box(&entries).clone()).len())
    });
    group.finish();
}

criterion_group!(benches, bench_mapping);
criterion_main!(benches);
