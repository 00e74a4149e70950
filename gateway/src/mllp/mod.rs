//! HL7 v2 over MLLP: the frame codec and the TCP listener. Each connection
//! reads frames, hands each message to the intake (which journals it before
//! answering), and writes one ACK per message, in the order the messages
//! came, while later pipelined messages are already being processed.

pub mod codec;
pub mod listener;
