//! The tokio-util adapter: [`MessageCodec`] frames a socket into [`Message`]s.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{decode_frame, Limits};
use crate::{Message, WireError};

/// Decodes and encodes peer wire messages (after the handshake) under [`Limits`].
#[derive(Clone, Debug, Default)]
pub struct MessageCodec {
    /// The limits in force; the engine tightens them once the piece count is known.
    pub limits: Limits,
}

impl MessageCodec {
    /// A codec with the given limits.
    pub fn new(limits: Limits) -> Self {
        MessageCodec { limits }
    }
}

/// Codec errors: a protocol violation by the peer, or the socket's I/O error.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer broke the protocol.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Decoder for MessageCodec {
    type Item = Message;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        Ok(decode_frame(src, &self.limits)?)
    }
}

impl Encoder<Message> for MessageCodec {
    type Error = CodecError;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        msg.encode(dst);
        Ok(())
    }
}

impl Encoder<&Message> for MessageCodec {
    type Error = CodecError;

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        msg.encode(dst);
        Ok(())
    }
}
