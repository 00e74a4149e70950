//! Who may do what, over the wire: clients made with `passerelle clients`
//! (stored, and `--print-config` for the configuration file), the
//! authorisation matrix (each client × endpoint → the status expected,
//! from one table), and the attacks of the access-security issue replayed.

use std::process::Command;
use std::time::Duration;

use crate::common::{self, http_request, http_request_anonymous, Gateway, Options, Reply};

fn passerelle() -> Command {
    Command::new(env!("CARGO_BIN_EXE_passerelle"))
}

/// `GET path` with `key` (none: anonymous).
fn get(gateway: &Gateway, path: &str, key: Option<&str>) -> Reply {
    send(gateway, "GET", path, key, "", b"")
}

fn send(
    gateway: &Gateway,
    method: &str,
    path: &str,
    key: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Reply {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        gateway.http_addr,
        body.len()
    );
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    Reply::parse(&http_request_anonymous(gateway.http_addr, &raw).expect("HTTP exchange"))
}

/// `passerelle clients add NAME --network ... --scope ... --print-config`:
/// the key and the `[[security.clients]]` entry.
fn issue_in_networks(name: &str, networks: &[&str], scopes: &[&str]) -> (String, String) {
    let mut command = passerelle();
    command.args(["clients", "add", name, "--print-config"]);
    for network in networks {
        command.args(["--network", network]);
    }
    for scope in scopes {
        command.args(["--scope", scope]);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let key = text
        .lines()
        .find_map(|line| line.strip_prefix("# psl_"))
        .map(|rest| format!("psl_{rest}"))
        .unwrap_or_else(|| panic!("no key in {text}"));
    (key, text)
}

const ADT: &str = "MSH|^~\\&|LAB|SITE|GW|GW|20261203101500||ADT^A04^ADT_A01|{ID}|P|2.5\rPID|1||{ID}^^^SITE^PI||DURAND^ZOE||19700101|F\r";

fn adt(control_id: &str) -> Vec<u8> {
    ADT.replace("{ID}", control_id).into_bytes()
}

fn qbp(control_id: &str) -> Vec<u8> {
    format!("MSH|^~\\&|HIS|HOSP|GW|GW|20261203101500||QBP^Q22^QBP_Q21|{control_id}|P|2.5\rQPD|IHE PDQ Query|T{control_id}|@PID.8^F\rRCP|I|10^RD\r").into_bytes()
}

fn transaction() -> Vec<u8> {
    serde_json::json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:7f1c0d3e-1111-4a8a-9d6e-2f7d2e1f0a11",
                "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "M1"}], "gender": "female"},
                "request": {"method": "PUT", "url": "Patient?identifier=urn:x%7CM1"}
            },
            {
                "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "t"},
                             "subject": {"reference": "urn:uuid:7f1c0d3e-1111-4a8a-9d6e-2f7d2e1f0a11"}},
                "request": {"method": "POST", "url": "Observation"}
            }
        ]
    })
    .to_string()
    .into_bytes()
}

/// Each client of the matrix: name, networks, scopes (`anonymous` sends
/// no key, `bad-key` a made-up one, `admin` the local admin key).
const CLIENTS: &[(&str, &[&str], &[&str])] = &[
    ("anonymous", &[], &[]),
    ("bad-key", &[], &[]),
    ("admin", &[], &[]),
    ("reader", &["nord"], &["system/*.rs"]),
    ("patients", &["nord"], &["system/Patient.rs"]),
    (
        "lab",
        &["nord"],
        &[
            "passerelle/hl7v2",
            "system/Observation.cu",
            "system/Patient.cu",
        ],
    ),
    ("ops", &[], &["passerelle/admin", "passerelle/metrics"]),
    ("outsider", &["sud"], &["system/*.rs"]),
];

/// What each client gets from each endpoint, in the order of `CLIENTS`:
/// anonymous, bad-key, admin, reader, patients, lab, ops, outsider. Rows
/// run in order: `POST /fhir` makes the lab's patient `{M1}` (network
/// nord), which the rows after it read.
const MATRIX: &[(&str, &str, [u16; 8])] = &[
    ("GET", "/health", [200, 200, 200, 200, 200, 200, 200, 200]),
    (
        "GET",
        "/fhir/metadata",
        [200, 200, 200, 200, 200, 200, 200, 200],
    ),
    (
        "GET",
        "/fhir/Patient?gender=female",
        [401, 401, 200, 200, 200, 403, 403, 200],
    ),
    (
        "POST",
        "/fhir/Patient/_search",
        [401, 401, 200, 200, 200, 403, 403, 200],
    ),
    (
        "GET",
        "/fhir/Patient/nobody",
        [401, 401, 404, 404, 404, 403, 403, 404],
    ),
    (
        "GET",
        "/fhir/Observation?code=x",
        [401, 401, 200, 200, 403, 403, 403, 200],
    ),
    (
        "GET",
        "/fhir/Patient/nobody/$everything",
        [401, 401, 404, 404, 403, 403, 403, 404],
    ),
    (
        "GET",
        "/fhir/Patient/$summary?identifier=urn:x%7Cnone",
        [401, 401, 404, 404, 403, 403, 403, 404],
    ),
    ("POST", "/fhir", [401, 401, 200, 403, 403, 200, 403, 403]),
    (
        "GET",
        "/fhir/Patient/{M1}",
        [401, 401, 200, 200, 200, 403, 403, 404],
    ),
    (
        "GET",
        "/fhir/Patient/{M1}/$everything",
        [401, 401, 200, 200, 403, 403, 403, 404],
    ),
    (
        "GET",
        "/fhir/Patient/$summary?identifier=urn:x%7CM1",
        [401, 401, 200, 200, 403, 403, 403, 404],
    ),
    ("POST", "/hl7v2", [401, 401, 200, 403, 403, 200, 403, 403]),
    (
        "POST",
        "/fhir/$convert-data",
        [401, 401, 200, 403, 403, 403, 403, 403],
    ),
    ("GET", "/metrics", [401, 401, 200, 403, 403, 403, 200, 403]),
    (
        "GET",
        "/admin/messages",
        [401, 401, 200, 403, 403, 403, 200, 403],
    ),
    (
        "GET",
        "/admin/targets",
        [401, 401, 200, 403, 403, 403, 200, 403],
    ),
    (
        "POST",
        "/fhir/Patient",
        [401, 401, 201, 403, 403, 201, 403, 403],
    ),
    // Last: the admin deletes the lab's patient; nobody else may.
    (
        "DELETE",
        "/fhir/Patient/{M1}",
        [401, 401, 204, 403, 403, 403, 403, 403],
    ),
];

#[test]
fn authorization_matrix() {
    let mut keys: Vec<Option<String>> = Vec::new();
    let mut config = String::new();
    for (name, networks, scopes) in CLIENTS {
        let key = match *name {
            "anonymous" => None,
            "bad-key" => {
                Some("psl_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string())
            }
            "admin" => Some(common::TEST_KEY.to_string()),
            _ => {
                let (key, entry) = issue_in_networks(name, networks, scopes);
                config.push_str(&entry);
                Some(key)
            }
        };
        keys.push(key);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.toml");
    std::fs::write(&path, &config).unwrap();
    let gateway = Gateway::start_with(Options {
        args: vec!["--config".into(), path.display().to_string()],
        ..Options::default()
    });
    let convert = common::convert_parameters(&String::from_utf8(adt("CV1")).unwrap(), "Hl7v2");
    let mut failures = Vec::new();
    let mut lab_patient: Option<String> = None;
    for (row, (method, path, expected)) in MATRIX.iter().enumerate() {
        let path: &str = &if path.contains("{M1}") {
            let id = lab_patient.get_or_insert_with(|| {
                first_id(&get(
                    &gateway,
                    "/fhir/Patient?identifier=urn:x%7CM1",
                    Some(common::TEST_KEY),
                ))
            });
            path.replace("{M1}", id)
        } else {
            path.to_string()
        };
        for (column, ((client, _, _), key)) in CLIENTS.iter().zip(&keys).enumerate() {
            let control_id = format!("M{row}C{column}");
            let (content_type, body): (&str, Vec<u8>) = match path {
                "/fhir" => ("application/fhir+json", transaction()),
                "/fhir/Patient" => (
                    "application/fhir+json",
                    br#"{"resourceType":"Patient","gender":"female"}"#.to_vec(),
                ),
                "/hl7v2" => ("x-application/hl7-v2+er7", adt(&control_id)),
                "/fhir/$convert-data" => ("application/fhir+json", convert.clone()),
                "/fhir/Patient/_search" => (
                    "application/x-www-form-urlencoded",
                    b"gender=female".to_vec(),
                ),
                _ => ("", Vec::new()),
            };
            let reply = send(&gateway, method, path, key.as_deref(), content_type, &body);
            if reply.status != expected[column] {
                failures.push(format!(
                    "{client} {method} {path}: expected {}, got {} {}",
                    expected[column],
                    reply.status,
                    reply.body.chars().take(200).collect::<String>()
                ));
                continue;
            }
            // Refusals are OperationOutcomes; 401 carries the challenge.
            if reply.status == 401 || reply.status == 403 {
                let outcome = reply.json();
                assert_eq!(
                    outcome["resourceType"], "OperationOutcome",
                    "{client} {path}"
                );
            }
            if reply.status == 401 {
                let challenge = reply.header("www-authenticate").unwrap_or_default();
                assert!(
                    challenge.starts_with("Bearer realm=\"passerelle\""),
                    "{challenge}"
                );
                assert_eq!(challenge.contains("invalid_token"), *client == "bad-key");
            }
            if reply.status == 403 && path.starts_with("/fhir/Patient?") {
                assert!(reply.body.contains("system/Patient.s"), "{}", reply.body);
            }
            if path == "/hl7v2" && reply.status == 200 {
                assert!(reply.body.contains("MSA|AA"), "{client}: {}", reply.body);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // HL7 v2 queries need system/Patient.s besides the sending scope.
    let lab = keys[5].as_deref();
    let answer = send(
        &gateway,
        "POST",
        "/hl7v2",
        lab,
        "x-application/hl7-v2+er7",
        &qbp("Q1"),
    );
    assert!(answer.body.contains("MSA|AR|Q1"), "{}", answer.body);
    assert!(answer.body.contains("system/Patient.s"), "{}", answer.body);
    assert!(!answer.body.contains("DURAND"), "{}", answer.body);
    let admin = keys[2].as_deref();
    let answer = send(
        &gateway,
        "POST",
        "/hl7v2",
        admin,
        "x-application/hl7-v2+er7",
        &qbp("Q2"),
    );
    assert!(answer.body.contains("MSA|AA|Q2"), "{}", answer.body);
}

/// From `passerelle clients add` to an authorised search and a refused
/// one, then revocation, against a running gateway (the walk-through of
/// docs/security.md).
#[test]
fn stored_clients_are_added_used_and_revoked_while_running() {
    let gateway = Gateway::start();
    let cli = |args: &[&str]| {
        let output = passerelle()
            .args(args)
            .env("PASSERELLE_STORAGE__DATA_DIR", gateway.data_dir())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, key, stderr) = cli(&[
        "clients",
        "add",
        "labo",
        "--network",
        "cabinet-dupont",
        "--scope",
        "system/Patient.rs",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let key = key.trim().to_string();
    assert!(key.starts_with("psl_"), "{key}");
    // The key is printed once and stored only as its hash.
    let (_, list, _) = cli(&["clients", "list"]);
    assert!(
        list.contains("labo") && list.contains("system/Patient.rs"),
        "{list}"
    );
    assert!(!list.contains(&key[17..]), "{list}");
    let database = std::fs::read(gateway.data_dir().join("passerelle.db")).unwrap();
    assert!(
        !database.windows(20).any(|w| w == &key.as_bytes()[17..37]),
        "the key is stored in clear"
    );
    // A name given twice is refused; a scope that does not exist too.
    let (code, _, stderr) = cli(&["clients", "add", "labo", "--scope", "system/Patient.rs"]);
    assert_eq!(code, Some(1), "{stderr}");
    let (code, _, stderr) = cli(&["clients", "add", "other", "--scope", "patient/Patient.rs"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("system/"), "{stderr}");

    // The running gateway takes it up within its refresh.
    assert!(common::eventually(Duration::from_secs(10), || {
        get(&gateway, "/fhir/Patient?gender=female", Some(&key)).status == 200
    }));
    let refused = get(&gateway, "/fhir/Observation?code=x", Some(&key));
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("system/Observation.s"),
        "{}",
        refused.body
    );
    assert_eq!(
        get(&gateway, "/fhir/Patient?gender=female", None).status,
        401
    );

    let (code, _, stderr) = cli(&["clients", "revoke", "labo"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(common::eventually(Duration::from_secs(10), || {
        get(&gateway, "/fhir/Patient?gender=female", Some(&key)).status == 401
    }));
    let (_, list, _) = cli(&["clients", "list"]);
    assert!(list.contains("revoked"), "{list}");
    // The key is never logged.
    assert!(!gateway.logs().contains(&key[17..]));
}

/// The attacks of the access-security issue, replayed: patient data,
/// writes, the admin API from a browser page, and HL7 v2 from a cross-site
/// form, none of it without a key.
#[test]
fn the_reported_attacks_are_refused() {
    let gateway = Gateway::start();
    // Some patient data to steal.
    let ack = send(
        &gateway,
        "POST",
        "/hl7v2",
        Some(common::TEST_KEY),
        "x-application/hl7-v2+er7",
        &adt("VICTIM1"),
    );
    assert!(ack.body.contains("MSA|AA"), "{}", ack.body);
    assert!(common::eventually(Duration::from_secs(30), || {
        get(
            &gateway,
            "/fhir/Patient?gender=female",
            Some(common::TEST_KEY),
        )
        .body
        .contains("DURAND")
    }));
    for (method, path) in [
        ("GET", "/fhir/Patient?gender=female"),
        ("GET", "/fhir/Patient?identifier=SITE%7CVICTIM1"),
        ("GET", "/fhir/Patient/$summary?identifier=SITE%7CVICTIM1"),
    ] {
        let reply = send(&gateway, method, path, None, "", b"");
        assert_eq!(reply.status, 401, "{method} {path}");
        assert!(!reply.body.contains("DURAND"), "{method} {path}");
    }
    // A transaction that would overwrite or delete the patient.
    let delete = serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Patient?identifier=SITE%7CVICTIM1"}}]})
    .to_string();
    let reply = send(
        &gateway,
        "POST",
        "/fhir",
        None,
        "application/fhir+json",
        delete.as_bytes(),
    );
    assert_eq!(reply.status, 401);
    // A browser page: a text/plain form to /hl7v2, a replay to /admin with
    // a foreign Origin (and even with the key, a foreign Host).
    let form = send(
        &gateway,
        "POST",
        "/hl7v2",
        None,
        "text/plain",
        &adt("CSRF1"),
    );
    assert_eq!(form.status, 401);
    assert!(!form.body.contains("MSA|AA"));
    let replay = http_request_anonymous(
        gateway.http_addr,
        b"POST /admin/messages/replay?state=routed HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(replay.starts_with("HTTP/1.1 401"), "{replay}");
    let rebound = http_request(
        gateway.http_addr,
        b"GET /admin/messages HTTP/1.1\r\nHost: evil.example:8080\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let form_with_key = http_request(
        gateway.http_addr,
        b"POST /admin/messages/replay?state=routed HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(form_with_key.starts_with("HTTP/1.1 403"), "{form_with_key}");
    // The local admin key file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(gateway.data_dir().join("local-admin.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A gateway started on an empty data directory makes its local admin key
/// (0600) and says where; a key file others may read stops it.
#[test]
fn the_local_admin_key_is_made_at_first_start_and_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let port = common::free_port();
    let mut child = passerelle()
        .env_remove("PASSERELLE_CONFIG")
        .env("PASSERELLE_HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("PASSERELLE_MLLP__ENABLED", "false")
        .env("PASSERELLE_STORAGE__DATA_DIR", &data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let key_file = data_dir.join("local-admin.key");
    assert!(common::eventually(Duration::from_secs(30), || key_file.is_file()));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(common::eventually(Duration::from_secs(30), || {
        common::http_get(addr, "/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    }));
    let key = std::fs::read_to_string(&key_file).unwrap();
    let raw = format!(
        "GET /admin/targets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        key.trim()
    );
    let answer = http_request_anonymous(addr, raw.as_bytes()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("local-admin.key"), "{log}");
    assert!(!log.contains(key.trim()), "the key is logged");

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = passerelle()
        .env_remove("PASSERELLE_CONFIG")
        .env(
            "PASSERELLE_HTTP__LISTEN",
            format!("127.0.0.1:{}", common::free_port()),
        )
        .env("PASSERELLE_MLLP__ENABLED", "false")
        .env("PASSERELLE_STORAGE__DATA_DIR", &data_dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("chmod 600"), "{log}");
}

/// The `total` of a searchset answer.
fn total_of(reply: &Reply) -> i64 {
    let value: serde_json::Value =
        serde_json::from_str(&reply.body).unwrap_or_else(|_| panic!("not JSON: {}", reply.body));
    value["total"].as_i64().unwrap_or(-1)
}

/// The id of the first match of a searchset answer.
fn first_id(reply: &Reply) -> String {
    let value: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    value["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no match in {}", reply.body))
        .to_string()
}

/// Two practices in two networks share one gateway: each reads only the
/// patients its network sent data about (FHIR transaction or HL7 v2),
/// in searches, reads, `$summary`, `$everything` and HL7 v2 queries;
/// `passerelle patients grant` shares one patient with the other network.
#[test]
fn clients_read_only_the_patients_of_their_networks() {
    let all = ["system/*.cruds", "passerelle/hl7v2"];
    let (nord, nord_entry) = issue_in_networks("nord-practice", &["nord"], &all);
    let (sud, sud_entry) = issue_in_networks("sud-practice", &["sud"], &all);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.toml");
    std::fs::write(&path, format!("{nord_entry}{sud_entry}")).unwrap();
    let gateway = Gateway::start_with(Options {
        args: vec!["--config".into(), path.display().to_string()],
        ..Options::default()
    });
    let fhir_json = "application/fhir+json";
    // Nord sends a Patient and an Observation as FHIR...
    let reply = send(
        &gateway,
        "POST",
        "/fhir",
        Some(&nord),
        fhir_json,
        &transaction(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // ... Sud sends its patient as HL7 v2.
    let reply = send(
        &gateway,
        "POST",
        "/hl7v2",
        Some(&sud),
        "x-application/hl7-v2+er7",
        &adt("SUD1"),
    );
    assert!(reply.body.contains("MSA|AA"), "{}", reply.body);
    let started = std::time::Instant::now();
    while total_of(&get(&gateway, "/fhir/Patient?identifier=SUD1", Some(&sud))) < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the HL7 v2 patient never arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sud_id = first_id(&get(&gateway, "/fhir/Patient?identifier=SUD1", Some(&sud)));
    let nord_id = first_id(&get(
        &gateway,
        "/fhir/Patient?identifier=urn:x%7CM1",
        Some(&nord),
    ));

    // Each sees its own, not the other's.
    assert_eq!(total_of(&get(&gateway, "/fhir/Patient", Some(&nord))), 1);
    assert_eq!(total_of(&get(&gateway, "/fhir/Patient", Some(&sud))), 1);
    assert_eq!(total_of(&get(&gateway, "/fhir/Observation", Some(&sud))), 0);
    assert_eq!(
        total_of(&get(&gateway, "/fhir/Observation", Some(&nord))),
        1
    );
    assert_eq!(
        total_of(&get(&gateway, "/fhir/Patient?identifier=SUD1", Some(&nord))),
        0
    );
    for path in [
        format!("/fhir/Patient/{sud_id}"),
        format!("/fhir/Patient/{sud_id}/_history"),
        format!("/fhir/Patient/{sud_id}/_history/1"),
        format!("/fhir/Patient/{sud_id}/$everything"),
        format!("/fhir/Patient/{sud_id}/$summary"),
        "/fhir/Patient/$summary?identifier=urn:oid:1.2.250.1.71.4.2.1%7CSUD1".to_string(),
    ] {
        let reply = get(&gateway, &path, Some(&nord));
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert!(!reply.body.contains("DURAND"), "{path}: {}", reply.body);
    }
    assert_eq!(
        get(&gateway, &format!("/fhir/Patient/{sud_id}"), Some(&sud)).status,
        200
    );
    assert_eq!(
        get(
            &gateway,
            &format!("/fhir/Patient/{nord_id}/$everything"),
            Some(&nord)
        )
        .status,
        200
    );
    assert_eq!(
        get(&gateway, &format!("/fhir/Patient/{nord_id}"), Some(&sud)).status,
        404
    );
    // The local admin (network *) sees both.
    assert_eq!(
        total_of(&get(&gateway, "/fhir/Patient", Some(common::TEST_KEY))),
        2
    );

    // An HL7 v2 patient query answers the sender's patients only.
    let query = |key: &str, control: &str| {
        send(
            &gateway,
            "POST",
            "/hl7v2",
            Some(key),
            "x-application/hl7-v2+er7",
            &qbp(control),
        )
        .body
    };
    // Nord's own patient is female too; Sud's must not be in its answer.
    let answer = query(&nord, "QN1");
    assert!(answer.contains("QAK|TQN1|"), "{answer}");
    assert!(!answer.contains("DURAND"), "{answer}");
    assert!(!answer.contains("SUD1"), "{answer}");
    let answer = query(&sud, "QS1");
    assert!(answer.contains("QAK|TQS1|OK"), "{answer}");
    assert!(answer.contains("DURAND"), "{answer}");

    // Shared by hand with Nord, then taken back.
    let patients = |args: &[&str]| {
        passerelle()
            .arg("patients")
            .args(args)
            .env("PASSERELLE_STORAGE__DATA_DIR", gateway.data_dir())
            .output()
            .unwrap()
    };
    let granted = patients(&["grant", &sud_id, "nord"]);
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    assert_eq!(
        get(&gateway, &format!("/fhir/Patient/{sud_id}"), Some(&nord)).status,
        200
    );
    let listed = patients(&["networks", &sud_id]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "nord\nsud\n");
    let revoked = patients(&["revoke", &sud_id, "nord"]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(
        get(&gateway, &format!("/fhir/Patient/{sud_id}"), Some(&nord)).status,
        404
    );
    // Both changes are in the patient's audit trail.
    let trail = get(
        &gateway,
        &format!("/fhir/AuditEvent?patient=Patient/{sud_id}&_count=1000"),
        Some(common::TEST_KEY),
    );
    assert_eq!(trail.status, 200, "{}", trail.body);
    for subtype in ["patient-network-grant", "patient-network-revoke"] {
        assert!(trail.body.contains(subtype), "{subtype}: {}", trail.body);
    }
    let unknown = patients(&["grant", "no-such-patient", "nord"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("Patient/no-such-patient"));
}

/// A client that names its sending application and facility sends only
/// under them: another MSH-3 or MSH-4 gets AR with an ERR naming the field,
/// and nothing is journaled. (Over MLLP the same rule picks, among the
/// clients of one address, the one a message comes from.)
#[test]
fn senders_are_held_to_their_msh_3_and_msh_4() {
    let (lab, lab_entry) = issue_in_networks("labo-bio", &["nord"], &["passerelle/hl7v2"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.toml");
    std::fs::write(
        &path,
        format!("{lab_entry}sending_applications = [\"LAB\"]\nsending_facilities = [\"SITE\"]\n"),
    )
    .unwrap();
    let gateway = Gateway::start_with(Options {
        args: vec!["--config".into(), path.display().to_string()],
        ..Options::default()
    });
    let message = |id: &str, sender: &str| ADT.replace("{ID}", id).replace("|LAB|SITE|", sender);
    let post = |message: String| {
        send(
            &gateway,
            "POST",
            "/hl7v2",
            Some(&lab),
            "x-application/hl7-v2+er7",
            message.as_bytes(),
        )
        .body
    };
    let answer = post(message("OK1", "|LAB|SITE|"));
    assert!(answer.contains("MSA|AA|OK1"), "{answer}");
    let answer = post(message("OK2", "|LAB|SITE^1.2.250.1.71.4.2.2^ISO|"));
    assert!(answer.contains("MSA|AA|OK2"), "{answer}");
    let answer = post(message("APP1", "|RADIO|SITE|"));
    assert!(answer.contains("MSA|AR|APP1"), "{answer}");
    assert!(answer.contains("MSH^1^3"), "{answer}");
    let answer = post(message("FAC1", "|LAB|AUTRE|"));
    assert!(answer.contains("MSA|AR|FAC1"), "{answer}");
    assert!(answer.contains("MSH^1^4"), "{answer}");
    let listed = get(&gateway, "/admin/messages", Some(common::TEST_KEY)).body;
    assert!(listed.contains("OK1") && listed.contains("OK2"), "{listed}");
    assert!(
        !listed.contains("APP1") && !listed.contains("FAC1"),
        "{listed}"
    );
}

/// This host's first IPv4 address that is not loopback: MLLP senders are
/// told apart by address, and every loopback connection is the local
/// admin's.
fn non_loopback_address() -> std::net::IpAddr {
    let output = Command::new("hostname").arg("-I").output();
    let text = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.split_whitespace()
        .filter_map(|word| word.parse::<std::net::IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .expect("this test needs a non-loopback IPv4 address (`hostname -I`)")
}

/// One MLLP exchange from `source` (port chosen by the system): the ACK or
/// the query's answer.
fn mllp_from(source: std::net::IpAddr, target: std::net::SocketAddr, message: &str) -> String {
    use std::io::{Read, Write};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
        socket.connect(target).await.unwrap().into_std().unwrap()
    });
    let mut stream = stream;
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(&[b"\x0b", message.as_bytes(), b"\x1c\r"].concat())
        .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.ends_with(b"\x1c\r") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The MLLP side of the matrix: senders found by address and MSH-3, each
/// with its scopes and networks. Every row is (source, MSH-3, message
/// kind) → what the answer holds.
#[test]
fn mllp_senders_by_address_msh_3_scope_and_network() {
    let outside = non_loopback_address();
    let mut config = String::new();
    for (name, application, network, scopes) in [
        ("lab", "LAB", "nord", &["passerelle/hl7v2"][..]),
        (
            "his-nord",
            "HIS",
            "nord",
            &["passerelle/hl7v2", "system/Patient.s"][..],
        ),
        (
            "his-sud",
            "HIS-SUD",
            "sud",
            &["passerelle/hl7v2", "system/Patient.s"][..],
        ),
    ] {
        let (_, entry) = issue_in_networks(name, &[network], scopes);
        config.push_str(&format!(
            "{entry}mllp_addresses = [\"{outside}\"]\nsending_applications = [\"{application}\"]\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.toml");
    std::fs::write(
        &path,
        format!(
            "[mllp]\nallow_plaintext = true\n\n[storage]\nallow_unencrypted = true\n\n{config}"
        ),
    )
    .unwrap();
    let port = common::free_port();
    let gateway = Gateway::start_with(Options {
        args: vec!["--config".into(), path.display().to_string()],
        env: vec![("PASSERELLE_MLLP__LISTEN".into(), format!("0.0.0.0:{port}"))],
        ..Options::default()
    });
    let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let target = |source: std::net::IpAddr| std::net::SocketAddr::new(source, port);
    let adt_from = |application: &str, id: &str| {
        ADT.replace("{ID}", id)
            .replace("|LAB|SITE|", &format!("|{application}|SITE|"))
    };
    let qbp_from = |application: &str, id: &str| {
        String::from_utf8(qbp(id))
            .unwrap()
            .replace("|HIS|HOSP|", &format!("|{application}|HOSP|"))
    };

    // Sending: the local admin on loopback, the lab from outside under its
    // own MSH-3 only.
    let answer = mllp_from(loopback, target(loopback), &adt_from("ANY", "L1"));
    assert!(answer.contains("MSA|AA|L1"), "{answer}");
    let answer = mllp_from(outside, target(outside), &adt_from("LAB", "NORD1"));
    assert!(answer.contains("MSA|AA|NORD1"), "{answer}");
    let answer = mllp_from(outside, target(outside), &adt_from("PACS", "X1"));
    assert!(
        answer.contains("MSA|AR|X1") && answer.contains("MSH^1^3"),
        "{answer}"
    );

    // The lab's patient arrives in network nord.
    let started = std::time::Instant::now();
    while total_of(&get(
        &gateway,
        "/fhir/Patient?identifier=NORD1",
        Some(common::TEST_KEY),
    )) < 1
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the patient never arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Querying: the lab may not (no system/Patient.s); each HIS finds the
    // patients of its own network; the local admin finds every one.
    let answer = mllp_from(outside, target(outside), &qbp_from("LAB", "Q1"));
    assert!(
        answer.contains("MSA|AR|Q1") && answer.contains("system/Patient.s"),
        "{answer}"
    );
    let answer = mllp_from(outside, target(outside), &qbp_from("HIS", "Q2"));
    assert!(answer.contains("MSA|AA|Q2"), "{answer}");
    assert!(answer.contains("NORD1"), "{answer}");
    assert!(!answer.contains("|L1^"), "{answer}");
    let answer = mllp_from(outside, target(outside), &qbp_from("HIS-SUD", "Q3"));
    assert!(answer.contains("MSA|AA|Q3"), "{answer}");
    assert!(!answer.contains("NORD1"), "{answer}");
    let answer = mllp_from(loopback, target(loopback), &qbp_from("HIS", "Q4"));
    assert!(answer.contains("MSA|AA|Q4"), "{answer}");
    assert!(
        answer.contains("NORD1") && answer.contains("L1"),
        "{answer}"
    );
}

/// Proxy mode: the upstream's patients belong to no network here, so
/// patient data goes through only to clients of every network; others
/// reach the types that hold none, and nothing that includes patients
/// from them. (The upstream is a closed port: what is forwarded answers
/// 502, what is refused never leaves.)
#[test]
fn the_proxy_forwards_patient_data_only_to_clients_of_every_network() {
    let (reader, entry) = issue_in_networks("reader", &["nord"], &["system/*.rs"]);
    let (everyone, everyone_entry) = issue_in_networks("regional", &["*"], &["system/*.rs"]);
    let closed = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        format!(
            "[targets.hospital]\nkind = \"fhir\"\nurl = \"http://127.0.0.1:{closed}/fhir\"\nallow_insecure = true\ntimeout_secs = 2\n\n\
             [fhir]\nupstream = \"hospital\"\n\n{entry}{everyone_entry}"
        ),
    )
    .unwrap();
    let gateway = Gateway::start_with(Options {
        args: vec!["--config".into(), path.display().to_string()],
        ..Options::default()
    });
    for (path, key, expected) in [
        ("/fhir/Patient?family=durand", &reader, 403),
        ("/fhir/Observation?code=x", &reader, 403),
        ("/fhir/Patient/p1/$everything", &reader, 403),
        ("/fhir/Practitioner?name=x", &reader, 502),
        (
            "/fhir/Practitioner?_revinclude=Observation:performer",
            &reader,
            403,
        ),
        (
            "/fhir/Organization?_has:Patient:organization:name=x",
            &reader,
            403,
        ),
        ("/fhir/Patient?family=durand", &everyone, 502),
        ("/fhir/Observation?code=x", &everyone, 502),
    ] {
        let reply = get(&gateway, path, Some(key));
        assert_eq!(reply.status, expected, "{path}: {}", reply.body);
        if expected == 403 {
            assert!(reply.body.contains("every network"), "{}", reply.body);
        }
    }
}

/// Every access to patient data is in the audit trail (who, what, which
/// patient, outcome), readable by patient with `system/AuditEvent.s` and
/// by nobody else, with the query's identifying values masked; the hash
/// chain verifies, and a record changed behind the gateway's back is
/// named by `passerelle audit verify`.
#[test]
fn every_access_is_audited_and_the_chain_verifies() {
    let (reader, entry) = issue_in_networks("reader", &["*"], &["system/Patient.rs"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clients.toml");
    std::fs::write(&path, &entry).unwrap();
    let data = dir.path().join("data");
    let gateway = Gateway::start_with(Options {
        args: vec!["--config".into(), path.display().to_string()],
        data_dir: Some(data.clone()),
        ..Options::default()
    });
    let created = send(
        &gateway,
        "POST",
        "/fhir/Patient",
        Some(common::TEST_KEY),
        "application/fhir+json",
        br#"{"resourceType":"Patient","identifier":[{"system":"urn:audit","value":"A-42"}],"name":[{"family":"MARTIN"}]}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        get(&gateway, &format!("/fhir/Patient/{id}"), Some(&reader)).status,
        200
    );
    let found = get(
        &gateway,
        "/fhir/Patient?identifier=urn:audit%7CA-42",
        Some(&reader),
    );
    assert_eq!(found.status, 200);
    // Refused: the reader may not read the trail.
    let refused = get(
        &gateway,
        &format!("/fhir/AuditEvent?patient=Patient/{id}"),
        Some(&reader),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);

    let trail = get(
        &gateway,
        &format!("/fhir/AuditEvent?patient=Patient/{id}"),
        Some(common::TEST_KEY),
    );
    assert_eq!(trail.status, 200, "{}", trail.body);
    let trail = trail.json();
    let events: Vec<&serde_json::Value> = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let of = |code: &str| {
        events
            .iter()
            .find(|e| e["subtype"][0]["code"] == code)
            .unwrap_or_else(|| panic!("no {code} in {trail}"))
    };
    let created = of("create");
    assert_eq!(created["action"], "C");
    assert_eq!(created["agent"][0]["who"]["display"], "local-admin");
    let read = of("read");
    assert_eq!(read["agent"][0]["who"]["display"], "reader");
    assert_eq!(read["outcome"], "0");
    assert_eq!(read["agent"][0]["network"]["address"], "127.0.0.1");
    // The search found the patient through its answer; its identifier is
    // not in the trail.
    let search = of("search-type");
    assert_eq!(
        search["entity"][1]["detail"][0]["valueString"],
        "identifier=***"
    );
    assert!(!trail.to_string().contains("A-42"), "{trail}");
    assert!(!trail.to_string().contains("MARTIN"), "{trail}");
    // The trail's search takes a patient and a bounded _count, nothing else.
    for (query, says) in [
        (
            format!("patient=Patient/{id}&_count=1001"),
            "_count is 1 to 1000",
        ),
        ("_count=5".to_string(), "needs patient="),
        (format!("patient=Patient/{id}&agent=reader"), "not 'agent'"),
    ] {
        let refused = get(
            &gateway,
            &format!("/fhir/AuditEvent?{query}"),
            Some(common::TEST_KEY),
        );
        assert_eq!(refused.status, 400, "{query}: {}", refused.body);
        assert!(
            refused.body.contains("OperationOutcome") && refused.body.contains(says),
            "{}",
            refused.body
        );
    }
    let written = send(
        &gateway,
        "POST",
        "/fhir/AuditEvent",
        Some(common::TEST_KEY),
        "application/fhir+json",
        br#"{"resourceType":"AuditEvent"}"#,
    );
    assert_eq!(written.status, 405, "{}", written.body);
    // Each event is an AuditEvent the R4 models read whole.
    for event in &events {
        assert_eq!(event["resourceType"], "AuditEvent");
        assert_eq!(event["type"]["code"], "rest");
    }

    let verify = || {
        passerelle()
            .args(["audit", "verify"])
            .env("PASSERELLE_STORAGE__DATA_DIR", &data)
            .output()
            .unwrap()
    };
    let verified = verify();
    assert!(verified.status.success(), "{verified:?}");
    assert!(String::from_utf8_lossy(&verified.stdout).starts_with("audit trail intact: "));
    drop(gateway);
    // Someone with the database file changes a record.
    {
        use passerelle_storage::sql::SqlValue;
        use passerelle_storage::Store;
        let store = passerelle_storage::sqlite::SqliteStore::open(&data).unwrap();
        store
            .sql_write(&mut |sql| {
                let changed = sql.execute(
                    "UPDATE audit_events SET event = replace(event, 'reader', 'nobody') WHERE seq = $1",
                    &[SqlValue::Int(2)],
                )?;
                assert_eq!(changed, 1);
                Ok(true)
            })
            .unwrap();
    }
    let verified = verify();
    assert!(!verified.status.success());
    assert!(
        String::from_utf8_lossy(&verified.stderr).contains("BROKEN at record 2"),
        "{verified:?}"
    );
}

/// A write of the repository and its audit record commit together: when
/// the trail refuses the record (a trigger someone put in the database),
/// the write is answered 503 and not made, whether a single update or a
/// transaction; with the trail back, the same write is made and recorded
/// once, inside the write's own transaction.
#[test]
fn a_write_and_its_audit_record_commit_together() {
    use passerelle_storage::Store;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gateway = Gateway::start_with(Options {
        data_dir: Some(data.clone()),
        ..Options::default()
    });
    let store = passerelle_storage::sqlite::SqliteStore::open(&data).unwrap();
    let ddl = |statement: &'static str| {
        store
            .sql_write(&mut |sql| {
                sql.execute(statement, &[])?;
                Ok(true)
            })
            .unwrap()
    };
    ddl("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events
         BEGIN SELECT RAISE(ABORT, 'the trail refuses'); END");
    let patient =
        br#"{"resourceType":"Patient","id":"unrecorded","name":[{"family":"SANSTRACE"}]}"#;
    let put = send(
        &gateway,
        "PUT",
        "/fhir/Patient/unrecorded",
        Some(common::TEST_KEY),
        "application/fhir+json",
        patient,
    );
    assert_eq!(put.status, 503, "{}", put.body);
    let transaction = br#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","identifier":[{"system":"urn:audit","value":"T-1"}]},
         "request":{"method":"POST","url":"Patient"}}]}"#;
    let posted = send(
        &gateway,
        "POST",
        "/fhir",
        Some(common::TEST_KEY),
        "application/fhir+json",
        transaction,
    );
    assert_eq!(posted.status, 503, "{}", posted.body);
    ddl("DROP TRIGGER refuse_audit");
    assert_eq!(
        get(&gateway, "/fhir/Patient/unrecorded", Some(common::TEST_KEY)).status,
        404
    );
    let none = get(
        &gateway,
        "/fhir/Patient?identifier=urn:audit%7CT-1",
        Some(common::TEST_KEY),
    );
    assert_eq!(none.json()["total"], 0, "{}", none.body);

    let put = send(
        &gateway,
        "PUT",
        "/fhir/Patient/unrecorded",
        Some(common::TEST_KEY),
        "application/fhir+json",
        patient,
    );
    assert_eq!(put.status, 201, "{}", put.body);
    let records = passerelle_storage::audit::for_patient(&store, "Patient/unrecorded", 10).unwrap();
    // The 503s could not be recorded (the trail refused); the read that
    // found nothing and the update that was made are, the update once.
    let updates: Vec<serde_json::Value> = records
        .iter()
        .map(|record| serde_json::from_str::<serde_json::Value>(record).unwrap())
        .filter(|record| record["subtype"][0]["code"] == "update")
        .collect();
    assert_eq!(updates.len(), 1, "{records:?}");
    assert_eq!(updates[0]["outcome"], "0");
    assert_eq!(updates[0]["outcomeDesc"], "HTTP 201");
    assert!(!records.concat().contains("SANSTRACE"));
}
