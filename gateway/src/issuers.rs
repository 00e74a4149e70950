//! The token issuers of `[[security.issuers]]` as the running gateway
//! keeps them: each issuer's JWKS, read from its file (again when the file
//! changes) or fetched from its URL (at start, then every
//! `jwks_refresh_secs`, and every 30 s while a fetch fails), handed to the
//! client directory whenever a key set changes.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use passerelle_config::{Config, IssuerConfig};
use passerelle_security::jwt::{Issuer, Jwks};
use passerelle_security::{ClientDirectory, Scopes};

/// How long a failed fetch waits before the next try.
const RETRY_FAILED_FETCH: Duration = Duration::from_secs(30);
/// How long a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum IssuerSetupError {
    #[error("security.issuers[{index}] (`{name}`): {message}")]
    Invalid {
        index: usize,
        name: String,
        message: String,
    },
}

/// One issuer and the keys last read for it.
pub struct IssuerKeys {
    config: IssuerConfig,
    scopes: Scopes,
    keys: Option<Jwks>,
    file_stamp: Option<SystemTime>,
    next_fetch: Instant,
}

/// Checks every issuer's settings; keys are read by [`refresh`].
pub fn configured(config: &Config) -> Result<Vec<IssuerKeys>, IssuerSetupError> {
    config
        .security
        .issuers
        .iter()
        .enumerate()
        .map(|(index, issuer)| {
            let scopes = Scopes::parse(&issuer.scopes).map_err(|e| IssuerSetupError::Invalid {
                index,
                name: issuer.name.clone(),
                message: e.to_string(),
            })?;
            Ok(IssuerKeys {
                config: issuer.clone(),
                scopes,
                keys: None,
                file_stamp: None,
                next_fetch: Instant::now(),
            })
        })
        .collect()
}

/// Reads what changed (files) or is due (URLs); whether any key set
/// changed. A key set that does not load keeps the previous one.
pub async fn refresh(issuers: &mut [IssuerKeys]) -> bool {
    let mut changed = false;
    for issuer in issuers.iter_mut() {
        let name = issuer.config.name.clone();
        let loaded = if let Some(file) = &issuer.config.jwks_file {
            let stamp = std::fs::metadata(file).and_then(|m| m.modified()).ok();
            if stamp.is_some() && stamp == issuer.file_stamp {
                continue;
            }
            issuer.file_stamp = stamp;
            std::fs::read_to_string(file)
                .map_err(|e| format!("{}: {e}", file.display()))
                .and_then(|text| Jwks::parse(&text).map_err(|e| e.to_string()))
        } else if let Some(url) = &issuer.config.jwks_url {
            if Instant::now() < issuer.next_fetch {
                continue;
            }
            let fetched = passerelle_fhir_client::fetch_document(
                url,
                issuer.config.ca_file.as_deref(),
                FETCH_TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let text = String::from_utf8_lossy(&bytes);
                Jwks::parse(&text).map_err(|e| e.to_string())
            });
            issuer.next_fetch = Instant::now()
                + if fetched.is_ok() {
                    Duration::from_secs(issuer.config.jwks_refresh_secs.max(10))
                } else {
                    RETRY_FAILED_FETCH
                };
            fetched
        } else {
            continue;
        };
        match loaded {
            Ok(keys) => {
                tracing::info!(issuer = %name, "issuer keys loaded");
                issuer.keys = Some(keys);
                changed = true;
            }
            Err(error) => {
                tracing::error!(issuer = %name, error = %error, "issuer keys not loaded; its previous keys (if any) stay");
            }
        }
    }
    changed
}

/// The issuers whose keys are known, as the directory takes them.
pub fn install(issuers: &[IssuerKeys], directory: &Arc<ClientDirectory>) {
    directory.set_issuers(
        issuers
            .iter()
            .filter_map(|issuer| {
                Some(Issuer {
                    name: issuer.config.name.clone(),
                    issuer: issuer.config.issuer.clone(),
                    audience: issuer.config.audience.clone(),
                    scopes: issuer.scopes.clone(),
                    networks: issuer.config.networks.clone(),
                    keys: issuer.keys.clone()?,
                })
            })
            .collect(),
    );
}
