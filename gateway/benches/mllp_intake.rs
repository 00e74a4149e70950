//! End-to-end HL7 v2 intake over MLLP: a gateway started in-process on a
//! temporary data directory, real loopback sockets, every message journaled
//! with `synchronous=FULL` before its ACK. One iteration = 8 connections each
//! sending 100 messages and waiting for every ACK (no pipelining).
//!
//!     cargo bench -p gateway --bench mllp_intake

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 8;
const PER_CONNECTION: usize = 100;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn frame(control_id: u64) -> Vec<u8> {
    let mut out = vec![0x0B];
    out.extend_from_slice(
        format!(
            "MSH|^~\\&|BENCH|SITE|PASSERELLE|GW|20261122101500||ORU^R01^ORU_R01|B{control_id}|P|2.5\r\
             PID|1||42^^^SITE^PI||TEST^PATIENT||19800101|M\r\
             OBR|1|||2345-7^Glucose^LN\r\
             OBX|1|NM|2345-7^Glucose^LN||1.50|g/L|0.70-1.10|H|||F\r"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&[0x1C, 0x0D]);
    out
}

async fn sender(addr: std::net::SocketAddr) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut buffer = vec![0u8; 4096];
    for _ in 0..PER_CONNECTION {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(&frame(id)).await.is_err() {
            return;
        }
        let mut received = 0;
        loop {
            let Ok(n) = stream.read(&mut buffer[received..]).await else {
                return;
            };
            if n == 0 {
                return;
            }
            received += n;
            if buffer[..received].ends_with(&[0x1C, 0x0D]) {
                break;
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.storage.data_dir = dir.path().join("data");
    config.http.listen = "127.0.0.1:0".parse().expect("addr");
    config.mllp.listen = "127.0.0.1:0".parse().expect("addr");
    let running = runtime
        .block_on(gateway::runtime::start(config))
        .expect("gateway starts");
    let addr = running.mllp_addr.expect("mllp listener");

    let mut group = c.benchmark_group("mllp_intake");
    group.sample_size(20);
    group.throughput(Throughput::Elements((CONNECTIONS * PER_CONNECTION) as u64));
    group.bench_function("8_connections_durable_ack", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let tasks: Vec<_> = (0..CONNECTIONS)
                    .map(|_| tokio::spawn(sender(addr)))
                    .collect();
                for task in tasks {
                    let _ = task.await;
                }
            })
        })
    });
    group.finish();
    running.shutdown.cancel();
    runtime.block_on(running.wait());
}

criterion_group!(mllp_intake, bench);
criterion_main!(mllp_intake);
