//! The MLLP frame codec (HL7 v2 Minimal Lower Layer Protocol, release 2): a
//! frame is `0x0B`, the message, then `0x1C 0x0D`.
//!
//! Decisions, where senders are sloppy or hostile:
//! - bytes before a start block are skipped (and counted as junk);
//! - scanning resumes where the previous read stopped, so a large message
//!   arriving in many small reads costs O(n), not O(n²);
//! - frames arriving together are yielded one by one, in order;
//! - `0x1C` not followed by `0x0D` is message data (it is not a valid HL7
//!   character either, so the parser will refuse it with a reason);
//! - a `0x0B` inside a frame starts a new frame: the partial one is dropped
//!   as junk (the sender restarted);
//! - a frame over the size limit is not buffered: its bytes are discarded up
//!   to its end block, then it is reported as `Oversized` so the connection
//!   can answer it and go on.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

pub const START_BLOCK: u8 = 0x0B;
pub const END_BLOCK: u8 = 0x1C;
pub const CARRIAGE_RETURN: u8 = 0x0D;

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MllpFrame {
    /// A complete message, without the envelope.
    Message(BytesMut),
    /// A complete frame over the size limit; its content was discarded.
    Oversized { len_seen: usize },
    /// The stream ended inside a frame.
    Truncated { len: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    #[error("mllp i/o: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for a start block.
    Idle,
    /// Inside a frame; `scanned` bytes after the start block have been
    /// looked at already.
    InFrame { scanned: usize },
    /// Inside a frame that is over the limit; its bytes are being dropped.
    Discarding { seen: usize, pending_end: bool },
}

#[derive(Debug)]
pub struct MllpCodec {
    max_frame_len: usize,
    state: State,
    junk_bytes: u64,
    /// When the frame being read began (a start block seen, no end yet).
    frame_started: Option<std::time::Instant>,
}

impl MllpCodec {
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            max_frame_len,
            state: State::Idle,
            junk_bytes: 0,
            frame_started: None,
        }
    }

    /// When the frame being read began; `None` between frames. The
    /// listener closes a connection whose frame takes longer than the
    /// frame timeout (a sender that starts a frame and stops holds a
    /// connection slot otherwise).
    pub fn frame_started(&self) -> Option<std::time::Instant> {
        self.frame_started
    }

    /// Bytes skipped outside frames so far (for logs: counts only).
    pub fn junk_bytes(&self) -> u64 {
        self.junk_bytes
    }

    fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<MllpFrame>, MllpError> {
        loop {
            match self.state {
                State::Idle => match src.iter().position(|b| *b == START_BLOCK) {
                    Some(start) => {
                        self.junk_bytes += start as u64;
                        src.advance(start + 1);
                        self.state = State::InFrame { scanned: 0 };
                    }
                    None => {
                        self.junk_bytes += src.len() as u64;
                        src.clear();
                        return Ok(None);
                    }
                },
                State::InFrame { scanned } => {
                    // Resume one byte early: a 0x1C may have been the last
                    // byte of the previous read.
                    let from = scanned.saturating_sub(1);
                    let window = src.get(from..).unwrap_or(&[]);
                    let mut found_end = None;
                    let mut restart = None;
                    for (offset, pair) in window.windows(2).enumerate() {
                        if pair[0] == START_BLOCK {
                            restart = Some(from + offset);
                            break;
                        }
                        if pair[0] == END_BLOCK && pair[1] == CARRIAGE_RETURN {
                            found_end = Some(from + offset);
                            break;
                        }
                    }
                    if found_end.is_none()
                        && restart.is_none()
                        && window.last() == Some(&START_BLOCK)
                    {
                        restart = Some(src.len() - 1);
                    }
                    if let Some(end) = found_end {
                        if end > self.max_frame_len {
                            src.advance(end + 2);
                            self.state = State::Idle;
                            return Ok(Some(MllpFrame::Oversized { len_seen: end }));
                        }
                        let message = src.split_to(end);
                        src.advance(2);
                        self.state = State::Idle;
                        return Ok(Some(MllpFrame::Message(message)));
                    }
                    if let Some(at) = restart {
                        self.junk_bytes += at as u64 + 1;
                        src.advance(at);
                        self.state = State::Idle;
                        continue;
                    }
                    // A trailing 0x1C may be the first half of the end
                    // block: it is not message content yet.
                    let content = src.len() - usize::from(src.last() == Some(&END_BLOCK));
                    if content > self.max_frame_len {
                        let seen = src.len();
                        let pending_end = src.last() == Some(&END_BLOCK);
                        src.clear();
                        self.state = State::Discarding { seen, pending_end };
                        continue;
                    }
                    self.state = State::InFrame { scanned: src.len() };
                    return Ok(None);
                }
                State::Discarding { seen, pending_end } => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    if pending_end && src.first() == Some(&CARRIAGE_RETURN) {
                        src.advance(1);
                        self.state = State::Idle;
                        return Ok(Some(MllpFrame::Oversized {
                            len_seen: seen.saturating_sub(1),
                        }));
                    }
                    // The first start block or end block decides: a start
                    // block means the sender restarted (the oversized
                    // partial frame is junk), an end block closes it.
                    let mut restart = None;
                    let mut end = None;
                    for (offset, byte) in src.iter().enumerate() {
                        if *byte == START_BLOCK {
                            restart = Some(offset);
                            break;
                        }
                        if *byte == END_BLOCK && src.get(offset + 1) == Some(&CARRIAGE_RETURN) {
                            end = Some(offset);
                            break;
                        }
                    }
                    if let Some(at) = restart {
                        // The abandoned frame's own start block is junk too.
                        self.junk_bytes += (seen + at) as u64 + 1;
                        src.advance(at);
                        self.state = State::Idle;
                        continue;
                    }
                    if let Some(end) = end {
                        src.advance(end + 2);
                        self.state = State::Idle;
                        return Ok(Some(MllpFrame::Oversized {
                            len_seen: seen + end,
                        }));
                    }
                    let pending_end = src.last() == Some(&END_BLOCK);
                    let len = src.len();
                    src.clear();
                    self.state = State::Discarding {
                        seen: seen + len,
                        pending_end,
                    };
                    return Ok(None);
                }
            }
        }
    }
}

impl Decoder for MllpCodec {
    type Item = MllpFrame;
    type Error = MllpError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<MllpFrame>, MllpError> {
        let decoded = self.decode_frame(src);
        match self.state {
            State::Idle => self.frame_started = None,
            State::InFrame { .. } | State::Discarding { .. } => {
                if self.frame_started.is_none() || matches!(decoded, Ok(Some(_))) {
                    // A frame ended and the next began in this read.
                    self.frame_started = Some(std::time::Instant::now());
                }
            }
        }
        decoded
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<MllpFrame>, MllpError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        let truncated = match self.state {
            State::Idle => None,
            State::InFrame { .. } => Some(src.len()),
            State::Discarding { seen, .. } => Some(seen),
        };
        src.clear();
        self.state = State::Idle;
        Ok(truncated.map(|len| MllpFrame::Truncated { len }))
    }
}

impl Encoder<Bytes> for MllpCodec {
    type Error = MllpError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), MllpError> {
        encode_frame(&payload, dst);
        Ok(())
    }
}

impl Encoder<&[u8]> for MllpCodec {
    type Error = MllpError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), MllpError> {
        encode_frame(payload, dst);
        Ok(())
    }
}

fn encode_frame(payload: &[u8], dst: &mut BytesMut) {
    dst.reserve(payload.len() + 3);
    dst.extend_from_slice(&[START_BLOCK]);
    dst.extend_from_slice(payload);
    dst.extend_from_slice(&[END_BLOCK, CARRIAGE_RETURN]);
}

/// The checks the MLLP fuzz target runs, shared with the plain test that
/// replays its corpus: the first byte picks a chunk size and the frame limit;
/// decoding the rest in chunks must not panic, must never yield a message
/// over the limit, and must yield the same items as decoding it whole.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 31) + 1;
    let limit = usize::from(first) * 4 + 1;
    let decode = |chunk: usize| {
        let mut codec = MllpCodec::new(limit);
        let mut buffer = BytesMut::new();
        let mut items = Vec::new();
        for piece in input.chunks(chunk) {
            buffer.extend_from_slice(piece);
            while let Ok(Some(item)) = codec.decode(&mut buffer) {
                items.push(item);
            }
        }
        while let Ok(Some(item)) = codec.decode_eof(&mut buffer) {
            items.push(item);
        }
        items
    };
    let chunked = decode(chunk);
    for item in &chunked {
        if let MllpFrame::Message(message) = item {
            assert!(message.len() <= limit, "frame over the limit");
        }
    }
    let messages = |items: &[MllpFrame]| -> Vec<BytesMut> {
        items
            .iter()
            .filter_map(|item| match item {
                MllpFrame::Message(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        messages(&chunked),
        messages(&decode(input.len().max(1))),
        "chunking changed the frames"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_frame(payload, &mut out);
        out.to_vec()
    }

    /// Feeds `input` in chunks of the given sizes and collects every item.
    fn decode_chunked(codec: &mut MllpCodec, input: &[u8], chunks: &[usize]) -> Vec<MllpFrame> {
        let mut buffer = BytesMut::new();
        let mut items = Vec::new();
        let mut rest = input;
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let size = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
            buffer.extend_from_slice(&rest[..size]);
            rest = &rest[size..];
            while let Some(item) = codec.decode(&mut buffer).unwrap() {
                items.push(item);
            }
        }
        while let Some(item) = codec.decode_eof(&mut buffer).unwrap() {
            items.push(item);
        }
        items
    }

    fn message(text: &str) -> MllpFrame {
        MllpFrame::Message(BytesMut::from(text.as_bytes()))
    }

    #[test]
    fn single_frame() {
        let items = decode_chunked(&mut MllpCodec::new(1024), &framed(b"MSH|a"), &[1000]);
        assert_eq!(items, vec![message("MSH|a")]);
    }

    #[test]
    fn pipelined_frames_stay_apart() {
        let mut input = framed(b"MSH|1");
        input.extend(framed(b"MSH|2"));
        input.extend(framed(b"MSH|3"));
        let items = decode_chunked(&mut MllpCodec::new(1024), &input, &[1000]);
        assert_eq!(
            items,
            vec![message("MSH|1"), message("MSH|2"), message("MSH|3")]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let mut input = framed(b"MSH|first\rPID|1");
        input.extend(framed(b"MSH|second"));
        for split in 1..input.len() {
            let mut codec = MllpCodec::new(1024);
            let mut buffer = BytesMut::from(&input[..split]);
            let mut items = Vec::new();
            while let Some(item) = codec.decode(&mut buffer).unwrap() {
                items.push(item);
            }
            buffer.extend_from_slice(&input[split..]);
            while let Some(item) = codec.decode(&mut buffer).unwrap() {
                items.push(item);
            }
            assert_eq!(
                items,
                vec![message("MSH|first\rPID|1"), message("MSH|second")],
                "split at {split}"
            );
        }
    }

    #[test]
    fn junk_before_start_is_skipped_and_counted() {
        let mut input = b"\r\nnoise".to_vec();
        input.extend(framed(b"MSH|x"));
        let mut codec = MllpCodec::new(1024);
        let items = decode_chunked(&mut codec, &input, &[3]);
        assert_eq!(items, vec![message("MSH|x")]);
        assert_eq!(codec.junk_bytes(), 7);
    }

    #[test]
    fn oversized_frame_is_reported_and_the_next_one_served() {
        let big = vec![b'A'; 5000];
        let mut input = framed(&big);
        input.extend(framed(b"MSH|after"));
        for chunk in [1usize, 7, 100, 10_000] {
            let items = decode_chunked(&mut MllpCodec::new(1000), &input, &[chunk]);
            assert_eq!(items.len(), 2, "chunk {chunk}: {items:?}");
            assert!(
                matches!(items[0], MllpFrame::Oversized { len_seen } if len_seen == 5000),
                "chunk {chunk}: {:?}",
                items[0]
            );
            assert_eq!(items[1], message("MSH|after"));
        }
    }

    #[test]
    fn frame_exactly_at_the_limit_with_a_split_end_block() {
        let mut input = framed(b"MSH|3");
        input.extend(framed(b"MSH|4"));
        for chunk in 1..input.len() {
            let items = decode_chunked(&mut MllpCodec::new(5), &input, &[chunk]);
            assert_eq!(
                items,
                vec![message("MSH|3"), message("MSH|4")],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn start_block_while_discarding_restarts() {
        let mut input = b"\x0b".to_vec();
        input.extend(vec![b'A'; 50]);
        input.extend(framed(b"ok"));
        for chunk in [1usize, 2, 7, 100] {
            let mut codec = MllpCodec::new(5);
            let items = decode_chunked(&mut codec, &input, &[chunk]);
            assert_eq!(items, vec![message("ok")], "chunk {chunk}");
            // The abandoned frame: its start block and its 50 bytes.
            assert_eq!(codec.junk_bytes(), 51, "chunk {chunk}");
        }
    }

    #[test]
    fn truncated_frame_at_eof() {
        let input = b"\x0bMSH|never ends";
        let items = decode_chunked(&mut MllpCodec::new(1024), input, &[4]);
        assert_eq!(items, vec![MllpFrame::Truncated { len: 14 }]);
    }

    #[test]
    fn empty_frame() {
        let items = decode_chunked(&mut MllpCodec::new(1024), &framed(b""), &[1]);
        assert_eq!(items, vec![message("")]);
    }

    #[test]
    fn lone_end_block_is_data() {
        let items = decode_chunked(&mut MllpCodec::new(1024), &framed(b"A\x1cB"), &[1]);
        assert_eq!(items, vec![message("A\x1cB")]);
    }

    #[test]
    fn start_block_inside_a_frame_restarts() {
        let mut input = b"\x0bpartial".to_vec();
        input.extend(framed(b"MSH|whole"));
        let items = decode_chunked(&mut MllpCodec::new(1024), &input, &[2]);
        assert_eq!(items, vec![message("MSH|whole")]);
    }

    #[tokio::test]
    async fn works_over_real_async_io() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_util::codec::Framed;
        let (client, server) = tokio::io::duplex(64);
        let mut client = Framed::new(client, MllpCodec::new(1 << 20));
        let mut server = Framed::new(server, MllpCodec::new(1 << 20));
        let payload = Bytes::from(vec![b'x'; 10_000]);
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            client.send(sent).await.unwrap();
            client.send(Bytes::from_static(b"MSH|2")).await.unwrap();
        });
        let first = server.next().await.unwrap().unwrap();
        assert_eq!(first, MllpFrame::Message(BytesMut::from(&payload[..])));
        let second = server.next().await.unwrap().unwrap();
        assert_eq!(second, message("MSH|2"));
        writer.await.unwrap();
    }

    proptest! {
        #[test]
        fn random_payloads_and_chunkings_round_trip(
            payloads in proptest::collection::vec(
                proptest::collection::vec(any::<u8>().prop_filter("no envelope bytes", |b| *b != START_BLOCK && *b != END_BLOCK), 0..300),
                1..8),
            chunks in proptest::collection::vec(1usize..64, 1..10),
        ) {
            let mut input = Vec::new();
            for payload in &payloads {
                input.extend(framed(payload));
            }
            let items = decode_chunked(&mut MllpCodec::new(4096), &input, &chunks);
            let expected: Vec<MllpFrame> = payloads.iter().map(|p| MllpFrame::Message(BytesMut::from(&p[..]))).collect();
            prop_assert_eq!(items, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_exceed_the_limit(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            chunks in proptest::collection::vec(1usize..50, 1..5),
        ) {
            for item in decode_chunked(&mut MllpCodec::new(100), &input, &chunks) {
                if let MllpFrame::Message(message) = item {
                    prop_assert!(message.len() <= 100);
                }
            }
        }
    }
}
