//! `passerelle patients export` and `passerelle patients erase`: a
//! patient's rights of access and portability (GDPR articles 15 and 20)
//! and of erasure (article 17), over everything the gateway holds about
//! them. That is the repository's record of the person
//! (`passerelle_repository::patient_record`: every Patient record of
//! theirs, every version of their resources), the journal's messages
//! about them with their outbox rows (`passerelle_storage::patient_messages`),
//! and the audit records found under them. Both work on the store
//! directly, gateway running or not, and are recorded in the audit
//! trail (an export is a disclosure; an erasure is recorded in the very
//! transaction that makes it, so that one never happens without the
//! other).
//!
//! Messages are tied to the patient by their outbox rows' patient key,
//! which the built-in mappers derive from the patient's identifier
//! ([`patient_key`]); messages not mapped into the outbox (unrouted, not
//! mapped yet, failed) are mapped again here to learn their key, and one
//! that cannot be mapped is tied by the ID numbers of its PID-3.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cli_audit;
use passerelle_config::{Config, TargetKind};
use passerelle_fhir::exact_json;
use passerelle_pipeline::mapping::MappingService;
use passerelle_pipeline::routing::RouteTable;
use passerelle_repository::patient_record::{self, ErasedResources, PatientRecord};
use passerelle_repository::{summary, Repository, RepositoryError, StoredResource, Visibility};
use passerelle_security::audit::{roles, types, Action, Code, Entity, Outcome, PASSERELLE_SUBTYPE};
use passerelle_storage::audit::{self, AuditRecord};
use passerelle_storage::patient_messages::{self, ErasedMessages, MessageRecord, OpenDelivery};
use passerelle_storage::sql::Sql;
use passerelle_storage::{instant_from_ms, now_ms, Scrubbed, SharedStore, StorageError};

/// The media type of HL7 v2 messages in ER7 encoding.
const ER7: &str = "x-application/hl7-v2+er7";

/// How often an erasure waits for a message being mapped, or a Bundle
/// being stored in the repository, to finish (a fraction of a second
/// each, usually) before it counts them as pending.
const UNDER_WAY_TRIES: u32 = 40;
const UNDER_WAY_PAUSE: Duration = Duration::from_millis(250);

/// Messages without a patient key read at once to be mapped again.
const UNKEYED_PAGE: i64 = 200;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The patient's identifier, `SYSTEM|VALUE` (an INS:
    /// `urn:oid:1.2.250.1.213.1.4.10|279035121518989`).
    #[arg(long, value_name = "SYSTEM|VALUE")]
    pub identifier: String,
    /// The file to write (mode 0600; it must not exist). Standard output
    /// when absent.
    #[arg(long, value_name = "FILE")]
    pub to: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    /// The patient's identifier, `SYSTEM|VALUE`.
    #[arg(long, value_name = "SYSTEM|VALUE")]
    pub identifier: String,
    /// Erase even while deliveries of the patient's messages to other
    /// targets are pending: those deliveries are then never made.
    #[arg(long)]
    pub force: bool,
}

/// Why an export or an erasure did not happen (or not whole).
#[derive(Debug, thiserror::Error)]
pub enum RightsError {
    // Neither error repeats the identifier: stderr may end up in a log.
    #[error("--identifier must be SYSTEM|VALUE, both non-empty")]
    BadIdentifier,
    #[error("nothing is held about a patient with this identifier")]
    NothingHeld,
    #[error(
        "several Patients of the repository have this identifier: merge them (ADT A40) or \
         correct them before exporting or erasing"
    )]
    Ambiguous,
    #[error(
        "refused: deliveries of this patient's messages are not finished: {0}. Erase again once \
         they are delivered (`passerelle messages list --state pending`), or with --force: they \
         will then never be made"
    )]
    Pending(String),
    #[error("{0} exists already: an export never overwrites a file")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the audit trail cannot be written ({0}): nothing was exported")]
    AuditUnavailable(StorageError),
    #[error(transparent)]
    Repository(RepositoryError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<RepositoryError> for RightsError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::Ambiguous(_) => RightsError::Ambiguous,
            other => RightsError::Repository(other),
        }
    }
}

impl RightsError {
    /// 2 for what the command line got wrong, 1 otherwise.
    fn exit_code(&self) -> ExitCode {
        match self {
            RightsError::BadIdentifier => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// `passerelle patients export`.
pub fn run_export(config: &Config, service: &MappingService, args: &ExportArgs) -> ExitCode {
    match export(config, service, args) {
        Ok(said) => {
            eprintln!("{said}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("passerelle patients export: {error}");
            error.exit_code()
        }
    }
}

/// `passerelle patients erase`.
pub fn run_erase(config: &Config, service: &MappingService, args: &EraseArgs) -> ExitCode {
    match erase(config, service, args) {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("passerelle patients erase: {error}");
            error.exit_code()
        }
    }
}

/// `SYSTEM|VALUE`, both non-empty.
fn identifier(text: &str) -> Result<(String, String), RightsError> {
    match text.split_once('|') {
        Some((system, value)) if !system.is_empty() && !value.is_empty() => {
            Ok((system.to_string(), value.to_string()))
        }
        _ => Err(RightsError::BadIdentifier),
    }
}

/// The key delivery orders a patient's messages by, as the built-in
/// mappers make it from the patient's identifier
/// (`mappers::hl7v2_fhir::bundle::patient_key`, private to them): the
/// first 12 bytes of SHA-256 over `system|value`, in hex. The test
/// `keys_are_the_mappers_keys` holds the two together.
pub fn patient_key(system: &str, value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(system.as_bytes());
    hasher.update([b'|']);
    hasher.update(value.as_bytes());
    hex::encode(hasher.finalize().get(..12).unwrap_or(&[]))
}

/// The ID numbers (CX.1) of every PID-3 repetition of a message.
fn pid3_values(raw: &[u8]) -> BTreeSet<String> {
    let Ok(message) = mappers::hl7v2::Message::parse(raw) else {
        return BTreeSet::new();
    };
    let mut out = BTreeSet::new();
    for pid in message.segments_named("PID") {
        let Some(field) = pid.field(3) else {
            continue;
        };
        for repetition in field.repetitions() {
            if let Some(id) = repetition.component(1).filter(|id| !id.is_empty()) {
                out.insert(message.decode(id).into_owned());
            }
        }
    }
    out
}

/// The Patient with `identifier` (`system|value`), if the repository has
/// one.
fn patient_with(sql: &mut dyn Sql, identifier: &str) -> Result<Option<String>, RepositoryError> {
    match summary::patient_by_identifier(sql, identifier, &Visibility::Everything) {
        Ok(id) => Ok(Some(id)),
        Err(RepositoryError::NotFound(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// What the repository holds about the person with `identifier`, and the
/// identifiers their messages may be keyed by (that one, and every one
/// their Patient records carried).
fn person(
    sql: &mut dyn Sql,
    identifier: &(String, String),
) -> Result<(PatientRecord, BTreeSet<(String, String)>), RepositoryError> {
    let text = format!("{}|{}", identifier.0, identifier.1);
    let record = match patient_with(sql, &text)? {
        Some(id) => patient_record::find(sql, &id)?,
        None => PatientRecord::default(),
    };
    let mut identifiers = patient_record::identifiers(sql, &record)?;
    identifiers.insert(identifier.clone());
    Ok((record, identifiers))
}

fn keys_of(identifiers: &BTreeSet<(String, String)>) -> Vec<String> {
    identifiers
        .iter()
        .map(|(system, value)| patient_key(system, value))
        .collect()
}

/// The messages without outbox rows that concern the person: mapped
/// again (with the mapper their route names) to learn their patient key;
/// one that does not map is theirs when its PID-3 holds one of their ID
/// numbers.
fn unkeyed_messages(
    store: &SharedStore,
    service: &MappingService,
    routes: &RouteTable,
    identifiers: &BTreeSet<(String, String)>,
) -> Result<BTreeSet<i64>, StorageError> {
    let keys: BTreeSet<String> = keys_of(identifiers).into_iter().collect();
    let values: BTreeSet<&String> = identifiers.iter().map(|(_, value)| value).collect();
    let mut found = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = patient_messages::unkeyed(store.as_ref(), after, UNKEYED_PAGE)?;
        let Some(last) = page.last() else {
            return Ok(found);
        };
        after = last.journal_id;
        for message in &page {
            let mapper = routes
                .matching(message)
                .next()
                .and_then(|route| route.mapper.clone());
            let theirs =
                match service.map_stored(&message.message_type, &message.raw, mapper.as_deref()) {
                    Ok(mapped) => mapped.patient_key.is_some_and(|key| keys.contains(&key)),
                    Err(_) => pid3_values(&message.raw)
                        .iter()
                        .any(|value| values.contains(value)),
                };
            if theirs {
                found.insert(message.journal_id);
            }
        }
    }
}

/// The targets of kind `local` (the repository), the implicit one
/// included.
fn local_targets(config: &Config) -> BTreeSet<String> {
    RouteTable::from_config(config)
        .targets()
        .iter()
        .filter(|(_, target)| target.kind == TargetKind::Local)
        .map(|(name, _)| name.clone())
        .collect()
}

/// A JSON string literal.
fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// One AuditEvent of these commands (`crate::cli_audit`): who (the CLI
/// and the system user running it), what (`subtype` `export` or `erase`),
/// about which patients (logical ids only: a trail must not spread
/// identities), the outcome and counts.
fn audit_record(
    subtype: &'static str,
    display: &'static str,
    action: Action,
    outcome: Outcome,
    outcome_desc: &str,
    patients: &[String],
    counts: &[(&str, u64)],
) -> AuditRecord {
    let mut entity = Entity::new(
        Some(roles::DOMAIN_RESOURCE),
        format!("passerelle patients {subtype}"),
    );
    // Counts are kept, zeros included.
    entity.details = counts
        .iter()
        .map(|(name, count)| (name.to_string(), count.to_string()))
        .collect();
    cli_audit::record(
        types::PATIENT_RECORD,
        Code::new(PASSERELLE_SUBTYPE, subtype, display),
        action,
        outcome,
        outcome_desc,
        patients,
        entity,
    )
}

/// What an export holds.
struct Export {
    record: PatientRecord,
    versions: Vec<StoredResource>,
    messages: Vec<MessageRecord>,
    audit: Vec<String>,
}

fn export(
    config: &Config,
    service: &MappingService,
    args: &ExportArgs,
) -> Result<String, RightsError> {
    let identifier = identifier(&args.identifier)?;
    if let Some(path) = &args.to {
        if path.exists() {
            return Err(RightsError::Exists(path.clone()));
        }
    }
    let store = passerelle_storage::open(&config.storage)?;
    let routes = RouteTable::from_config(config);
    // Once for the identifiers the unkeyed messages are matched with,
    // then in one snapshot for what is exported.
    let repository = Repository::new(store.clone());
    let identifiers = repository.read(|sql| Ok(person(sql, &identifier)?.1))?;
    let unkeyed = unkeyed_messages(&store, service, &routes, &identifiers)?;
    let mut held = repository.read(|sql| {
        let (record, identifiers) = person(sql, &identifier)?;
        let mut ids = patient_messages::by_patient_keys(sql, &keys_of(&identifiers))?;
        ids.extend(&unkeyed);
        Ok(Export {
            versions: patient_record::versions(sql, &record)?,
            messages: patient_messages::records(sql, &ids)?,
            record,
            audit: Vec::new(),
        })
    })?;
    if held.record.patients.is_empty() && held.messages.is_empty() {
        return Err(RightsError::NothingHeld);
    }
    let patients = held.record.patient_references();
    let mut seen = BTreeSet::new();
    for patient in &patients {
        for event in audit::for_patient(store.as_ref(), patient, i64::MAX)? {
            // A record about two of the person's Patients is found twice.
            if seen.insert(event.clone()) {
                held.audit.push(event);
            }
        }
    }
    let now = now_ms();
    let bundle = exact_json::pretty_json(&bundle(&held, &config.http.base_url(), now));
    let own: BTreeSet<&(String, String)> = held.record.own.iter().collect();
    let own_versions = held
        .versions
        .iter()
        .filter(|v| own.contains(&(v.resource_type.clone(), v.id.clone())))
        .count();
    let counts = [
        ("patients", held.record.patients.len() as u64),
        ("resources", held.record.own.len() as u64),
        ("versions", own_versions as u64),
        ("shared resources", held.record.shared.len() as u64),
        ("messages", held.messages.len() as u64),
        (
            "deliveries",
            held.messages
                .iter()
                .map(|m| m.deliveries.len() as u64)
                .sum(),
        ),
        ("audit records", held.audit.len() as u64),
    ];
    // Recorded before anything leaves: a disclosure the trail does not
    // hold is not made (as the HTTP API refuses a read it cannot record).
    audit::append(
        store.as_ref(),
        &[audit_record(
            "export",
            "Export of a patient's data (GDPR articles 15 and 20)",
            Action::Read,
            Outcome::Success,
            "exported",
            &patients,
            &counts,
        )],
    )
    .map_err(RightsError::AuditUnavailable)?;
    match &args.to {
        Some(path) => write_private(path, bundle.as_bytes())?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(bundle.as_bytes())
                .and_then(|()| stdout.write_all(b"\n"))
                .and_then(|()| stdout.flush())
                .map_err(|source| RightsError::Io {
                    path: PathBuf::from("<stdout>"),
                    source,
                })?;
        }
    }
    let whom = if patients.is_empty() {
        "a patient with no record in the repository".to_string()
    } else {
        patients.join(", ")
    };
    let counted = counts
        .iter()
        .map(|(name, count)| format!("{count} {name}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(match &args.to {
        Some(path) => format!(
            "exported {whom} to {} (mode 0600): {counted}",
            path.display()
        ),
        None => format!("exported {whom}: {counted}"),
    })
}

/// Writes `bytes` to the new file `path`, readable by its owner only
/// from its creation: it holds health data.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RightsError> {
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            RightsError::Exists(path.to_path_buf())
        } else {
            RightsError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(io)
}

/// `meta.tag` codings of facts about a message or a delivery, in a code
/// system of Passerelle's (`urn:passerelle:…`); empty facts left out.
fn tags(facts: &[(&str, &str)]) -> Value {
    Value::Array(
        facts
            .iter()
            .filter(|(_, code)| !code.trim().is_empty())
            .map(|(system, code)| json!({"system": format!("urn:passerelle:{system}"), "code": code.trim()}))
            .collect(),
    )
}

/// The export, a FHIR R4 `collection` Bundle (JSON text): every version
/// of the person's resources and the shared ones they point at, as
/// stored (numbers as written); each message as a Binary holding its
/// bytes as received (base64: its charset may not be UTF-8, and its
/// segment separators are CRs); each outbox row's Bundle, tagged with its
/// target and state; the audit records.
fn bundle(held: &Export, base: &str, now: i64) -> String {
    let now = instant_from_ms(now);
    let new_id = passerelle_repository::transaction::new_id;
    let mut entries: Vec<String> = Vec::new();
    for version in &held.versions {
        entries.push(format!(
            "{{\"fullUrl\":{},\"resource\":{}}}",
            quoted(&format!(
                "{base}/fhir/{}/{}",
                version.resource_type, version.id
            )),
            version.text
        ));
    }
    for message in &held.messages {
        let id = format!("hl7v2-message-{}", message.id);
        let mut meta = json!({
            "tag": tags(&[
                ("message-type", &message.message_type),
                ("control-id", &message.control_id),
                ("sending-application", &message.sending_application),
                ("sending-facility", &message.sending_facility),
                ("transport", &message.transport),
                ("message-state", &message.state),
            ])
        });
        if !message.received_at.is_empty() {
            meta["lastUpdated"] = Value::from(message.received_at.as_str());
        }
        let binary = json!({
            "resourceType": "Binary",
            "id": id,
            "meta": meta,
            "contentType": ER7,
            "data": base64::engine::general_purpose::STANDARD.encode(&message.raw),
        });
        entries.push(format!(
            "{{\"fullUrl\":{},\"resource\":{binary}}}",
            quoted(&format!("urn:uuid:{}", new_id()))
        ));
        for delivery in &message.deliveries {
            let facts = [
                ("delivery-target", delivery.target.as_str()),
                ("delivery-state", delivery.state.as_str()),
                ("delivery-route", delivery.route.as_str()),
                ("hl7v2-message", id.as_str()),
            ];
            // The mapped Bundle is edited with its numbers carried as
            // their text, never as floats.
            let resource = match exact_json::parse(&delivery.bundle) {
                Ok(Value::Object(mut object)) => {
                    let meta = object
                        .entry("meta")
                        .or_insert_with(|| Value::Object(serde_json::Map::new()));
                    if let Value::Object(meta) = meta {
                        meta.insert("tag".into(), tags(&facts));
                    }
                    exact_json::to_string(&Value::Object(object))
                }
                // Not a JSON object (a mapper's output that only a target
                // could judge): kept as the bytes it is.
                _ => json!({
                    "resourceType": "Binary",
                    "meta": {"tag": tags(&facts)},
                    "contentType": "application/fhir+json",
                    "data": base64::engine::general_purpose::STANDARD.encode(delivery.bundle.as_bytes()),
                })
                .to_string(),
            };
            entries.push(format!(
                "{{\"fullUrl\":{},\"resource\":{resource}}}",
                quoted(&format!("urn:uuid:{}", new_id()))
            ));
        }
    }
    for event in &held.audit {
        entries.push(format!(
            "{{\"fullUrl\":{},\"resource\":{event}}}",
            quoted(&format!("urn:uuid:{}", new_id()))
        ));
    }
    let id = new_id();
    format!(
        "{{\"resourceType\":\"Bundle\",\"id\":\"{id}\",\"meta\":{{\"lastUpdated\":\"{now}\"}},\
         \"identifier\":{{\"system\":\"urn:ietf:rfc:3986\",\"value\":\"urn:uuid:{id}\"}},\
         \"type\":\"collection\",\"timestamp\":\"{now}\",\"entry\":[{}]}}",
        entries.join(",")
    )
}

/// What one erasure attempt came to.
enum Attempt {
    Erased {
        record: PatientRecord,
        resources: ErasedResources,
        messages: ErasedMessages,
        /// Targets other than the repository the messages had reached.
        recipients: BTreeMap<String, u64>,
    },
    /// A message of the patient's is being mapped, or stored in the
    /// repository, right now: tried again in a moment.
    UnderWay,
    Refused {
        patients: Vec<String>,
        pending: String,
    },
    NothingHeld,
}

/// `hospital (2 pending), archive (1 in flight)`.
fn pending_list(open: &[&OpenDelivery]) -> String {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for delivery in open {
        *counts
            .entry((delivery.target.as_str(), delivery.state.as_str()))
            .or_default() += 1;
    }
    counts
        .iter()
        .map(|((target, state), count)| format!("{target} ({count} {})", state.replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn erase(
    config: &Config,
    service: &MappingService,
    args: &EraseArgs,
) -> Result<String, RightsError> {
    let identifier = identifier(&args.identifier)?;
    let store = passerelle_storage::open(&config.storage)?;
    let routes = RouteTable::from_config(config);
    let local = local_targets(config);
    let repository = Repository::new(store.clone());
    let identifiers = repository.read(|sql| Ok(person(sql, &identifier)?.1))?;
    let unkeyed = unkeyed_messages(&store, service, &routes, &identifiers)?;

    let mut tries = 0;
    let attempt = loop {
        tries += 1;
        let last_try = tries >= UNDER_WAY_TRIES;
        let mut attempt: Option<Result<Attempt, RepositoryError>> = None;
        // Found again inside the erasing transaction: what a running
        // gateway stored since the first look goes too.
        store.sql_erase(&mut |sql| {
            let outcome = (|| -> Result<(Attempt, bool), RepositoryError> {
                let (record, identifiers) = person(sql, &identifier)?;
                let mut ids = patient_messages::by_patient_keys(sql, &keys_of(&identifiers))?;
                ids.extend(&unkeyed);
                if record.patients.is_empty() && ids.is_empty() {
                    return Ok((Attempt::NothingHeld, false));
                }
                let open = patient_messages::open_deliveries(sql, &ids)?;
                // A Bundle the local target has claimed would be stored
                // after the erasure and bring the patient back; a message
                // being mapped would get outbox rows: both take a moment.
                let under_way = !patient_messages::being_mapped(sql, &ids)?.is_empty()
                    || open
                        .iter()
                        .any(|d| local.contains(&d.target) && d.state == "in_flight");
                if under_way && !last_try {
                    return Ok((Attempt::UnderWay, false));
                }
                let blocking: Vec<&OpenDelivery> = open
                    .iter()
                    .filter(|d| !local.contains(&d.target) || d.state == "in_flight")
                    .collect();
                if !blocking.is_empty() && !args.force {
                    return Ok((
                        Attempt::Refused {
                            patients: record.patient_references(),
                            pending: pending_list(&blocking),
                        },
                        false,
                    ));
                }
                let mut recipients = patient_messages::delivered_targets(sql, &ids)?;
                recipients.retain(|target, _| !local.contains(target));
                let resources = patient_record::erase(sql, &record)?;
                let messages = patient_messages::delete(sql, &ids)?;
                // Recorded in the erasing transaction: both or neither.
                audit::append_in(
                    sql,
                    &[erase_record(
                        &record,
                        &resources,
                        &messages,
                        Outcome::Success,
                        "erased",
                        args.force,
                    )],
                )?;
                Ok((
                    Attempt::Erased {
                        record,
                        resources,
                        messages,
                        recipients,
                    },
                    true,
                ))
            })();
            let commit = matches!(outcome, Ok((_, true)));
            attempt = Some(outcome.map(|(attempt, _)| attempt));
            Ok(commit)
        })?;
        match attempt {
            Some(Ok(Attempt::UnderWay)) => std::thread::sleep(UNDER_WAY_PAUSE),
            Some(result) => break result?,
            None => return Err(StorageError::Inconsistent("the erasure did not run".into()).into()),
        }
    };
    let (record, resources, messages, recipients) = match attempt {
        Attempt::Erased {
            record,
            resources,
            messages,
            recipients,
        } => (record, resources, messages, recipients),
        Attempt::NothingHeld => return Err(RightsError::NothingHeld),
        Attempt::Refused { patients, pending } => {
            // The refusal is recorded too: someone asked to erase this
            // record and was told no.
            let refusal = audit_record(
                "erase",
                ERASE_DISPLAY,
                Action::Delete,
                Outcome::MinorFailure,
                "refused: deliveries to other targets are pending",
                &patients,
                &[],
            );
            if let Err(error) = audit::append(store.as_ref(), &[refusal]) {
                eprintln!("passerelle patients erase: the refusal could not be recorded: {error}");
            }
            return Err(RightsError::Pending(pending));
        }
        Attempt::UnderWay => {
            return Err(StorageError::Inconsistent("still under way".into()).into())
        }
    };
    let whom = if record.patients.is_empty() {
        "a patient with no record in the repository".to_string()
    } else {
        record.patient_references().join(", ")
    };
    let mut said = format!(
        "erased {whom}: {} Patient record(s), {} resource(s) with {} version(s), {} message(s) with \
         {} delivery row(s); recorded in the audit trail",
        resources.patients,
        resources.resources,
        resources.versions,
        messages.messages,
        messages.deliveries
    );
    if !recipients.is_empty() {
        // What left the gateway is the recipients' to erase; the
        // controller must tell them (GDPR article 19).
        let list = recipients
            .iter()
            .map(|(target, count)| format!("{target} ({count} message(s))"))
            .collect::<Vec<_>>()
            .join(", ");
        said.push_str(&format!(
            "\nthese messages had been delivered to {list}: ask them to erase the patient too (GDPR article 19)"
        ));
    }
    match store.scrub() {
        Ok(Scrubbed::Rewritten { files }) => {
            let files = files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ");
            said.push_str(&format!(
                "\nthe database was rewritten from its live rows and its WAL emptied: {files} hold none of the erased data"
            ));
        }
        Ok(Scrubbed::LeftToServer) => said.push_str(
            "\nPostgreSQL reclaims the deleted rows' space itself (vacuum); its WAL archive and \
             backups hold them until they expire (docs/security.md)",
        ),
        Err(error) => {
            return Err(RightsError::Io {
                path: config.storage.data_dir.clone(),
                source: std::io::Error::other(format!(
                    "erased, but the database file could not be rewritten ({error}): copies of \
                     the erased rows may remain in its free space; run the erasure again to retry"
                )),
            })
        }
    }
    Ok(said)
}

const ERASE_DISPLAY: &str = "Erasure of a patient's data (GDPR article 17)";

/// The audit record of an erasure: logical ids and counts, nothing else.
fn erase_record(
    record: &PatientRecord,
    resources: &ErasedResources,
    messages: &ErasedMessages,
    outcome: Outcome,
    description: &str,
    forced: bool,
) -> AuditRecord {
    audit_record(
        "erase",
        ERASE_DISPLAY,
        Action::Delete,
        outcome,
        &if forced {
            format!("{description} (--force: pending deliveries cancelled)")
        } else {
            description.to_string()
        },
        &record.patient_references(),
        &[
            ("patients", resources.patients),
            ("resources", resources.resources),
            ("versions", resources.versions),
            ("index rows", resources.index_rows),
            ("network memberships", resources.memberships),
            ("messages", messages.messages),
            ("deliveries", messages.deliveries),
            ("delivery attempts", messages.attempts),
            ("local copies", messages.local_bundles),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key computed here is the one the built-in mappers give a
    /// patient's messages: were the mappers' key to change, erasures
    /// would miss messages, and this test says so.
    #[test]
    fn keys_are_the_mappers_keys() {
        let config = Config::default();
        let metrics = passerelle_telemetry::metrics::Metrics::new("test").unwrap();
        let service = MappingService::new(&config.mapping, metrics).unwrap();
        let message = "MSH|^~\\&|ADMIT|SITE|GW|GW|20261122101500||ADT^A08^ADT_A01|K1|P|2.5\r\
                       EVN|A08|20261122101500\r\
                       PID|1||P7^^^SITE^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||TEST^N1||19800101|M\r";
        let mapped = service
            .map_stored("ADT^A08", message.as_bytes(), None)
            .unwrap();
        let bundle: Value = serde_json::from_str(&mapped.bundle).unwrap();
        let patient = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Patient")
            .unwrap();
        let first = &patient["resource"]["identifier"][0];
        assert_eq!(
            mapped.patient_key.unwrap(),
            patient_key(
                first["system"].as_str().unwrap(),
                first["value"].as_str().unwrap()
            )
        );
        assert_eq!(
            pid3_values(message.as_bytes()),
            BTreeSet::from(["P7".to_string(), "279035121518989".to_string()])
        );
    }

    #[test]
    fn identifiers_are_system_bar_value() {
        assert!(identifier("urn:oid:1.2|123").is_ok());
        for bad in ["123", "|123", "urn:x|", ""] {
            assert!(matches!(identifier(bad), Err(RightsError::BadIdentifier)));
        }
    }
}
