//! Node identity: the operator's Solana keypair *is* the libp2p identity.
//!
//! A Solana CLI keypair file is a JSON array of 64 bytes: the 32-byte ed25519
//! secret seed followed by the 32-byte public key. The same ed25519 key signs
//! receipts, is registered on-chain as the node key, and derives the libp2p
//! `PeerId`, so anyone can check that a peer is the staked node it claims to be:
//! `peer_id_of(onchain_key) == remote_peer_id`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use libp2p::identity::{ed25519, Keypair, PublicKey};
use libp2p::PeerId;

/// Errors while loading or converting an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read.
    #[error("cannot read keypair file {path}: {source}")]
    Io {
        /// File that was being read.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not a JSON array of 64 numbers in 0..=255.
    #[error("keypair is not a JSON array of 64 bytes: {0}")]
    Format(String),
    /// The secret half is not a valid ed25519 seed.
    #[error("invalid ed25519 secret key")]
    BadSecret,
    /// The public half stored in the file does not match the secret half.
    #[error("public key in keypair file does not match its secret key")]
    PublicMismatch,
    /// A string was not a valid base58 node id.
    #[error("invalid node id: {0}")]
    BadNodeId(String),
}

/// A node's identity on the network and on-chain: its ed25519 public key, which
/// is also its Solana pubkey. Displayed in base58 like Solana addresses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The libp2p peer id derived from this key.
    pub fn peer_id(&self) -> PeerId {
        peer_id_of(self.0)
    }

    /// The node id behind a libp2p peer id, if that peer id is an ed25519 key.
    pub fn from_peer_id(peer: &PeerId) -> Option<Self> {
        solana_pubkey_of(peer).map(NodeId)
    }

    /// The node id in a multiaddr's `/p2p/<peer id>` suffix (how relayers,
    /// seeders and nodes are named on command lines and on-chain).
    pub fn from_multiaddr(addr: &str) -> Result<Self, IdentityError> {
        let bad = |why: &str| IdentityError::BadNodeId(format!("{addr}: {why}"));
        let peer = addr
            .rsplit_once("/p2p/")
            .map(|(_, p)| p)
            .ok_or_else(|| bad("lacks /p2p/<peer id>"))?;
        let peer: PeerId = peer.parse().map_err(|e| bad(&format!("{e}")))?;
        Self::from_peer_id(&peer).ok_or_else(|| bad("not an ed25519 peer id"))
    }
}

/// The node id of a peer, for labelling events. Non-ed25519 peers are
/// disconnected on arrival; the zero id only labels events that may still
/// race in from them.
pub(crate) fn node_of(peer: &PeerId) -> NodeId {
    NodeId::from_peer_id(peer).unwrap_or(NodeId([0; 32]))
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58_encode(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = bs58_decode(s).ok_or_else(|| IdentityError::BadNodeId(s.to_string()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| IdentityError::BadNodeId(s.to_string()))?;
        Ok(NodeId(arr))
    }
}

/// The local node's signing identity.
#[derive(Clone)]
pub struct NodeIdentity {
    keypair: ed25519::Keypair,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "NodeIdentity({})", self.node_id())
    }
}

impl NodeIdentity {
    /// A fresh random identity (tests, throwaway peers).
    pub fn generate() -> Self {
        NodeIdentity {
            keypair: ed25519::Keypair::generate(),
        }
    }

    /// Load a Solana CLI keypair file (`solana-keygen new -o key.json`).
    pub fn from_solana_keypair_file(path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_solana_json(&text)
    }

    /// Parse the contents of a Solana CLI keypair file.
    pub fn from_solana_json(text: &str) -> Result<Self, IdentityError> {
        let values: Vec<u64> =
            serde_json::from_str(text.trim()).map_err(|e| IdentityError::Format(e.to_string()))?;
        if values.len() != 64 {
            return Err(IdentityError::Format(format!(
                "expected 64 numbers, found {}",
                values.len()
            )));
        }
        let mut bytes = [0u8; 64];
        for (b, v) in bytes.iter_mut().zip(values) {
            *b =
                u8::try_from(v).map_err(|_| IdentityError::Format(format!("{v} is not a byte")))?;
        }
        Self::from_keypair_bytes(bytes)
    }

    /// From the 64 raw bytes of a Solana keypair (secret seed || public key).
    /// The public half must match the secret: a file whose halves disagree
    /// would make the PeerId differ from the on-chain key.
    pub fn from_keypair_bytes(bytes: [u8; 64]) -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[..32]);
        let secret =
            ed25519::SecretKey::try_from_bytes(&mut seed).map_err(|_| IdentityError::BadSecret)?;
        let keypair = ed25519::Keypair::from(secret);
        if keypair.public().to_bytes()[..] != bytes[32..] {
            return Err(IdentityError::PublicMismatch);
        }
        Ok(NodeIdentity { keypair })
    }

    /// The Solana CLI JSON form of this keypair.
    pub fn to_solana_json(&self) -> String {
        let bytes = self.keypair.to_bytes();
        let parts: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
        format!("[{}]", parts.join(","))
    }

    /// The public key, i.e. the node's Solana pubkey.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.keypair.public().to_bytes())
    }

    /// The libp2p peer id of this node.
    pub fn peer_id(&self) -> PeerId {
        peer_id_of(self.node_id().0)
    }

    /// Sign a message with the node key (ed25519, same as a Solana signature).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let sig = self.keypair.sign(msg);
        let mut out = [0u8; 64];
        // ed25519 signatures are always 64 bytes.
        if sig.len() == 64 {
            out.copy_from_slice(&sig);
        }
        out
    }

    pub(crate) fn libp2p_keypair(&self) -> Keypair {
        Keypair::from(self.keypair.clone())
    }
}

/// Verify an ed25519 signature by `signer` over `msg`.
pub fn verify_signature(signer: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    match ed25519::PublicKey::try_from_bytes(signer) {
        Ok(pk) => pk.verify(msg, sig),
        Err(_) => false,
    }
}

/// Protobuf header of an ed25519 `PublicKey` (field 1 = KeyType::Ed25519,
/// field 2 = 32 bytes of key), as libp2p encodes it inside identity multihashes.
const ED25519_PROTOBUF_PREFIX: [u8; 4] = [0x08, 0x01, 0x12, 0x20];

/// The libp2p `PeerId` of an ed25519 public key (a Solana pubkey).
///
/// Keys of at most 42 bytes are inlined into the PeerId with the identity
/// multihash, so the PeerId *contains* the key: this is what makes the mapping
/// reversible with [`solana_pubkey_of`].
pub fn peer_id_of(pubkey: [u8; 32]) -> PeerId {
    if let Ok(pk) = ed25519::PublicKey::try_from_bytes(&pubkey) {
        return PeerId::from_public_key(&PublicKey::from(pk));
    }
    // Not a valid curve point: build the same identity multihash by hand so the
    // function stays total. Such a peer can never complete a noise handshake.
    let mut bytes = Vec::with_capacity(38);
    bytes.extend_from_slice(&[0x00, 0x24]);
    bytes.extend_from_slice(&ED25519_PROTOBUF_PREFIX);
    bytes.extend_from_slice(&pubkey);
    PeerId::from_bytes(&bytes).unwrap_or_else(|_| PeerId::random())
}

/// The ed25519 public key (Solana pubkey) inside a `PeerId`, or `None` when the
/// peer uses another key type (such peers are refused by Strata nodes).
pub fn solana_pubkey_of(peer: &PeerId) -> Option<[u8; 32]> {
    let bytes = peer.to_bytes();
    // identity multihash: code 0x00, length, then the protobuf-encoded key.
    let (code, rest) = bytes.split_first()?;
    if *code != 0x00 {
        return None;
    }
    let (len, proto) = rest.split_first()?;
    if usize::from(*len) != proto.len() {
        return None;
    }
    let pk = PublicKey::try_decode_protobuf(proto).ok()?;
    let ed = pk.try_into_ed25519().ok()?;
    Some(ed.to_bytes())
}

const B58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Base58 (Bitcoin alphabet, as Solana uses) without pulling another crate.
fn bs58_encode(input: &[u8]) -> String {
    let zeros = input.iter().take_while(|b| **b == 0).count();
    let mut digits: Vec<u8> = Vec::with_capacity(input.len() * 2);
    for &byte in input {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(digits.iter().rev().map(|d| B58[usize::from(*d)] as char));
    out
}

fn bs58_decode(input: &str) -> Option<Vec<u8>> {
    if input.len() > 128 {
        return None;
    }
    let zeros = input.bytes().take_while(|b| *b == b'1').count();
    let mut bytes: Vec<u8> = Vec::new();
    for c in input.bytes() {
        let val = B58.iter().position(|x| *x == c)? as u32;
        let mut carry = val;
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; zeros];
    out.extend(bytes.iter().rev());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn node_id_from_a_multiaddr() {
        let id = NodeIdentity::generate().node_id();
        let addr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{}", id.peer_id());
        assert_eq!(NodeId::from_multiaddr(&addr).unwrap(), id);
        for bad in ["/ip4/127.0.0.1/tcp/4001", "/p2p/not-a-peer-id", ""] {
            assert!(matches!(
                NodeId::from_multiaddr(bad),
                Err(IdentityError::BadNodeId(_))
            ));
        }
    }

    #[test]
    fn solana_json_roundtrip_and_peer_id_is_the_same_key() {
        let id = NodeIdentity::generate();
        let json = id.to_solana_json();
        let back = NodeIdentity::from_solana_json(&json).unwrap();
        assert_eq!(back.node_id(), id.node_id());
        // PeerId derived through libp2p's own keypair equals peer_id_of(pubkey)...
        assert_eq!(
            back.libp2p_keypair().public().to_peer_id(),
            peer_id_of(id.node_id().0)
        );
        // ...and the pubkey comes back out of the PeerId.
        assert_eq!(solana_pubkey_of(&id.peer_id()), Some(id.node_id().0));
        // A signature made with the node key verifies against the on-chain key.
        let sig = id.sign(b"receipt");
        assert!(verify_signature(&id.node_id().0, b"receipt", &sig));
        assert!(!verify_signature(&id.node_id().0, b"receipT", &sig));
    }

    #[test]
    fn known_solana_keypair_vector() {
        // RFC 8032 test vector 1: seed 9d61b1..., public d75a98...
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&hex(seed));
        bytes[32..].copy_from_slice(&hex(public));
        let id = NodeIdentity::from_keypair_bytes(bytes).unwrap();
        assert_eq!(id.node_id().0[..], hex(public)[..]);
        bytes[63] ^= 1;
        assert!(matches!(
            NodeIdentity::from_keypair_bytes(bytes),
            Err(IdentityError::PublicMismatch)
        ));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(NodeIdentity::from_solana_json("not json").is_err());
        assert!(NodeIdentity::from_solana_json("[1,2,3]").is_err());
        let big: Vec<String> = (0..64).map(|_| "256".to_string()).collect();
        assert!(NodeIdentity::from_solana_json(&format!("[{}]", big.join(","))).is_err());
        assert!(NodeIdentity::from_solana_keypair_file("/nonexistent/key.json").is_err());
    }

    #[test]
    fn non_ed25519_peer_has_no_solana_key() {
        assert_eq!(solana_pubkey_of(&PeerId::random()), None);
    }

    proptest! {
        #[test]
        fn peer_id_roundtrip_any_bytes(key in any::<[u8; 32]>()) {
            let pid = peer_id_of(key);
            if ed25519::PublicKey::try_from_bytes(&key).is_ok() {
                prop_assert_eq!(solana_pubkey_of(&pid), Some(key));
            }
        }

        #[test]
        fn node_id_base58_roundtrip(key in any::<[u8; 32]>()) {
            let id = NodeId(key);
            prop_assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        }

        #[test]
        fn node_id_parse_never_panics(s in ".{0,80}") {
            let _ = s.parse::<NodeId>();
        }
    }
}
