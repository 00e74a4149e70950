//! An ACK means the message is on disk: the gateway is killed with SIGKILL
//! in the middle of a load run, and every control ID that was acknowledged
//! must be in the journal afterwards, and the gateway must start again on
//! the same data.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Gateway, Options};

fn message(control_id: &str) -> Vec<u8> {
    let mut framed = vec![0x0B];
    framed.extend_from_slice(
        format!("MSH|^~\\&|LOAD|SITE|GW|GW|20261122101500||ORU^R01^ORU_R01|{control_id}|P|2.5\rPID|1||42^^^SITE^PI\rOBR|1\rOBX|1|NM|2345-7^Glucose^LN||1.50|g/L\r").as_bytes(),
    );
    framed.extend_from_slice(&[0x1C, 0x0D]);
    framed
}

/// Sends numbered messages with a pipelining window until the connection
/// fails; records the control IDs acknowledged with AA.
fn sender(
    addr: SocketAddr,
    connection: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = stream.try_clone().expect("clone");
    let window = 8;
    let mut sent = std::collections::VecDeque::new();
    let mut next = 0usize;
    let mut buffer = Vec::new();
    loop {
        while sent.len() < window && !stop.load(Ordering::Relaxed) {
            let id = format!("K{connection}-{next}");
            next += 1;
            if stream.write_all(&message(&id)).is_err() {
                return;
            }
            sent.push_back(id);
        }
        if sent.is_empty() {
            return;
        }
        let mut chunk = [0u8; 8192];
        let n = match reader.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buffer.extend_from_slice(&chunk[..n]);
        while let Some(end) = buffer.windows(2).position(|w| w == [0x1C, 0x0D]) {
            let ack = String::from_utf8_lossy(&buffer[..end]).into_owned();
            buffer.drain(..end + 2);
            let Some(id) = sent.pop_front() else { return };
            let msa = ack.split('\r').find(|s| s.starts_with("MSA")).unwrap_or("");
            let fields: Vec<&str> = msa.split('|').collect();
            if fields.get(1) == Some(&"AA") {
                assert_eq!(fields.get(2), Some(&id.as_str()), "ACK out of order");
                acked.lock().unwrap().push(id);
            }
        }
    }
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_message() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let mut gateway = Gateway::start_with(Options {
        data_dir: Some(data_dir.clone()),
        ..Options::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..4)
        .map(|connection| {
            let (stop, acked, addr) = (stop.clone(), acked.clone(), gateway.mllp_addr);
            std::thread::spawn(move || sender(addr, connection, stop, acked))
        })
        .collect();
    // Let the load run, then kill the gateway without warning.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 2000 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    gateway.signal("KILL");
    let status = gateway.wait_exit(Duration::from_secs(10));
    assert!(
        !status.success(),
        "SIGKILL should not look like a clean exit"
    );
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "load run too short to mean anything: {} ACKs",
        acked.len()
    );

    // The journal's inbox (journal.db) holds what the killed gateway had
    // not yet absorbed into its database: moved in, as the next start does.
    passerelle_storage::sqlite::absorb_inbox(&data_dir, None).unwrap();
    let connection = rusqlite::Connection::open(data_dir.join("passerelle.db")).unwrap();
    let mut lookup = connection
        .prepare("SELECT count(*) FROM journal WHERE control_id = ?1")
        .unwrap();
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| {
            lookup
                .query_row([id.as_str()], |row| row.get::<_, i64>(0))
                .unwrap()
                != 1
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages missing after SIGKILL: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    drop(lookup);
    drop(connection);

    // The gateway starts again on the same data, and a resent acknowledged
    // message is recognised, not stored twice.
    let restarted = Gateway::start_with(Options {
        data_dir: Some(data_dir.clone()),
        ..Options::default()
    });
    let mut stream = TcpStream::connect(restarted.mllp_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let resent = &acked[0];
    stream.write_all(&message(resent)).unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.contains(&format!("MSA|AA|{resent}")), "{answer}");
    passerelle_storage::sqlite::absorb_inbox(&data_dir, None).unwrap();
    let connection = rusqlite::Connection::open(data_dir.join("passerelle.db")).unwrap();
    let copies: i64 = connection
        .query_row(
            "SELECT count(*) FROM journal WHERE control_id = ?1",
            [resent.as_str()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(copies, 1);
}
