//! The scripts directory as the gateway sees it: every `*.rhai` file, its
//! fingerprint (modification time, size, SHA-256 of its content), its last
//! version that compiled, and why its current version was refused if it
//! was. A poll compares the directory with what is known, recompiles only
//! what changed, and says whether the mapper registry must be rebuilt.
//!
//! A file that stops compiling keeps serving its previous compiled version:
//! a typo saved in an editor must not take a mapping out of service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mappers::mapping::{Mapper, MapperRegistry, MessageSelector, SourceFormat};
use mappers::script::{ScriptError, ScriptLimits, ScriptMapper};
use sha2::{Digest, Sha256};

/// Extension of script mapper files.
const EXTENSION: &str = "rhai";

/// A file modified this recently is read again even when its time and size
/// look unchanged: a second write within the file system's timestamp
/// granularity would otherwise go unnoticed.
const SETTLE: Duration = Duration::from_secs(2);

/// What is known of one script file.
struct ScriptFile {
    modified: Option<SystemTime>,
    size: u64,
    sha256: [u8; 32],
    /// The last version that compiled; it serves until a newer one compiles.
    compiled: Option<Arc<ScriptMapper>>,
    /// Why the current content was refused, when it was.
    refused: Option<ScriptError>,
    /// Why the compiled version could not join the registry (another
    /// script claims one of its selectors), when it could not.
    conflict: Option<ScriptError>,
}

/// Something a poll found, for telemetry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptEvent {
    Loaded {
        file: String,
        sha256_prefix: String,
        replaced: bool,
    },
    Refused {
        error: ScriptError,
        previous_kept: bool,
    },
    Removed {
        file: String,
    },
    DirUnreadable {
        dir: String,
        error: String,
    },
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct PollReport {
    pub events: Vec<ScriptEvent>,
    /// The set of compiled scripts changed: the registry must be rebuilt.
    pub changed: bool,
}

/// The registry built from the built-ins and the scripts in force.
pub struct Rebuilt {
    pub registry: MapperRegistry,
    pub scripts_loaded: usize,
    /// Scripts newly left out because another claims their selectors.
    pub conflicts: Vec<ScriptError>,
}

pub struct ScriptDir {
    dir: PathBuf,
    limits: ScriptLimits,
    builtins: Arc<MapperRegistry>,
    /// By file name, so iteration is in file name order.
    files: BTreeMap<String, ScriptFile>,
}

impl ScriptDir {
    pub fn new(dir: PathBuf, limits: ScriptLimits, builtins: Arc<MapperRegistry>) -> Self {
        Self {
            dir,
            limits,
            builtins,
            files: BTreeMap::new(),
        }
    }

    /// Compares the directory with what is known and recompiles what
    /// changed.
    pub fn poll(&mut self) -> PollReport {
        let mut report = PollReport::default();
        let listing = match list_scripts(&self.dir) {
            Ok(listing) => listing,
            Err(error) => {
                report.events.push(ScriptEvent::DirUnreadable {
                    dir: self.dir.display().to_string(),
                    error: error.to_string(),
                });
                return report;
            }
        };
        let gone: Vec<String> = self
            .files
            .keys()
            .filter(|name| !listing.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(file) = self.files.remove(&name) {
                report.changed |= file.compiled.is_some();
                report.events.push(ScriptEvent::Removed { file: name });
            }
        }
        for (name, path) in listing {
            self.poll_file(name, &path, &mut report);
        }
        report
    }

    fn poll_file(&mut self, name: String, path: &Path, report: &mut PollReport) {
        let Ok(metadata) = std::fs::metadata(path) else {
            // Removed between listing and reading: the next poll sees it gone.
            return;
        };
        let modified = metadata.modified().ok();
        let size = metadata.len();
        if let Some(known) = self.files.get(&name) {
            let settled = modified
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > SETTLE);
            if settled && known.modified == modified && known.size == size {
                return;
            }
        }
        let Ok(bytes) = std::fs::read(path) else {
            return;
        };
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(known) = self.files.get_mut(&name) {
            if known.sha256 == sha256 {
                known.modified = modified;
                known.size = size;
                return;
            }
        }
        let previous = self.files.remove(&name);
        let previous_compiled = previous.as_ref().and_then(|p| p.compiled.clone());
        let compiled = match std::str::from_utf8(&bytes) {
            Ok(source) => ScriptMapper::compile(&name, source, &self.limits, self.builtins.clone()),
            Err(error) => Err(ScriptError {
                file: name.clone(),
                line: None,
                message: format!("not UTF-8 text (byte {})", error.valid_up_to()),
            }),
        };
        let entry = match compiled {
            Ok(mapper) => {
                report.changed = true;
                report.events.push(ScriptEvent::Loaded {
                    file: name.clone(),
                    sha256_prefix: hex::encode(sha256.get(..6).unwrap_or(&[])),
                    replaced: previous_compiled.is_some(),
                });
                ScriptFile {
                    modified,
                    size,
                    sha256,
                    compiled: Some(Arc::new(mapper)),
                    refused: None,
                    conflict: None,
                }
            }
            Err(error) => {
                report.events.push(ScriptEvent::Refused {
                    error: error.clone(),
                    previous_kept: previous_compiled.is_some(),
                });
                ScriptFile {
                    modified,
                    size,
                    sha256,
                    compiled: previous_compiled,
                    refused: Some(error),
                    conflict: previous.and_then(|p| p.conflict),
                }
            }
        };
        self.files.insert(name, entry);
    }

    /// Builds the registry: the built-ins, then each compiled script in file
    /// name order overriding them. A script claiming a selector an earlier
    /// script claims is left out whole.
    pub fn rebuild(&mut self) -> Rebuilt {
        let mut registry = (*self.builtins).clone();
        let mut scripts_loaded = 0;
        let mut conflicts = Vec::new();
        let mut claimed: Vec<(MessageSelector, String)> = Vec::new();
        for (name, file) in &mut self.files {
            let Some(mapper) = file.compiled.clone() else {
                continue;
            };
            // A trial copy: a refused script must not leave some of its
            // selectors registered.
            let mut trial = registry.clone();
            let conflict = match trial.register_override(mapper.clone() as Arc<dyn Mapper>) {
                Ok(()) => None,
                Err(error) => {
                    let owner = claimed
                        .iter()
                        .find(|(selector, _)| *selector == error.selector)
                        .map_or(error.first.clone(), |(_, owner)| owner.clone());
                    Some(ScriptError {
                        file: name.clone(),
                        line: None,
                        message: format!(
                            "refused: `{owner}` already claims {}; one script per message type",
                            selector_text(&error.selector)
                        ),
                    })
                }
            };
            match conflict {
                None => {
                    registry = trial;
                    scripts_loaded += 1;
                    claimed.extend(mapper.selectors().into_iter().map(|s| (s, name.clone())));
                    file.conflict = None;
                }
                Some(error) => {
                    if file.conflict.as_ref() != Some(&error) {
                        conflicts.push(error.clone());
                    }
                    file.conflict = Some(error);
                }
            }
        }
        Rebuilt {
            registry,
            scripts_loaded,
            conflicts,
        }
    }

    /// Every script whose current content is refused, or which is left out
    /// for a selector conflict, in file name order.
    pub fn refused(&self) -> Vec<ScriptError> {
        self.files
            .values()
            .flat_map(|file| file.refused.iter().chain(file.conflict.iter()))
            .cloned()
            .collect()
    }
}

/// `ADT^A01`, `ADT^*` or `*`, as integrators write selectors.
pub fn selector_text(selector: &MessageSelector) -> String {
    let format = match selector.format {
        SourceFormat::Hl7v2 => "HL7 v2",
    };
    let pattern = match (&selector.message_type, &selector.trigger_event) {
        (None, None) => "*".to_string(),
        (Some(t), None) => format!("{t}^*"),
        (None, Some(e)) => format!("*^{e}"),
        (Some(t), Some(e)) => format!("{t}^{e}"),
    };
    format!("{format} {pattern}")
}

/// The `*.rhai` regular files in `dir`, by file name. Hidden files (editor
/// swap and backup files) are ignored.
fn list_scripts(dir: &Path) -> std::io::Result<BTreeMap<String, PathBuf>> {
    let mut scripts = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let is_script = path.extension().and_then(|e| e.to_str()) == Some(EXTENSION)
            && !name.starts_with('.')
            && entry
                .file_type()
                .is_ok_and(|t| t.is_file() || t.is_symlink());
        if is_script {
            scripts.insert(name.to_string(), path);
        }
    }
    Ok(scripts)
}
