//! Misbehaviour as named kinds, each with the penalty it costs.
//!
//! A kind, unlike a free-form reason string, can be matched on by the
//! application, counted in metrics and tuned in one place. Its `Display`
//! is the line the logs have always shown.

use std::fmt;

use libp2p::request_response::{InboundFailure, OutboundFailure};

use crate::codec::{as_decode_error, DecodeError};

/// Points for proof of a broken or hostile peer (an oversized or malformed
/// frame, forged gossip, a wrong manifest, a corrupt chunk): one strike
/// reaches the default ban threshold.
const STRIKE: u32 = 100;
/// Points for each request over a peer's budget: a burst now and then is
/// forgiven as the points decay; a sustained flood ends in a ban.
const NUISANCE: u32 = 1;

/// The request-response protocol a misbehaviour happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The layer's own chunk exchange.
    Chunks,
    /// An application protocol, by its registered name.
    App(&'static str),
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Chunks => f.write_str("chunk"),
            Protocol::App(name) => f.write_str(name),
        }
    }
}

/// Which half of a request-response exchange was bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The peer's request to us.
    Request,
    /// The peer's response to our request.
    Response,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Request => "request",
            Direction::Response => "response",
        })
    }
}

/// What a peer did wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misbehaviour {
    /// A frame announcing more bytes than its protocol allows.
    OversizedFrame {
        /// Where.
        protocol: Protocol,
        /// Which half.
        direction: Direction,
        /// The decoder's or transport's words.
        detail: String,
    },
    /// A frame that did not decode.
    MalformedMessage {
        /// Where.
        protocol: Protocol,
        /// Which half.
        direction: Direction,
        /// The decoder's or transport's words.
        detail: String,
    },
    /// Gossip whose transport signature names no ed25519 author.
    AnonymousGossip,
    /// A gossip envelope that did not parse.
    MalformedGossip {
        /// Why.
        detail: String,
    },
    /// Gossip with a bad signature, signed by someone other than its author,
    /// or published on another topic than its own.
    ForgedGossip {
        /// Which of these.
        detail: String,
    },
    /// A manifest that does not hash to the file root asked for.
    WrongManifest {
        /// The file root asked for.
        root: [u8; 32],
    },
    /// A chunk that does not match its manifest.
    CorruptChunk {
        /// The file.
        root: [u8; 32],
        /// The chunk.
        index: u32,
    },
    /// An inbound request beyond the peer's budget.
    OverRequestBudget {
        /// Where.
        protocol: Protocol,
    },
    /// Something only the application can see: a message that decoded but
    /// breaks the protocol's own rules (a hidden-state step of the wrong
    /// shape, for a sequence the sender does not own, ...).
    Application {
        /// Where.
        protocol: Protocol,
        /// How bad it is.
        severity: Severity,
        /// The application's words.
        detail: String,
    },
}

/// How much an application-reported misbehaviour costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Could be an honest race (a message for a sequence that just closed):
    /// forgiven unless it keeps happening.
    Nuisance,
    /// Proof of a broken or hostile peer: one reaches the ban threshold.
    Strike,
}

impl Misbehaviour {
    /// Penalty points this misbehaviour costs.
    pub fn weight(&self) -> u32 {
        match self {
            Misbehaviour::OverRequestBudget { .. } => NUISANCE,
            Misbehaviour::Application { severity, .. } => match severity {
                Severity::Nuisance => NUISANCE,
                Severity::Strike => STRIKE,
            },
            Misbehaviour::OversizedFrame { .. }
            | Misbehaviour::MalformedMessage { .. }
            | Misbehaviour::AnonymousGossip
            | Misbehaviour::MalformedGossip { .. }
            | Misbehaviour::ForgedGossip { .. }
            | Misbehaviour::WrongManifest { .. }
            | Misbehaviour::CorruptChunk { .. } => STRIKE,
        }
    }

    /// A frame refused by the codec: oversized when it announced too many
    /// bytes, malformed otherwise.
    pub(crate) fn bad_frame(
        protocol: Protocol,
        direction: Direction,
        cause: Option<&DecodeError>,
        detail: String,
    ) -> Self {
        if matches!(cause, Some(DecodeError::TooLarge { .. })) {
            Misbehaviour::OversizedFrame {
                protocol,
                direction,
                detail,
            }
        } else {
            Misbehaviour::MalformedMessage {
                protocol,
                direction,
                detail,
            }
        }
    }

    /// The misbehaviour behind a failed inbound exchange, if it was the
    /// peer's fault (the codec reports bad bytes as `InvalidData`).
    pub(crate) fn of_inbound(protocol: Protocol, error: &InboundFailure) -> Option<Self> {
        match error {
            InboundFailure::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                Some(Misbehaviour::bad_frame(
                    protocol,
                    Direction::Request,
                    as_decode_error(io).as_ref(),
                    error.to_string(),
                ))
            }
            _ => None,
        }
    }

    /// The misbehaviour behind a failed outbound exchange, if it was the
    /// peer's fault.
    pub(crate) fn of_outbound(protocol: Protocol, error: &OutboundFailure) -> Option<Self> {
        match error {
            OutboundFailure::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                Some(Misbehaviour::bad_frame(
                    protocol,
                    Direction::Response,
                    as_decode_error(io).as_ref(),
                    error.to_string(),
                ))
            }
            _ => None,
        }
    }
}

struct Hex<'a>(&'a [u8; 32]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misbehaviour::OversizedFrame {
                protocol,
                direction,
                detail,
            }
            | Misbehaviour::MalformedMessage {
                protocol,
                direction,
                detail,
            } => write!(f, "malformed {protocol} {direction}: {detail}"),
            Misbehaviour::AnonymousGossip => f.write_str("gossip without an ed25519 author"),
            Misbehaviour::MalformedGossip { detail } | Misbehaviour::ForgedGossip { detail } => {
                write!(f, "gossip refused: {detail}")
            }
            Misbehaviour::WrongManifest { root } => write!(f, "wrong manifest for {}", Hex(root)),
            Misbehaviour::CorruptChunk { root, index } => {
                write!(f, "corrupt chunk {index} of {}", Hex(root))
            }
            Misbehaviour::OverRequestBudget {
                protocol: Protocol::Chunks,
            } => f.write_str("chunk request over the request budget"),
            Misbehaviour::OverRequestBudget {
                protocol: Protocol::App(name),
            } => write!(f, "{name} over the request budget"),
            Misbehaviour::Application {
                protocol, detail, ..
            } => write!(f, "{protocol}: {detail}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_keeps_the_log_lines() {
        let root = [0xab; 32];
        let hex = "ab".repeat(32);
        let cases = [
            (
                Misbehaviour::CorruptChunk { root, index: 7 },
                format!("corrupt chunk 7 of {hex}"),
            ),
            (
                Misbehaviour::WrongManifest { root },
                format!("wrong manifest for {hex}"),
            ),
            (
                Misbehaviour::OverRequestBudget {
                    protocol: Protocol::Chunks,
                },
                "chunk request over the request budget".to_string(),
            ),
            (
                Misbehaviour::OverRequestBudget {
                    protocol: Protocol::App("/strata/task/1"),
                },
                "/strata/task/1 over the request budget".to_string(),
            ),
            (
                Misbehaviour::bad_frame(
                    Protocol::Chunks,
                    Direction::Request,
                    Some(&DecodeError::UnknownTag(9)),
                    "unknown tag 9".into(),
                ),
                "malformed chunk request: unknown tag 9".to_string(),
            ),
            (
                Misbehaviour::AnonymousGossip,
                "gossip without an ed25519 author".to_string(),
            ),
            (
                Misbehaviour::ForgedGossip {
                    detail: "bad signature".into(),
                },
                "gossip refused: bad signature".to_string(),
            ),
        ];
        for (m, text) in cases {
            assert_eq!(m.to_string(), text);
        }
    }

    #[test]
    fn codec_errors_are_classified() {
        let too_large = DecodeError::TooLarge { len: 9, limit: 4 };
        assert!(matches!(
            Misbehaviour::bad_frame(
                Protocol::App("/x/1"),
                Direction::Response,
                Some(&too_large),
                String::new()
            ),
            Misbehaviour::OversizedFrame {
                direction: Direction::Response,
                ..
            }
        ));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, too_large);
        assert!(matches!(
            Misbehaviour::of_inbound(Protocol::Chunks, &InboundFailure::Io(io)),
            Some(Misbehaviour::OversizedFrame { .. })
        ));
        // A connection that merely dropped is nobody's misbehaviour.
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            Misbehaviour::of_outbound(Protocol::Chunks, &OutboundFailure::Io(reset)),
            None
        );
        assert_eq!(
            Misbehaviour::of_outbound(Protocol::Chunks, &OutboundFailure::Timeout),
            None
        );
    }
}
