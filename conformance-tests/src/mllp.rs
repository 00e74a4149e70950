//! A plain MLLP client for the suite: frames messages, sends them (one at a
//! time or pipelined), and reads ACK frames back. Written from the MLLP
//! specification, independent of the gateway's codec.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Failure;

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];

pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    out.push(START);
    out.extend_from_slice(payload);
    out.extend_from_slice(&END);
    out
}

pub struct MllpConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl MllpConnection {
    pub async fn connect(addr: &str) -> Result<Self, Failure> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Failure(format!("mllp connect {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buffer: Vec::new(),
        })
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| Failure(format!("mllp write: {e}")))
    }

    pub async fn send(&mut self, payload: &[u8]) -> Result<(), Failure> {
        self.send_raw(&frame(payload)).await
    }

    /// The next ACK frame's payload, or `None` when the server closed.
    pub async fn read_ack(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, Failure> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(start) = self.buffer.iter().position(|b| *b == START) {
                if let Some(end) = self
                    .buffer
                    .windows(2)
                    .skip(start)
                    .position(|w| w == END)
                    .map(|p| p + start)
                {
                    let payload = self.buffer.get(start + 1..end).unwrap_or(&[]).to_vec();
                    self.buffer.drain(..end + 2);
                    return Ok(Some(payload));
                }
            }
            let mut chunk = [0u8; 65536];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| Failure("no ACK within the timeout".to_string()))?
                .map_err(|e| Failure(format!("mllp read: {e}")))?;
            if read == 0 {
                return Ok(None);
            }
            self.buffer
                .extend_from_slice(chunk.get(..read).unwrap_or(&[]));
        }
    }

    /// Sends one message and waits for its ACK.
    pub async fn exchange(&mut self, payload: &[u8]) -> Result<Ack, Failure> {
        self.send(payload).await?;
        match self.read_ack(Duration::from_secs(30)).await? {
            Some(ack) => Ok(Ack::parse(&ack)),
            None => Err(Failure("connection closed before the ACK".to_string())),
        }
    }
}

/// The parts of an ACK the suite checks.
#[derive(Debug, Clone, Default)]
pub struct Ack {
    pub raw: Vec<u8>,
    /// MSA-1
    pub code: String,
    /// MSA-2
    pub control_id: String,
    /// MSH-9
    pub message_type: String,
    /// ERR segments, raw.
    pub errors: Vec<String>,
}

impl Ack {
    pub fn parse(raw: &[u8]) -> Ack {
        let text = String::from_utf8_lossy(raw);
        let field_sep = text.chars().nth(3).unwrap_or('|');
        let mut ack = Ack {
            raw: raw.to_vec(),
            ..Ack::default()
        };
        for segment in text.split(['\r', '\n']) {
            let fields: Vec<&str> = segment.split(field_sep).collect();
            match fields.first().copied() {
                Some("MSH") => ack.message_type = fields.get(8).unwrap_or(&"").to_string(),
                Some("MSA") => {
                    ack.code = fields.get(1).unwrap_or(&"").to_string();
                    ack.control_id = fields.get(2).unwrap_or(&"").to_string();
                }
                Some("ERR") => ack.errors.push(segment.to_string()),
                _ => {}
            }
        }
        ack
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).replace('\r', "\n")
    }
}
