//! The catalogue of the Strata network: every request-response protocol and
//! gossip topic the node, gateway, relayer and CLI speak, with their limits.
//!
//! The p2p layer carries opaque bytes and learns this catalogue from its
//! configuration (`P2pConfig::with_protocols(ALL_PROTOCOLS)` and
//! `with_topics(ALL_TOPICS)`); an incoming request or gossip message names
//! its protocol or topic, which the application compares with these
//! constants. The names and tags here are bytes on the wire: changing one
//! splits the network.

use strata_primitives::protocol::{ProtocolSpec, TopicSpec};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// A task handed to a node (prompt, pipeline slot, voucher) and its answer.
pub const TASK: ProtocolSpec = ProtocolSpec {
    name: "/strata/task/1",
    max_request: MIB,
    max_response: MIB,
    timeout_secs: 60,
};

/// Hidden states passed between pipeline stages.
pub const HIDDEN_STATE: ProtocolSpec = ProtocolSpec {
    name: "/strata/hidden-state/1",
    max_request: 64 * MIB,
    max_response: 64 * KIB,
    timeout_secs: 60,
};

/// A verifier asking a node for commitment openings.
pub const OPENING: ProtocolSpec = ProtocolSpec {
    name: "/strata/opening/1",
    max_request: 64 * KIB,
    max_response: 64 * MIB,
    timeout_secs: 60,
};

/// A node handing a signed receipt to a relayer, which answers once it is
/// stored.
pub const RECEIPT: ProtocolSpec = ProtocolSpec {
    name: "/strata/receipt/1",
    max_request: 4 * KIB,
    max_response: 4 * KIB,
    timeout_secs: 30,
};

/// Every request-response protocol of the network.
pub const ALL_PROTOCOLS: &[ProtocolSpec] = &[TASK, HIDDEN_STATE, OPENING, RECEIPT];

/// Largest payload of every application topic.
const MAX_GOSSIP_PAYLOAD: usize = 64 * KIB;

/// Nodes announce their capacity (model, layers served, free slots, prices).
pub const CAPACITY: TopicSpec = TopicSpec {
    tag: 1,
    name: "/strata/capacity/1",
    max_payload: MAX_GOSSIP_PAYLOAD,
};

/// Signed task receipts.
pub const RECEIPTS: TopicSpec = TopicSpec {
    tag: 2,
    name: "/strata/receipts/1",
    max_payload: MAX_GOSSIP_PAYLOAD,
};

/// Software and policy version announcements.
pub const VERSIONS: TopicSpec = TopicSpec {
    tag: 3,
    name: "/strata/versions/1",
    max_payload: MAX_GOSSIP_PAYLOAD,
};

/// Committee members' signed votes on challenges ([`crate::audit::VerdictVote`]);
/// whoever holds a quorum submits the verdict. (Tag 4 is the p2p layer's own
/// distribution topic.)
pub const VERDICTS: TopicSpec = TopicSpec {
    tag: 5,
    name: "/strata/verdicts/1",
    max_payload: KIB,
};

/// Pipeline hops announce the blocks they hold and their speed per block
/// ([`crate::capacity::HopCapacity`]): what gateways route pipelines over.
pub const HOP_CAPACITY: TopicSpec = TopicSpec {
    tag: 6,
    name: "/strata/hop-capacity/2",
    max_payload: MAX_GOSSIP_PAYLOAD,
};

/// Trainers' signed policy updates ([`crate::policy::PolicyAnnouncement`]):
/// which adapter version to fetch through the p2p distribution, and its
/// digest. Small, so a tight limit.
pub const POLICY: TopicSpec = TopicSpec {
    tag: 7,
    name: "/strata/policy/1",
    max_payload: KIB,
};

/// Every gossip topic of the network.
pub const ALL_TOPICS: &[TopicSpec] =
    &[CAPACITY, RECEIPTS, VERSIONS, VERDICTS, HOP_CAPACITY, POLICY];

// Every message of the wire crate fits the protocol or topic that carries
// it; checked when compiling, so the catalogue cannot drift from the types.
const _: () = {
    assert!(crate::task::MAX_TASK_MESSAGE_BYTES <= TASK.max_request);
    assert!(crate::task::MAX_TASK_MESSAGE_BYTES <= TASK.max_response);
    assert!(crate::MAX_RECEIPT_BYTES <= RECEIPT.max_request);
    assert!(crate::MAX_RECEIPT_BYTES <= RECEIPTS.max_payload);
    assert!(crate::capacity::MAX_CAPACITY_BYTES <= CAPACITY.max_payload);
    assert!(crate::capacity::MAX_HOP_CAPACITY_BYTES <= HOP_CAPACITY.max_payload);
    assert!(crate::audit::MAX_VOTE_BYTES <= VERDICTS.max_payload);
    assert!(crate::policy::MAX_POLICY_ANNOUNCEMENT_BYTES <= POLICY.max_payload);
    assert!(crate::audit::MAX_OPENING_REQUEST_BYTES <= OPENING.max_request);
    assert!(crate::audit::MAX_OPENING_RESPONSE_BYTES <= OPENING.max_response);
    assert!(crate::hop::MAX_HOP_REQUEST_BYTES <= HIDDEN_STATE.max_request);
    assert!(crate::hop::MAX_HOP_RESPONSE_BYTES <= HIDDEN_STATE.max_response);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags_are_unique() {
        for (i, p) in ALL_PROTOCOLS.iter().enumerate() {
            assert!(p.name.starts_with('/'), "{}", p.name);
            assert!(ALL_PROTOCOLS[..i].iter().all(|o| o.name != p.name));
        }
        for (i, t) in ALL_TOPICS.iter().enumerate() {
            assert!(ALL_TOPICS[..i]
                .iter()
                .all(|o| o.name != t.name && o.tag != t.tag));
        }
    }
}
