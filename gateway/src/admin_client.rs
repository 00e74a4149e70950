//! `passerelle messages ...`: the admin API from the command line. It
//! talks HTTP to a running gateway (the one the configuration describes,
//! or `--url`), so it works the same against SQLite and PostgreSQL. Its
//! key: `--key-file`, else `PASSERELLE_API_KEY`, else the local admin key
//! in the data directory.

use std::process::ExitCode;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use passerelle_fhir::query::percent_encode;

#[derive(Debug, clap::Args)]
pub struct MessagesArgs {
    /// Base URL of the gateway's HTTP listener (default: from the
    /// configuration's `http.listen`).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// A file holding a key with the `passerelle/admin` scope (default:
    /// `PASSERELLE_API_KEY`, else `<data_dir>/local-admin.key`).
    #[arg(long, global = true)]
    pub key_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: MessagesCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum MessagesCommand {
    /// List messages, newest first.
    List(ListArgs),
    /// Show one message: the message as received, its deliveries, every
    /// attempt and the Bundle mapped for each delivery.
    Show {
        id: i64,
        /// Write the message's bytes exactly as received to standard
        /// output, and nothing else.
        #[arg(long)]
        raw: bool,
    },
    /// Map again and deliver again: the messages named, or every message
    /// matching the filter.
    Replay {
        ids: Vec<i64>,
        #[command(flatten)]
        filter: ListArgs,
    },
    /// Move dead letters back to pending (all, one target's, or by id).
    RetryDead {
        #[arg(long)]
        target: Option<String>,
        /// Delivery (outbox) ids.
        ids: Vec<i64>,
    },
    /// Delete the history of finished messages received before a date.
    Purge {
        /// `YYYY-MM-DD` or an instant, UTC.
        #[arg(long)]
        before: String,
        /// Also purge messages whose deliveries ended dead.
        #[arg(long)]
        include_dead: bool,
    },
    /// Outbox depth per target.
    Targets,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListArgs {
    /// received, mapping, routed, failed, unrouted (the message) or
    /// pending, in_flight, delivered, dead (a delivery).
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub target: Option<String>,
    /// Received at or after (UTC).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only messages with an id below this one (the next page of a list).
    #[arg(long)]
    pub before: Option<i64>,
}

impl ListArgs {
    fn query(&self) -> String {
        let mut pairs = Vec::new();
        let mut add = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push(format!("{key}={}", percent_encode(&value)));
            }
        };
        add("state", self.state.clone());
        add("target", self.target.clone());
        add("since", self.since.clone());
        add("until", self.until.clone());
        add("limit", self.limit.map(|n| n.to_string()));
        add("before", self.before.map(|n| n.to_string()));
        pairs.join("&")
    }

    fn is_empty(&self) -> bool {
        self.state.is_none() && self.target.is_none() && self.since.is_none()
    }
}

/// The key to call the admin API with.
fn admin_key(args: &MessagesArgs, local_admin_key: &std::path::Path) -> Result<String, String> {
    if args.key_file.is_none() {
        if let Ok(key) = std::env::var("PASSERELLE_API_KEY") {
            return Ok(key.trim().to_string());
        }
    }
    let path = args.key_file.as_deref().unwrap_or(local_admin_key);
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .map_err(|e| {
            format!(
                "cannot read the key file {}: {e} (give --key-file or PASSERELLE_API_KEY)",
                path.display()
            )
        })
}

pub fn run(args: &MessagesArgs, default_base: &str, local_admin_key: &std::path::Path) -> ExitCode {
    let key = match admin_key(args, local_admin_key) {
        Ok(key) => key,
        Err(message) => {
            eprintln!("passerelle messages: {message}");
            return ExitCode::from(2);
        }
    };
    let base = args
        .url
        .as_deref()
        .unwrap_or(default_base)
        .trim_end_matches('/')
        .to_string();
    let (method, path) = match &args.command {
        MessagesCommand::List(filter) => {
            (Method::GET, format!("/admin/messages?{}", filter.query()))
        }
        MessagesCommand::Show { id, raw: false } => (Method::GET, format!("/admin/messages/{id}")),
        MessagesCommand::Show { id, raw: true } => {
            (Method::GET, format!("/admin/messages/{id}/raw"))
        }
        MessagesCommand::Replay { ids, filter } => match (ids.as_slice(), filter.is_empty()) {
            ([id], true) => (Method::POST, format!("/admin/messages/{id}/replay")),
            ([], false) => (
                Method::POST,
                format!("/admin/messages/replay?{}", filter.query()),
            ),
            _ => {
                eprintln!("passerelle messages replay: give one message id, or a filter (--state, --target, --since)");
                return ExitCode::from(2);
            }
        },
        MessagesCommand::RetryDead { target, ids } => {
            let mut query = Vec::new();
            if let Some(target) = target {
                query.push(format!("target={}", percent_encode(target)));
            }
            if !ids.is_empty() {
                let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                query.push(format!("ids={}", ids.join(",")));
            }
            (
                Method::POST,
                format!("/admin/dead-letters/retry?{}", query.join("&")),
            )
        }
        MessagesCommand::Purge {
            before,
            include_dead,
        } => (
            Method::POST,
            format!(
                "/admin/purge?before={}{}",
                percent_encode(before),
                if *include_dead {
                    "&include_dead=true"
                } else {
                    ""
                }
            ),
        ),
        MessagesCommand::Targets => (Method::GET, "/admin/targets".to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("passerelle messages: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("{base}{path}");
    let answer = runtime.block_on(request(method, &url, &key));
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(error) => {
            eprintln!("passerelle messages: {url}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    if !(200..300).contains(&status) {
        let detail = value
            .pointer("/issue/0/diagnostics")
            .and_then(|d| d.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        eprintln!("passerelle messages: {status}: {detail}");
        return ExitCode::FAILURE;
    }
    if let MessagesCommand::Show { raw: true, .. } = args.command {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        return match stdout.write_all(&body).and_then(|()| stdout.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("passerelle messages show: cannot write the message: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    print!("{}", human(&args.command, &value));
    if let MessagesCommand::Show { .. } = args.command {
        print!("{}", shown_content(&body));
    }
    ExitCode::SUCCESS
}

async fn request(method: Method, url: &str, key: &str) -> Result<(u16, Bytes), String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("accept", "application/json")
        // The admin API takes state changes only as JSON (a guard against
        // cross-site forms); these carry their parameters in the query.
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(60), client.request(request))
            .await
            .map_err(|_| "no answer within 60 s".to_string())?
            .map_err(|e| format!("cannot reach the gateway ({e}); is it running?"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// The raw message (one segment a line) and each delivery's Bundle
/// (indented, numbers as stored) of a `GET /admin/messages/{id}` answer.
fn shown_content(body: &[u8]) -> String {
    let Ok(value) = passerelle_fhir::exact_json::parse(&String::from_utf8_lossy(body)) else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(raw) = value.get("raw").and_then(|r| r.as_str()) {
        out.push_str(&format!(
            "\nmessage as received ({}; `--raw` for its bytes):\n",
            value.get("charset").and_then(|c| c.as_str()).unwrap_or("")
        ));
        for segment in raw.split(['\r', '\n']).filter(|s| !s.is_empty()) {
            out.push_str(&format!("  {segment}\n"));
        }
    }
    for mapped in value
        .get("bundles")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
    {
        // Numbers in these trees are carried as text (`number_text`).
        let field = |key: &str| {
            mapped.get(key).and_then(|v| {
                passerelle_fhir::exact_json::number_text(v)
                    .or_else(|| v.as_str())
                    .map(str::to_string)
            })
        };
        out.push_str(&format!(
            "\nBundle of delivery {} to {} (route {}):\n",
            field("outbox_id").unwrap_or_default(),
            field("target").unwrap_or_default(),
            field("route").unwrap_or_default()
        ));
        if let Some(bundle) = mapped.get("bundle") {
            let text = passerelle_fhir::exact_json::to_string(bundle);
            out.push_str(&passerelle_fhir::exact_json::pretty_json(&text));
            out.push('\n');
        }
    }
    out
}

/// A short table of what the API answered.
fn human(command: &MessagesCommand, value: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value, key: &str| -> String {
        match v.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    };
    let deliveries = |m: &serde_json::Value| -> String {
        m.get("deliveries")
            .and_then(|d| d.as_array())
            .map(|list| {
                list.iter()
                    .map(|d| {
                        format!(
                            "{}={}({})",
                            text(d, "target"),
                            text(d, "state"),
                            text(d, "attempts")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    let mut out = String::new();
    match command {
        MessagesCommand::List(_) => {
            out.push_str(
                "ID\tRECEIVED\tTYPE\tCONTROL ID\tSTATE\tDELIVERIES (target=state(attempts))\n",
            );
            for m in value
                .get("messages")
                .and_then(|m| m.as_array())
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\n",
                    text(m, "id"),
                    text(m, "received_at"),
                    text(m, "message_type"),
                    text(m, "control_id"),
                    text(m, "state"),
                    deliveries(m)
                ));
            }
            let last = value
                .get("messages")
                .and_then(|m| m.as_array())
                .and_then(|m| m.last())
                .map(|m| text(m, "id"));
            if let (Some(true), Some(last)) = (value.get("more").and_then(|m| m.as_bool()), last) {
                out.push_str(&format!(
                    "(more messages match: add --before {last} for the next page)\n"
                ));
            }
        }
        MessagesCommand::Show { .. } => {
            out.push_str(&format!(
                "message {} {} control id {} received {} via {}: {}\n",
                text(value, "id"),
                text(value, "message_type"),
                text(value, "control_id"),
                text(value, "received_at"),
                text(value, "transport"),
                text(value, "state"),
            ));
            if let Some(error) = value.get("mapping_error").and_then(|e| e.as_str()) {
                out.push_str(&format!("  mapping failed: {error}\n"));
            }
            for d in value
                .get("deliveries")
                .and_then(|d| d.as_array())
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "  delivery {} to {} (route {}): {} after {} attempt(s)\n",
                    text(d, "outbox_id"),
                    text(d, "target"),
                    text(d, "route"),
                    text(d, "state"),
                    text(d, "attempts")
                ));
            }
            for a in value
                .get("attempts")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "  {} attempt {} to {}: {}{} in {} ms{}\n",
                    text(a, "at"),
                    text(a, "attempt"),
                    text(a, "target"),
                    text(a, "result"),
                    // A local target has no HTTP status.
                    Some(text(a, "status"))
                        .filter(|status| !status.is_empty())
                        .map(|status| format!(" status {status}"))
                        .unwrap_or_default(),
                    text(a, "latency_ms"),
                    a.get("detail")
                        .and_then(|d| d.as_str())
                        .map(|d| format!(": {}", d.chars().take(200).collect::<String>()))
                        .unwrap_or_default()
                ));
            }
        }
        MessagesCommand::Targets => {
            out.push_str("TARGET\tPENDING\tIN FLIGHT\tDEAD\tOLDEST (ms)\n");
            for t in value
                .get("targets")
                .and_then(|t| t.as_array())
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    text(t, "target"),
                    text(t, "pending"),
                    text(t, "in_flight"),
                    text(t, "dead"),
                    text(t, "oldest_pending_age_ms")
                ));
            }
        }
        MessagesCommand::Replay { .. } => {
            out.push_str(&format!(
                "{} message(s) replayed: mapped and delivered again\n",
                text(value, "replayed")
            ));
        }
        MessagesCommand::RetryDead { .. } => {
            out.push_str(&format!(
                "{} dead letter(s) put back in the outbox\n",
                text(value, "retried")
            ));
        }
        MessagesCommand::Purge { .. } => {
            out.push_str(&format!(
                "{} message(s) purged with their deliveries and attempts\n",
                text(value, "purged")
            ));
        }
    }
    out
}
