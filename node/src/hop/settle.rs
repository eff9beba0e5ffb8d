//! How a hop is paid: after `Finish`, its caller sends `Settle` with the
//! cells billed to it and a voucher; the hop checks both, signs its receipt
//! (version 3, with the `HopPart` that links it to its neighbours), keeps
//! what an audit of its blocks will re-run, and hands the receipt to the
//! relayer.

use strata_chain::Signer;
use strata_engine::{HiddenStates, WireDType};
use strata_pipeline::billing::hop_price;
use strata_wire::hop::{HopErrorKind, HopResponse, RouteHop};
use strata_wire::receipt::HOP_RECEIPT_VERSION;
use strata_wire::{hop_task_id, tokens_hash, HopPart, Receipt, ReceiptBody, Voucher};

use super::table::{Refusal, Seq, SeqId};
use super::Hops;
use crate::archive::{HopInput as ArchivedInput, HopRecord};

impl Hops {
    /// Pays a finished sequence: checks the cells against what this hop
    /// ran and the voucher against what the client owes, then signs the
    /// hop's receipt and hands it to the relayer. The sequence is taken out
    /// of the table first, so one sequence is never settled twice; a
    /// refused payment puts it back for another try.
    pub(super) async fn settle(
        &self,
        id: &SeqId,
        cells: u64,
        voucher: Voucher,
    ) -> Result<HopResponse, Refusal> {
        let seq = self
            .lock()
            .remove(id)
            .ok_or_else(|| Refusal::new(HopErrorKind::UnknownSequence, "no such sequence"))?;
        match self.sign_receipt(&seq, cells, voucher).await {
            Ok(receipt) => {
                // What an audit will need: without it this node could not
                // open its part and would fail the audit, so it is loud.
                if let Err(e) = self.archive(&receipt, seq) {
                    tracing::error!(task = %hex::encode(&id.0[..8]), "archiving a settled hop: {e}");
                }
                self.inner.outbox.push(receipt.clone());
                tracing::debug!(cells, price = receipt.body.price, "hop settled");
                Ok(HopResponse::Settled(Box::new(receipt)))
            }
            Err(refusal) => {
                if refusal.kind == HopErrorKind::Payment {
                    self.lock().insert(seq);
                }
                Err(refusal)
            }
        }
    }

    /// Keeps what an audit of this hop will re-run: the first hop's tokens
    /// (prompt, then each token fed back), a later hop's received rows, and
    /// the last hop's sampled tokens.
    fn archive(&self, receipt: &Receipt, seq: Seq) -> Result<(), String> {
        let input = if seq.open.index == 0 {
            let mut tokens = seq.prompt;
            tokens.extend(seq.fed);
            ArchivedInput::Tokens(tokens)
        } else {
            let rows = HiddenStates::concat_rows(&seq.inputs)
                .and_then(|x| x.encode(WireDType::F32))
                .map_err(|e| e.to_string())?;
            ArchivedInput::States(rows)
        };
        let record = HopRecord {
            receipt: receipt.clone(),
            input,
            sampled: seq.sampled,
        };
        self.inner
            .archive
            .put_hop(&record)
            .map_err(|e| e.to_string())
    }

    async fn sign_receipt(
        &self,
        seq: &Seq,
        cells: u64,
        voucher: Voucher,
    ) -> Result<Receipt, Refusal> {
        let internal = |m: String| Refusal::new(HopErrorKind::Internal, m);
        let pay = |m: String| Refusal::new(HopErrorKind::Payment, m);
        if let Some(why) = &seq.failed {
            return Err(internal(format!(
                "the sequence failed here, nothing to pay: {why}"
            )));
        }
        let summary = seq
            .summary
            .ok_or_else(|| internal("the sequence left the engine without a summary".into()))?;
        let open = &seq.open;
        let here = open
            .this_hop()
            .ok_or_else(|| internal("no such hop in the route".into()))?;
        let most = (u64::from(summary.positions) + 1) * u64::from(here.end - here.start);
        if cells > most {
            return Err(pay(format!(
                "{cells} cells billed; this hop ran at most {most} (positions + 1 × blocks)"
            )));
        }
        let price = hop_price(self.inner.price_per_token, cells, open.n_layers);
        self.inner.payments.ensure_client(open.client).await;
        self.inner
            .payments
            .accept(&open.client, &voucher, price)
            .map_err(pay)?;
        let (first, last) = (open.index == 0, seq.is_last());
        let node_of = |h: Option<&RouteHop>| h.map_or([0; 32], |h| h.node);
        let body = ReceiptBody {
            version: HOP_RECEIPT_VERSION,
            task_id: hop_task_id(
                &open.task_id,
                open.segment,
                open.index,
                &self.inner.key.pubkey().to_bytes(),
            ),
            node: self.inner.key.pubkey().to_bytes(),
            model_hash: open.model_hash,
            input_hash: if first {
                tokens_hash(&seq.prompt)
            } else {
                [0; 32]
            },
            output_hash: if last {
                tokens_hash(&seq.sampled)
            } else {
                [0; 32]
            },
            prompt_tokens: if first { seq.prompt.len() as u32 } else { 0 },
            completion_tokens: if last { seq.sampled.len() as u32 } else { 0 },
            commitment_root: summary.commitment_root,
            sampling: open.sampling,
            price,
            voucher,
            finished_at_ms: strata_service::now_ms(),
            hop: Some(HopPart {
                task_id: open.task_id,
                segment: open.segment,
                index: open.index,
                count: open.route.len() as u8,
                start: here.start,
                end: here.end,
                n_layers: open.n_layers,
                positions: summary.positions,
                cells,
                sample_offset: open.sample_offset,
                input_states: summary.input_states,
                output_states: summary.output_states,
                prev: node_of(open.previous_hop()),
                next: node_of(open.next_hop()),
            }),
            adapter: None,
        };
        Receipt::sign(&self.inner.key, body).map_err(|e| internal(e.to_string()))
    }
}
