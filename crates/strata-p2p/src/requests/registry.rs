//! The application's request-response protocols, checked once at start.

use libp2p::StreamProtocol;
use strata_primitives::protocol::ProtocolSpec;

use crate::error::P2pError;

/// Protocol-name prefixes of the libp2p protocols every Strata peer speaks
/// (identify, ping, AutoNAT, relay, DCUtR, gossipsub): an application
/// protocol there would shadow one of them.
const RESERVED_PREFIXES: &[&str] = &["/ipfs/", "/libp2p/", "/meshsub/", "/floodsub/"];

/// The registered protocols; a protocol's index here is its slot in
/// [`AppProtocols`](super::AppProtocols).
#[derive(Debug, Clone)]
pub(crate) struct Protocols {
    specs: Vec<ProtocolSpec>,
}

impl Protocols {
    /// Checks the application's registration: names are valid libp2p
    /// protocol names (starting with `/`), unique, and neither one of the
    /// layer's `internal` protocols nor in a namespace libp2p uses.
    pub(crate) fn new(app: &[ProtocolSpec], internal: &[&str]) -> Result<Self, P2pError> {
        for (i, p) in app.iter().enumerate() {
            if StreamProtocol::try_from_owned(p.name.to_string()).is_err() {
                return Err(P2pError::Registration(format!(
                    "protocol name {:?} must start with '/'",
                    p.name
                )));
            }
            if internal.contains(&p.name) {
                return Err(P2pError::Registration(format!(
                    "protocol {} is the p2p layer's own",
                    p.name
                )));
            }
            if let Some(prefix) = RESERVED_PREFIXES.iter().find(|r| p.name.starts_with(*r)) {
                return Err(P2pError::Registration(format!(
                    "protocol {} is in libp2p's namespace {prefix}",
                    p.name
                )));
            }
            if app[..i].iter().any(|o| o.name == p.name) {
                return Err(P2pError::Registration(format!(
                    "protocol {} is registered twice",
                    p.name
                )));
            }
        }
        Ok(Protocols {
            specs: app.to_vec(),
        })
    }

    /// Every protocol, in slot order.
    pub(crate) fn all(&self) -> &[ProtocolSpec] {
        &self.specs
    }

    /// The slot and spec of the protocol called `name`.
    pub(crate) fn find(&self, name: &str) -> Option<(usize, ProtocolSpec)> {
        self.specs
            .iter()
            .position(|p| p.name == name)
            .map(|i| (i, self.specs[i]))
    }

    /// The spec in `slot`.
    pub(crate) fn get(&self, slot: usize) -> Option<ProtocolSpec> {
        self.specs.get(slot).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn spec(name: &'static str) -> ProtocolSpec {
        ProtocolSpec {
            name,
            max_request: 1024,
            max_response: 1024,
            timeout_secs: 10,
        }
    }
    const TASK: ProtocolSpec = spec("/strata/task/1");
    const RECEIPT: ProtocolSpec = spec("/strata/receipt/1");
    const OWN: &[&str] = &["/strata/chunks/1", "/strata/kad/1"];

    fn refused(app: &[ProtocolSpec]) -> String {
        match Protocols::new(app, OWN) {
            Err(P2pError::Registration(why)) => why,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("{app:?} was accepted"),
        }
    }

    #[test]
    fn registration_refusals() {
        let why = refused(&[TASK, RECEIPT, spec("/strata/task/1")]);
        assert!(why.contains("/strata/task/1 is registered twice"), "{why}");
        let why = refused(&[spec("/strata/chunks/1")]);
        assert!(why.contains("the p2p layer's own"), "{why}");
        let why = refused(&[spec("/strata/kad/1")]);
        assert!(why.contains("the p2p layer's own"), "{why}");
        let why = refused(&[spec("/ipfs/ping/1.0.0")]);
        assert!(why.contains("libp2p's namespace"), "{why}");
        // libp2p would panic on this name; the registration refuses it.
        let why = refused(&[spec("strata/task/1")]);
        assert!(why.contains("must start with '/'"), "{why}");
    }

    #[test]
    fn registered_protocols_are_found_by_name() {
        let p = Protocols::new(&[TASK, RECEIPT], OWN).unwrap();
        assert_eq!(p.all(), &[TASK, RECEIPT]);
        assert_eq!(p.find(RECEIPT.name), Some((1, RECEIPT)));
        assert_eq!(p.find("/strata/opening/1"), None);
        assert_eq!(p.get(0), Some(TASK));
        assert_eq!(p.get(2), None);
    }
}
