//! Mapping in the gateway: the [`MappingService`] every transport and the
//! `convert` command share. It owns the site's settings (identifier
//! systems, code maps, time zone), the built-in mappers, and the script
//! mappers loaded from `mapping.scripts_dir`, which a background task
//! watches and recompiles on change. The registry in force (built-ins with
//! script overrides) is swapped atomically, so a message is always mapped
//! by one consistent set of mappers.
//!
//! The pure mapping lives in `mappers`; this module adds what needs files,
//! time and telemetry.

mod scripts;

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use mappers::hl7v2::{split_messages, Message, ParseError};
use mappers::hl7v2_fhir::builtin_registry;
use mappers::hl7v2_fhir::BuiltinConfig;
use mappers::mapping::{
    MappedBundle, Mapper, MapperRegistry, MappingContext, MappingError, MappingErrorKind,
    RegistryError, SiteSettings, SourceMessage,
};
use mappers::script::ScriptError;
use tokio_util::sync::CancellationToken;

use passerelle_config::{CodeMapError, MappingConfig};
use passerelle_telemetry::events::{
    MappersSwapped, MessageMapped, ScriptLoaded, ScriptRefused, ScriptRemoved, ScriptsDirUnreadable,
};
use passerelle_telemetry::metrics::Metrics;
use scripts::{ScriptDir, ScriptEvent};

pub use scripts::selector_text;

/// The name HPRIM files' mapping goes by (a route may name it, metrics
/// and errors do).
pub const HPRIM_MAPPER: &str = "hprim";
/// The name CDA R2 documents' mapping goes by.
pub const CDA_MAPPER: &str = "cda";
/// The name the CI-SIS CR-BIO writer goes by (metrics).
pub const CR_BIO_WRITER: &str = "cr-bio";

/// The built-in mapper of a whole-file format (`hprim`, `cda`), which has
/// no HL7 v2 message to choose a mapper by.
fn file_mapper(format: &str) -> Option<&'static str> {
    match format {
        "hprim" => Some(HPRIM_MAPPER),
        "cda" => Some(CDA_MAPPER),
        _ => None,
    }
}

/// The shortest poll interval honoured, so that a zero in the
/// configuration does not spin.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Why the mapping service could not start (the configuration is checked
/// for the same faults when it is loaded, so these mean the files changed
/// in between).
#[derive(Debug, thiserror::Error)]
pub enum MappingSetupError {
    #[error("mapping.timezone: {0}")]
    TimeZone(String),
    #[error(transparent)]
    CodeMap(#[from] CodeMapError),
    #[error("mappers `{}` and `{}` both claim {}", .0.first, .0.second, selector_text(&.0.selector))]
    Conflict(RegistryError),
}

/// Mappers compiled into a custom build, given the built-in registry (to
/// call or adjust) and returning the mappers that override it.
pub type Extensions<'a> = dyn FnOnce(Arc<MapperRegistry>) -> Vec<Arc<dyn Mapper>> + 'a;

/// The layers under the scripts: the built-in mappers `config` enables,
/// overridden by `extensions` (Rust mappers of a custom build) for the
/// selectors they claim. Two extensions claiming one selector is an error.
pub fn base_registry(
    config: &BuiltinConfig,
    extensions: Box<Extensions<'_>>,
) -> Result<MapperRegistry, MappingSetupError> {
    let builtins = builtin_registry(config);
    let extra = extensions(Arc::new(builtins.clone()));
    let mut registry = builtins;
    for mapper in extra {
        registry
            .register_override(mapper)
            .map_err(MappingSetupError::Conflict)?;
    }
    Ok(registry)
}

/// Why one message could not be converted. `offset` is the byte offset,
/// in the input given to [`MappingService::convert`], of the segment the
/// error is about (the message's MSH when no segment is named).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{}unreadable HL7 v2 message: {error}", prefix(self.location()))]
    Unreadable { error: ParseError, offset: usize },
    #[error("{error}")]
    Mapping { error: MappingError, offset: usize },
}

fn prefix(location: Option<String>) -> String {
    location.map(|l| format!("{l}: ")).unwrap_or_default()
}

impl ConvertError {
    pub fn offset(&self) -> usize {
        match self {
            ConvertError::Unreadable { offset, .. } | ConvertError::Mapping { offset, .. } => {
                *offset
            }
        }
    }

    /// The 1-based line of the input the error is about.
    pub fn line_in(&self, input: &[u8]) -> usize {
        line_at(input, self.offset())
    }

    /// Where in the message: `PID-3`, `OBX(3)-5`, `PID`, or nothing.
    pub fn location(&self) -> Option<String> {
        match self {
            ConvertError::Unreadable { error, .. } => match (error.segment, error.field) {
                (Some(segment), Some(field)) => Some(format!("{segment}-{field}")),
                (Some(segment), None) => Some(segment.to_string()),
                _ => None,
            },
            ConvertError::Mapping { error, .. } => {
                let segment = error.segment.as_deref()?;
                let segment = if error.occurrence > 1 {
                    format!("{segment}({})", error.occurrence)
                } else {
                    segment.to_string()
                };
                Some(match error.field {
                    Some(field) => format!("{segment}-{field}"),
                    None => segment,
                })
            }
        }
    }

    /// The error text without its location prefix.
    pub fn detail(&self) -> String {
        match self {
            ConvertError::Unreadable { error, .. } => {
                format!("unreadable HL7 v2 message: {error}")
            }
            ConvertError::Mapping { error, .. } => error.detail.clone(),
        }
    }

    /// The metrics label of the failure.
    fn outcome(&self) -> &'static str {
        match self {
            ConvertError::Unreadable { .. } => "unreadable",
            ConvertError::Mapping { error, .. } => match error.kind {
                MappingErrorKind::RequiredFieldMissing => "required",
                MappingErrorKind::InvalidValue => "invalid",
                MappingErrorKind::Unsupported => "unsupported",
                MappingErrorKind::Internal => "internal",
            },
        }
    }
}

/// The 1-based line `offset` is on, counting CR, LF and CRLF as one line
/// end each, as the ER7 parser does.
pub fn line_at(input: &[u8], offset: usize) -> usize {
    let before = input.get(..offset).unwrap_or(input);
    let mut line = 1;
    let mut previous = 0u8;
    for &byte in before {
        if byte == b'\r' || (byte == b'\n' && previous != b'\r') {
            line += 1;
        }
        previous = byte;
    }
    line
}

/// Where `inner`, a sub-slice of `outer`, starts in it (0 when it is not
/// one).
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    let start = outer.as_ptr() as usize;
    let at = inner.as_ptr() as usize;
    if at >= start && at <= start + outer.len() {
        at - start
    } else {
        0
    }
}

/// Mapping for the whole gateway; clones share everything.
#[derive(Clone)]
pub struct MappingService {
    inner: Arc<Inner>,
}

struct Inner {
    site: SiteSettings,
    /// The HPRIM and CDA mappers' settings: the ORU mapper's (code map,
    /// category), lab results being lab results whatever their format.
    lab_results: mappers::hprim_fhir::OruConfig,
    /// The site's CI-SIS header settings; no CDA is written without them.
    cda: Option<mappers::cda_out::CdaSettings>,
    builtins: Arc<MapperRegistry>,
    current: RwLock<Arc<MapperRegistry>>,
    scripts: Option<Mutex<ScriptDir>>,
    poll_interval: Duration,
    metrics: Metrics,
}

impl MappingService {
    /// Builds the site settings and the built-in mappers, and loads the
    /// scripts once. A script that does not compile is refused and
    /// reported ([`MappingService::refused_scripts`]); it does not stop the
    /// service.
    pub fn new(config: &MappingConfig, metrics: Metrics) -> Result<Self, MappingSetupError> {
        Self::with_base(config, builtin_registry(&config.builtin), metrics)
    }

    /// As [`MappingService::new`], with `base` (see [`base_registry`]) in
    /// place of the built-in mappers `config` enables: scripts override it,
    /// and `adjust` scripts adjust its output.
    pub fn with_base(
        config: &MappingConfig,
        builtins: MapperRegistry,
        metrics: Metrics,
    ) -> Result<Self, MappingSetupError> {
        let site = SiteSettings {
            identifier_systems: config
                .identifier_systems
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            code_maps: config.load_code_maps()?,
            timezone: config
                .timezone
                .zone()
                .map_err(MappingSetupError::TimeZone)?,
        };
        let builtins = Arc::new(builtins);
        let scripts = config.scripts_dir.as_ref().map(|dir| {
            Mutex::new(ScriptDir::new(
                dir.clone(),
                config.script_limits.clone(),
                builtins.clone(),
            ))
        });
        let service = MappingService {
            inner: Arc::new(Inner {
                site,
                lab_results: config.builtin.oru.clone(),
                cda: config.cda.clone(),
                current: RwLock::new(builtins.clone()),
                builtins,
                scripts,
                poll_interval: Duration::from_millis(config.scripts_poll_interval_ms)
                    .max(MIN_POLL_INTERVAL),
                metrics,
            }),
        };
        service.reload_scripts();
        Ok(service)
    }

    /// The registry in force.
    pub fn registry(&self) -> Arc<MapperRegistry> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The mappers under the scripts (built-ins and extensions).
    pub fn builtins(&self) -> Arc<MapperRegistry> {
        self.inner.builtins.clone()
    }

    pub fn site(&self) -> &SiteSettings {
        &self.inner.site
    }

    /// Scripts whose current version is refused (with file and line), or
    /// left out because another script claims their message type.
    pub fn refused_scripts(&self) -> Vec<ScriptError> {
        match &self.inner.scripts {
            Some(scripts) => scripts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .refused(),
            None => Vec::new(),
        }
    }

    /// Checks the scripts directory once: recompiles what changed, drops
    /// what was removed, and swaps the registry when the set of scripts in
    /// force changed. Blocking (file reads, compilation).
    pub fn reload_scripts(&self) {
        let Some(scripts) = &self.inner.scripts else {
            return;
        };
        let metrics = &self.inner.metrics;
        let mut scripts = scripts.lock().unwrap_or_else(PoisonError::into_inner);
        let report = scripts.poll();
        for event in &report.events {
            match event {
                ScriptEvent::Loaded {
                    file,
                    sha256_prefix,
                    replaced,
                } => ScriptLoaded {
                    file,
                    sha256_prefix,
                    replaced: *replaced,
                }
                .emit(metrics),
                ScriptEvent::Refused {
                    error,
                    previous_kept,
                } => ScriptRefused {
                    file: &error.file,
                    line: error.line,
                    reason: &error.message,
                    previous_kept: *previous_kept,
                }
                .emit(metrics),
                ScriptEvent::Removed { file } => ScriptRemoved { file }.emit(metrics),
                ScriptEvent::DirUnreadable { dir, error } => {
                    ScriptsDirUnreadable { dir, error }.emit(metrics)
                }
            }
        }
        if !report.changed {
            return;
        }
        let rebuilt = scripts.rebuild();
        for error in &rebuilt.conflicts {
            ScriptRefused {
                file: &error.file,
                line: error.line,
                reason: &error.message,
                previous_kept: false,
            }
            .emit(metrics);
        }
        let mappers = rebuilt.registry.describe().len();
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(rebuilt.registry);
        MappersSwapped {
            scripts_loaded: rebuilt.scripts_loaded,
            mappers,
        }
        .emit(metrics);
    }

    /// Watches the scripts directory every `mapping.scripts_poll_interval_ms`
    /// until `shutdown`; returns at once when there is no scripts directory.
    pub async fn watch_scripts(self, shutdown: CancellationToken) {
        if self.inner.scripts.is_none() {
            return;
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.inner.poll_interval) => {}
                () = shutdown.cancelled() => return,
            }
            let service = self.clone();
            // Compiling is CPU work and reading is blocking I/O: neither
            // belongs on the async workers serving requests.
            if tokio::task::spawn_blocking(move || service.reload_scripts())
                .await
                .is_err()
            {
                tracing::error!("mapping script reload task failed; retrying at the next poll");
            }
        }
    }

    /// Converts every message in `input` (one message, several, or an
    /// FHS/BHS batch), in order. Input holding no MSH at all gives one
    /// `Unreadable` error. Blocking (mapping is CPU work).
    pub fn convert(&self, input: &[u8]) -> Vec<Result<MappedBundle, ConvertError>> {
        let registry = self.registry();
        let now = passerelle_storage::clock::now_fhir_datetime();
        let context = MappingContext {
            site: &self.inner.site,
            now: &now,
        };
        let mut messages = split_messages(input);
        if messages.is_empty() {
            messages.push(input);
        }
        messages
            .into_iter()
            .map(|message| self.convert_one(&registry, &context, input, message))
            .collect()
    }

    /// Maps one journaled message (`message_type` as the journal has it)
    /// for delivery, with the mapper named by a route or else the
    /// registry's choice; an HPRIM file or a CDA document with its
    /// built-in mapper, an HPRIM file's patients in one Bundle. Blocking
    /// (CPU work).
    pub fn map_stored(
        &self,
        message_type: &str,
        raw: &[u8],
        mapper: Option<&str>,
    ) -> Result<MappedBundle, ConvertError> {
        let registry = self.registry();
        let now = passerelle_storage::clock::now_fhir_datetime();
        let context = MappingContext {
            site: &self.inner.site,
            now: &now,
        };
        if let Some(builtin) = file_mapper(passerelle_config::message_format(message_type)) {
            return self.map_file(builtin, message_type, raw, mapper, &context);
        }
        let Some(named) = mapper else {
            return self.convert_one(&registry, &context, raw, raw);
        };
        let started = Instant::now();
        let message =
            Message::parse(raw).map_err(|error| ConvertError::Unreadable { error, offset: 0 })?;
        let result = match registry.named(named) {
            Some(found) => found.map(SourceMessage::Hl7v2(&message), &context),
            None => Err(mappers::mapping::MappingError::unsupported(format!(
                "no mapper named `{named}` is loaded"
            ))),
        };
        let result = result.map_err(|error| ConvertError::Mapping { error, offset: 0 });
        self.record(
            named,
            &message.control_id(),
            &result.as_ref().map(|_| ()),
            started,
        );
        result
    }

    /// A whole file (HPRIM, CDA) as the one Bundle delivered for it.
    fn map_file(
        &self,
        builtin: &'static str,
        message_type: &str,
        raw: &[u8],
        mapper: Option<&str>,
        context: &MappingContext<'_>,
    ) -> Result<MappedBundle, ConvertError> {
        let started = Instant::now();
        let mapping = |error| ConvertError::Mapping { error, offset: 0 };
        if let Some(named) = mapper.filter(|m| *m != builtin) {
            return Err(mapping(MappingError::unsupported(format!(
                "these files are mapped by the built-in `{builtin}` mapper, not `{named}`"
            ))));
        }
        let result = self
            .file_bundles(message_type, raw, context)
            .and_then(mappers::mapping::merge_bundles)
            .map_err(mapping);
        self.record(builtin, "", &result.as_ref().map(|_| ()), started);
        result
    }

    /// One Bundle per patient of an HPRIM file, or the one Bundle of a CDA
    /// document (`message_type` as the journal keeps them:
    /// [`passerelle_config::HPRIM_SANTE_MESSAGE_TYPE`],
    /// [`passerelle_config::HPRIM_NET_MESSAGE_TYPE`],
    /// [`passerelle_config::cda_message_type`]).
    fn file_bundles(
        &self,
        message_type: &str,
        raw: &[u8],
        context: &MappingContext<'_>,
    ) -> Result<Vec<MappedBundle>, MappingError> {
        let config = &self.inner.lab_results;
        if passerelle_config::message_format(message_type) == "cda" {
            return mappers::cda_fhir::map_cda(raw, config, context);
        }
        let content_type = if message_type == passerelle_config::HPRIM_NET_MESSAGE_TYPE {
            mappers::hprim_fhir::NET_CONTENT_TYPE
        } else {
            mappers::hprim_fhir::SANTE_CONTENT_TYPE
        };
        mappers::hprim_fhir::map_content_type(content_type, raw, config, context)
    }

    /// Converts a whole file (`convert --from hprim|hprim-net|cda`): one
    /// Bundle per patient of an HPRIM file, one for a CDA document.
    /// Blocking (CPU work).
    pub fn convert_file(
        &self,
        message_type: &str,
        input: &[u8],
    ) -> Result<Vec<MappedBundle>, ConvertError> {
        let started = Instant::now();
        let now = passerelle_storage::clock::now_fhir_datetime();
        let context = MappingContext {
            site: &self.inner.site,
            now: &now,
        };
        let builtin =
            file_mapper(passerelle_config::message_format(message_type)).unwrap_or(HPRIM_MAPPER);
        let result = self
            .file_bundles(message_type, input, &context)
            .map_err(|error| ConvertError::Mapping { error, offset: 0 });
        self.record(builtin, "", &result.as_ref().map(|_| ()), started);
        result
    }

    /// The CI-SIS document of a lab-result Bundle our ORU, HPRIM or CDA
    /// mappers wrote, with the site's `[mapping.cda]` settings: its CR-BIO
    /// (level 3, with its PDF copy), or a level-1 document when the report
    /// exists only as the laboratory's PDF (see
    /// [`mappers::cda_out::lab_report`]). What neither the Bundle nor the
    /// settings can fill is a mapping error naming the CDA element.
    /// Blocking (CPU work).
    pub fn lab_document(
        &self,
        bundle: &MappedBundle,
    ) -> Result<mappers::cda_out::CdaDocument, ConvertError> {
        let started = Instant::now();
        let result = match &self.inner.cda {
            Some(settings) => {
                let now = passerelle_storage::clock::now_fhir_datetime();
                let options = mappers::cda_out::DocumentOptions {
                    now: &now,
                    replaces: None,
                    pdf_copy: None,
                };
                mappers::cda_out::lab_report(&bundle.bundle, settings, &options)
            }
            None => Err(MappingError {
                kind: MappingErrorKind::Unsupported,
                segment: Some("custodian".to_string()),
                occurrence: 1,
                field: None,
                detail: "no [mapping.cda] settings: a CI-SIS document needs the site's \
                          custodian (FINESS), document id root and legal authenticator"
                    .to_string(),
            }),
        }
        .map_err(|error| ConvertError::Mapping { error, offset: 0 });
        self.record(CR_BIO_WRITER, "", &result.as_ref().map(|_| ()), started);
        result
    }

    fn convert_one(
        &self,
        registry: &MapperRegistry,
        context: &MappingContext<'_>,
        input: &[u8],
        bytes: &[u8],
    ) -> Result<MappedBundle, ConvertError> {
        let started = Instant::now();
        let message_offset = offset_in(input, bytes);
        let message = match Message::parse(bytes) {
            Ok(message) => message,
            Err(error) => {
                let error = ConvertError::Unreadable {
                    error,
                    offset: message_offset,
                };
                self.record("none", "", &Err(&error), started);
                return Err(error);
            }
        };
        let source = SourceMessage::Hl7v2(&message);
        let control_id = message.control_id();
        let (mapper, result) = match registry.find(&source) {
            Some(mapper) => (mapper.name().to_string(), mapper.map(source, context)),
            None => ("none".to_string(), registry.map(source, context)),
        };
        let result = result.map_err(|error| {
            let offset = error
                .segment
                .as_deref()
                .and_then(|name| message.segment(name, error.occurrence.max(1)))
                .map_or(message_offset, |segment| offset_in(input, segment.raw()));
            ConvertError::Mapping { error, offset }
        });
        self.record(&mapper, &control_id, &result.as_ref().map(|_| ()), started);
        result
    }

    fn record(
        &self,
        mapper: &str,
        control_id: &str,
        result: &Result<(), &ConvertError>,
        started: Instant,
    ) {
        let (outcome, location) = match result {
            Ok(()) => ("ok", None),
            Err(error) => (error.outcome(), error.location()),
        };
        MessageMapped {
            mapper,
            outcome,
            control_id,
            location: location.as_deref(),
            elapsed: started.elapsed(),
        }
        .emit(&self.inner.metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_cr_lf_and_crlf_once_each() {
        let input = b"MSH|a\rPID|b\nPV1|c\r\nOBX|d\r\rNTE|e";
        let at = |needle: &[u8]| {
            input
                .windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        assert_eq!(line_at(input, 0), 1);
        assert_eq!(line_at(input, at(b"PID")), 2);
        assert_eq!(line_at(input, at(b"PV1")), 3);
        assert_eq!(line_at(input, at(b"OBX")), 4);
        assert_eq!(line_at(input, at(b"NTE")), 6);
    }

    #[test]
    fn offsets_of_sub_slices() {
        let outer = b"0123456789";
        assert_eq!(offset_in(outer, &outer[4..]), 4);
        assert_eq!(offset_in(outer, &outer[10..]), 10);
        let elsewhere = vec![0u8; 4];
        assert_eq!(offset_in(outer, &elsewhere), 0);
    }

    fn service(config: &MappingConfig) -> MappingService {
        MappingService::new(config, Metrics::new("test").unwrap()).unwrap()
    }

    #[test]
    fn messages_without_a_mapper_are_unsupported_and_located_at_their_msh() {
        let service = service(&MappingConfig::default());
        let input = b"FHS|^~\\&\rMSH|^~\\&|A|B|C|D|20260101||ZZZ^Z01|1|P|2.5\rPID|1\rMSH|^~\\&|A|B|C|D|20260101||ZZZ^Z02|2|P|2.5\r";
        let results = service.convert(input);
        assert_eq!(results.len(), 2);
        let lines: Vec<usize> = results
            .iter()
            .map(|r| r.as_ref().unwrap_err().line_in(input))
            .collect();
        assert_eq!(lines, [2, 4]);
        match &results[0] {
            Err(ConvertError::Mapping { error, .. }) => {
                assert_eq!(error.kind, MappingErrorKind::Unsupported)
            }
            other => panic!("{other:?}"),
        }
    }

    /// Fails on the second OBX's fifth field, like a built-in mapper
    /// meeting a bad number.
    struct FailsOnObx;

    impl mappers::mapping::Mapper for FailsOnObx {
        fn name(&self) -> &str {
            "fails-on-obx"
        }
        fn selectors(&self) -> Vec<mappers::mapping::MessageSelector> {
            vec![mappers::mapping::MessageSelector::hl7v2("ORU^R01")]
        }
        fn map(
            &self,
            _: SourceMessage<'_, '_>,
            _: &MappingContext<'_>,
        ) -> Result<MappedBundle, MappingError> {
            Err(MappingError::at(
                MappingErrorKind::InvalidValue,
                "OBX",
                2,
                5,
                "not a number",
            ))
        }
    }

    #[test]
    fn extensions_override_builtins_and_may_not_clash() {
        let base = base_registry(
            &BuiltinConfig::default(),
            Box::new(|builtins: Arc<MapperRegistry>| {
                let _ = builtins.describe();
                vec![Arc::new(FailsOnObx) as Arc<dyn Mapper>]
            }),
        )
        .unwrap();
        let input = b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5\rOBX|1\rOBX|2\r";
        let message = Message::parse(input).unwrap();
        let found = base.find(&SourceMessage::Hl7v2(&message)).unwrap();
        assert_eq!(found.name(), "fails-on-obx");

        let error = base_registry(
            &BuiltinConfig::default(),
            Box::new(|_| {
                vec![
                    Arc::new(FailsOnObx) as Arc<dyn Mapper>,
                    Arc::new(FailsOnObx),
                ]
            }),
        )
        .err()
        .unwrap();
        assert_eq!(
            error.to_string(),
            "mappers `fails-on-obx` and `fails-on-obx` both claim HL7 v2 ORU^R01"
        );
    }

    #[test]
    fn located_errors_give_the_absolute_line_of_their_segment() {
        let mut builtins = MapperRegistry::default();
        builtins.register(Arc::new(FailsOnObx)).unwrap();
        let service = MappingService::with_base(
            &MappingConfig::default(),
            builtins,
            Metrics::new("test").unwrap(),
        )
        .unwrap();
        let input = b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5\r\nPID|1\r\nOBX|1|NM|GLU||5\r\nOBX|2|NM|K||x\r\n\
MSH|^~\\&|A|B|C|D|20260101||ORU^R01|2|P|2.5\nPID|1\nOBX|1|NM|GLU||5\nNTE|1||continued\nOBX|2|NM|K||x\n";
        let results = service.convert(input);
        let errors: Vec<(usize, String)> = results
            .iter()
            .map(|r| {
                let error = r.as_ref().unwrap_err();
                (error.line_in(input), error.to_string())
            })
            .collect();
        assert_eq!(
            errors,
            [
                (4, "OBX(2)-5: not a number".to_string()),
                (9, "OBX(2)-5: not a number".to_string())
            ]
        );
    }

    fn script(selector: &str, status: &str) -> String {
        format!(
            "const SELECTORS = [\"{selector}\"];\nfn map(msg, ctx) {{\n    #{{ resourceType: \"Bundle\", type: \"transaction\", entry: [#{{ fullUrl: \"urn:uuid:0b0d5d3e-8c1f-4d8a-9d6e-2f7d2e1f0a11\", resource: #{{ resourceType: \"Observation\", status: \"{status}\", code: #{{ text: \"t\" }} }}, request: #{{ method: \"POST\", url: \"Observation\" }} }}] }}\n}}\n"
        )
    }

    fn mapped_status(service: &MappingService) -> Option<String> {
        let input = b"MSH|^~\\&|A|B|C|D|20260101||ZPA^Z01|1|P|2.5\rPID|1\r";
        let bundle = service.convert(input).pop()?.ok()?.bundle;
        let value: serde_json::Value = serde_json::from_str(&bundle).ok()?;
        value["entry"][0]["resource"]["status"]
            .as_str()
            .map(str::to_string)
    }

    #[test]
    fn scripts_reload_keep_the_last_good_version_and_refuse_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("a.rhai", &script("ZPA^Z01", "preliminary"));
        write(
            "b.rhai",
            "const SELECTORS = [\"ZPB^Z01\"];\nfn map(msg, ctx) {\n  let = ;\n}\n",
        );
        write("notes.txt", "not a script");
        let config = MappingConfig {
            scripts_dir: Some(dir.path().to_path_buf()),
            ..MappingConfig::default()
        };
        let service = service(&config);
        assert_eq!(mapped_status(&service).as_deref(), Some("preliminary"));
        let refused = service.refused_scripts();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].file, "b.rhai");
        assert_eq!(refused[0].line, Some(3));

        // A broken edit: refused, the previous version serves on.
        write(
            "a.rhai",
            "const SELECTORS = [\"ZPA^Z01\"];\nfn map(msg, ctx) {\n",
        );
        service.reload_scripts();
        assert_eq!(mapped_status(&service).as_deref(), Some("preliminary"));
        assert!(service.refused_scripts().iter().any(|e| e.file == "a.rhai"));

        // Fixed; and b.rhai now compiles but claims a.rhai's message type.
        write("a.rhai", &script("ZPA^Z01", "final"));
        write("b.rhai", &script("ZPA^Z01", "amended"));
        service.reload_scripts();
        assert_eq!(mapped_status(&service).as_deref(), Some("final"));
        let refused = service.refused_scripts();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].file, "b.rhai");
        assert!(refused[0].message.contains("`a.rhai`"), "{refused:?}");
        assert!(refused[0].message.contains("ZPA^Z01"), "{refused:?}");

        // The first one goes: the second takes over.
        std::fs::remove_file(dir.path().join("a.rhai")).unwrap();
        service.reload_scripts();
        assert_eq!(mapped_status(&service).as_deref(), Some("amended"));
        assert!(service.refused_scripts().is_empty());
        std::fs::remove_file(dir.path().join("b.rhai")).unwrap();
        service.reload_scripts();
        assert_eq!(mapped_status(&service), None);
    }

    #[test]
    fn input_without_msh_is_unreadable() {
        let service = service(&MappingConfig::default());
        let results = service.convert(b"PID|1||42\r");
        assert_eq!(results.len(), 1);
        let error = results[0].as_ref().unwrap_err();
        assert!(matches!(error, ConvertError::Unreadable { .. }), "{error}");
        assert!(error.to_string().contains("unreadable"), "{error}");
    }

    #[test]
    fn mapping_error_locations() {
        let error = ConvertError::Mapping {
            error: MappingError::at(MappingErrorKind::InvalidValue, "OBX", 3, 5, "not a number"),
            offset: 0,
        };
        assert_eq!(error.location().as_deref(), Some("OBX(3)-5"));
        assert_eq!(error.to_string(), "OBX(3)-5: not a number");
        assert_eq!(error.detail(), "not a number");
    }
}
