//! The admin API under `/admin` (JSON; loopback clients only, see
//! `http::layers::AdminAccessLayer`): messages by state, target and time,
//! one message's journey, replays, dead-letter retries, purges and outbox
//! depths. `passerelle messages ...` (`client`) wraps the same API.
//!
//! | Method and path | Does |
//! |---|---|
//! | `GET /admin/messages?state=&target=&since=&until=&before=&limit=` | list, newest first; `more` says whether older ones match (`before=` the last id for the next page) |
//! | `GET /admin/messages/{id}` | one message: deliveries, every attempt, the raw message as text (`raw`, in its `charset`) and the Bundle of each delivery (`bundles`) |
//! | `GET /admin/messages/{id}/raw` | the message's bytes as received |
//! | `POST /admin/messages/{id}/replay` | map again and deliver again |
//! | `POST /admin/messages/replay?state=&target=&since=&until=&limit=` | replay every match |
//! | `POST /admin/dead-letters/retry?target=&ids=` | dead deliveries back to pending |
//! | `POST /admin/purge?before=INSTANT[&include_dead=true]` | delete finished history |
//! | `GET /admin/targets` | outbox depth per target |

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::error::ApiError;
use crate::{ResponseBody, SharedState};
use passerelle_storage::{
    content, now_ms, DeliveryState, MessageFilter, MessageState, SharedStore,
};

/// Messages a list or a bulk replay takes at most.
pub const MAX_LIMIT: usize = 1000;

/// Answers one admin request (the body is never read: every input is in
/// the path and query).
pub async fn handle(
    state: &SharedState,
    method: Method,
    uri: http::Uri,
) -> Result<Response<ResponseBody>, ApiError> {
    let path = uri.path().trim_end_matches('/');
    let query = uri.query().unwrap_or("");
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    let method = &method;
    match (method, segments.as_slice()) {
        (&Method::GET, ["messages"]) => {
            let mut filter = filter_from_query(query)?;
            // One more than asked tells whether more match (`more`).
            let limit = filter.limit;
            filter.limit = limit + 1;
            let mut messages = blocking(state, move |store| store.list_messages(&filter)).await?;
            let more = messages.len() > limit;
            messages.truncate(limit);
            json(
                StatusCode::OK,
                &serde_json::json!({ "messages": messages, "more": more }),
            )
        }
        (&Method::GET, ["messages", id]) => {
            let id = parse_id(id)?;
            let found = blocking(state, move |store| {
                let Some(journey) = store.message(id)? else {
                    return Ok(None);
                };
                Ok(content::message_content(store.as_ref(), id)?.map(|c| (journey, c)))
            })
            .await?;
            match found {
                Some((journey, content)) => journey_with_content(&journey, &content),
                None => Err(ApiError::NotFound),
            }
        }
        (&Method::GET, ["messages", id, "raw"]) => {
            let id = parse_id(id)?;
            match blocking(state, move |store| {
                content::message_content(store.as_ref(), id)
            })
            .await?
            {
                Some(content) => {
                    let mut response = Response::new(Full::new(Bytes::from(content.raw)));
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    Ok(response)
                }
                None => Err(ApiError::NotFound),
            }
        }
        (&Method::POST, ["messages", "replay"]) => {
            let filter = filter_from_query(query)?;
            if filter.state.is_none() && filter.target.is_none() && filter.since.is_none() {
                return Err(ApiError::BadRequest(
                    "a bulk replay needs at least one of state, target or since".into(),
                ));
            }
            let replayed = blocking(state, move |store| {
                let ids: Vec<i64> = store.list_messages(&filter)?.iter().map(|m| m.id).collect();
                store.replay(&ids)
            })
            .await?;
            state.mapping_wake.notify_one();
            json(StatusCode::OK, &serde_json::json!({ "replayed": replayed }))
        }
        (&Method::POST, ["messages", id, "replay"]) => {
            let id = parse_id(id)?;
            let replayed = blocking(state, move |store| store.replay(&[id])).await?;
            if replayed == 0 {
                return Err(ApiError::NotFound);
            }
            state.mapping_wake.notify_one();
            json(StatusCode::OK, &serde_json::json!({ "replayed": replayed }))
        }
        (&Method::POST, ["dead-letters", "retry"]) => {
            let params = Params::parse(query);
            let target = params.get("target").map(str::to_string);
            let ids = match params.get("ids") {
                Some(list) => list
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(parse_id)
                    .collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
            };
            let retried = blocking(state, move |store| {
                store.retry_dead(target.as_deref(), &ids, now_ms())
            })
            .await?;
            state.deliveries.wake_all();
            json(StatusCode::OK, &serde_json::json!({ "retried": retried }))
        }
        (&Method::POST, ["purge"]) => {
            let params = Params::parse(query);
            let Some(before) = params.get("before").map(str::to_string) else {
                return Err(ApiError::BadRequest(
                    "purge needs before=INSTANT (e.g. 2026-01-01T00:00:00Z)".into(),
                ));
            };
            check_instant(&before)?;
            let include_dead = params.get("include_dead") == Some("true");
            let purged = blocking(state, move |store| store.purge(&before, include_dead)).await?;
            json(StatusCode::OK, &serde_json::json!({ "purged": purged }))
        }
        (&Method::GET, ["targets"]) => {
            let mut depths = blocking(state, |store| store.depths(now_ms())).await?;
            // Every target the gateway delivers to, an empty outbox too
            // (the store only counts undelivered rows).
            for target in state.deliveries.targets() {
                if !depths.iter().any(|d| d.target == target) {
                    depths.push(passerelle_storage::TargetDepth {
                        target,
                        ..Default::default()
                    });
                }
            }
            depths.sort_by(|a, b| a.target.cmp(&b.target));
            json(StatusCode::OK, &serde_json::json!({ "targets": depths }))
        }
        (
            _,
            ["messages", "replay"]
            | ["messages", _, "replay"]
            | ["dead-letters", "retry"]
            | ["purge"],
        ) => Err(ApiError::MethodNotAllowed {
            interaction: method.to_string(),
            allow: "POST",
        }),
        (_, ["messages"] | ["messages", _] | ["messages", _, "raw"] | ["targets"]) => {
            Err(ApiError::MethodNotAllowed {
                interaction: method.to_string(),
                allow: "GET",
            })
        }
        _ => Err(ApiError::NotFound),
    }
}

async fn blocking<T: Send + 'static>(
    state: &SharedState,
    work: impl FnOnce(&SharedStore) -> Result<T, passerelle_storage::StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || work(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::error!(error = %error, "admin request: store operation failed");
            Err(ApiError::StorageUnavailable)
        }
        Err(_) => Err(ApiError::Internal),
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<ResponseBody>, ApiError> {
    let body = serde_json::to_vec_pretty(value).map_err(|_| ApiError::Internal)?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// A message's journey with its content: the raw message decoded in the
/// charset it was read in, and each delivery's Bundle spliced in as the
/// JSON text stored, so that every number keeps its digits.
fn journey_with_content(
    journey: &passerelle_storage::MessageJourney,
    content: &content::MessageContent,
) -> Result<Response<ResponseBody>, ApiError> {
    let journey = serde_json::to_string_pretty(journey).map_err(|_| ApiError::Internal)?;
    let head = journey
        .trim_end()
        .strip_suffix('}')
        .ok_or(ApiError::Internal)?
        .trim_end();
    let charset = hl7v2::Charset::from_msh18(content.charset.as_bytes(), &content.raw)
        .unwrap_or(hl7v2::Charset::Latin1);
    let quoted = |text: &str| serde_json::to_string(text).map_err(|_| ApiError::Internal);
    let mut body = format!(
        "{head},\n  \"charset\": {},\n  \"raw\": {},\n  \"bundles\": [",
        quoted(&content.charset)?,
        quoted(&charset.decode(&content.raw))?
    );
    for (n, mapped) in content.bundles.iter().enumerate() {
        body.push_str(if n == 0 { "\n    " } else { ",\n    " });
        body.push_str(&format!(
            "{{\"outbox_id\": {}, \"route\": {}, \"target\": {}, \"bundle\": {}}}",
            mapped.outbox_id,
            quoted(&mapped.route)?,
            quoted(&mapped.target)?,
            // Stored by the mapping stage as JSON; anything else would be
            // a bug, shown as text rather than as a broken answer.
            if passerelle_fhir::exact_json::parse(&mapped.bundle).is_ok() {
                mapped.bundle.clone()
            } else {
                quoted(&mapped.bundle)?
            }
        ));
    }
    body.push_str("\n  ]\n}\n");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::BadRequest("a message or delivery id is a positive integer".into())
        })
}

fn check_instant(text: &str) -> Result<(), ApiError> {
    let valid = text.len() >= 10
        && text.is_char_boundary(10)
        && text[..10].bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if valid {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "`{}` is not a date or instant (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ, UTC)",
            text.chars().take(40).collect::<String>()
        )))
    }
}

fn filter_from_query(query: &str) -> Result<MessageFilter, ApiError> {
    let params = Params::parse(query);
    let mut filter = MessageFilter {
        limit: 100,
        ..MessageFilter::default()
    };
    for (key, value) in &params.0 {
        match key.as_str() {
            "state" => {
                if MessageState::parse(value).is_none() && DeliveryState::parse(value).is_none() {
                    return Err(ApiError::BadRequest(format!(
                        "unknown state `{}` (received, mapping, routed, failed, unrouted, pending, in_flight, delivered, dead)",
                        value.chars().take(40).collect::<String>()
                    )));
                }
                filter.state = Some(value.clone());
            }
            "target" => filter.target = Some(value.clone()),
            "since" => {
                check_instant(value)?;
                filter.since = Some(value.clone());
            }
            "until" => {
                check_instant(value)?;
                filter.until = Some(value.clone());
            }
            "before" => filter.before_id = Some(parse_id(value)?),
            "limit" => {
                filter.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("limit is a number from 1 to {MAX_LIMIT}"))
                    })?
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{}`",
                    other.chars().take(40).collect::<String>()
                )))
            }
        }
    }
    Ok(filter)
}

/// Decoded query parameters, in order.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Params {
        Params(passerelle_fhir::query::decode_pairs(query))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded_and_checked() {
        let filter =
            filter_from_query("state=dead&target=hospital&since=2026-11-01T00%3A00%3A00Z&limit=5")
                .unwrap();
        assert_eq!(filter.state.as_deref(), Some("dead"));
        assert_eq!(filter.target.as_deref(), Some("hospital"));
        assert_eq!(filter.since.as_deref(), Some("2026-11-01T00:00:00Z"));
        assert_eq!(filter.limit, 5);
        assert!(filter_from_query("state=lost").is_err());
        assert!(filter_from_query("limit=0").is_err());
        assert!(filter_from_query("since=yesterday").is_err());
        assert!(filter_from_query("colour=red").is_err());
        assert_eq!(passerelle_fhir::query::percent_decode("a%2"), "a%2");
        assert_eq!(passerelle_fhir::query::percent_decode("%e9%"), "\u{fffd}%");
    }
}
