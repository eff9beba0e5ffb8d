//! The typed task call: what crosses the transport is the request's
//! canonical bytes, the answer is decoded within the protocol's limit, and
//! each failure says whose it is.

use futures::executor::block_on;
use strata_wire::task::{call, CallError, Finish, TaskRequest, TaskResponse, Usage};
use strata_wire::{decode, encode, WireError};

fn poll() -> TaskRequest {
    TaskRequest::Poll {
        task_id: [4; 32],
        from_byte: 12,
        to_end: false,
    }
}

#[test]
fn a_call_sends_the_requests_bytes_and_decodes_the_answer() {
    let answer = TaskResponse::Output {
        text: "Paris".into(),
        finished: Some((
            Finish::Stop,
            Usage {
                prompt_tokens: 9,
                completion_tokens: 2,
                price: 110,
                expected_cumulative: 110,
            },
        )),
    };
    let reply = encode(&answer);
    let got = block_on(call(
        |bytes| {
            // The transport sees exactly the request's canonical encoding.
            assert_eq!(decode::<TaskRequest>(&bytes, 1 << 20), Ok(poll()));
            async move { Ok::<_, String>(reply) }
        },
        &poll(),
    ));
    assert_eq!(got.unwrap(), answer);
}

#[test]
fn transport_failures_and_garbage_answers_are_told_apart() {
    let failed = block_on(call(
        |_| async { Err::<Vec<u8>, _>("connection reset".to_string()) },
        &poll(),
    ));
    assert!(matches!(failed, Err(CallError::Transport(ref e)) if e == "connection reset"));

    let garbage = block_on(call(|_| async { Ok::<_, String>(vec![0xff; 7]) }, &poll()));
    assert!(matches!(
        garbage,
        Err(CallError::Decode(WireError::Malformed(_)))
    ));

    let huge = block_on(call(
        |_| async { Ok::<_, String>(vec![0; (1 << 20) + 1]) },
        &poll(),
    ));
    assert!(matches!(
        huge,
        Err(CallError::Decode(WireError::TooLarge { .. }))
    ));
}

#[test]
fn start_hop_is_appended_so_earlier_requests_keep_their_bytes() {
    use strata_wire::hop::{HopOpen, RouteHop};
    use strata_wire::task::{Prompt, Sampling, TaskSpec};
    // Borsh writes the variant index first: Poll stays 1, StartHop is 4.
    assert_eq!(encode(&poll())[0], 1);
    let spec = TaskSpec {
        task_id: [4; 32],
        client: [5; 32],
        model: "m".into(),
        prompt: Prompt::Text("hi".into()),
        max_tokens: 8,
        sampling: Sampling::GREEDY,
        stop: vec![],
    };
    let open = HopOpen {
        task_id: [4; 32],
        segment: 0,
        route: vec![
            RouteHop {
                node: [1; 32],
                start: 0,
                end: 10,
            },
            RouteHop {
                node: [2; 32],
                start: 10,
                end: 30,
            },
        ],
        index: 0,
        client: [5; 32],
        model_hash: [9; 32],
        n_layers: 30,
        sampling: spec.sampling,
        sample_offset: 0,
        max_new: 8,
        stop_tokens: vec![],
    };
    let start = TaskRequest::StartHop { spec, open };
    let bytes = encode(&start);
    assert_eq!(bytes[0], 4);
    assert_eq!(decode::<TaskRequest>(&bytes, 1 << 20), Ok(start));
}

fn spec() -> strata_wire::task::TaskSpec {
    use strata_wire::task::{Prompt, Sampling, TaskSpec};
    TaskSpec {
        task_id: [4; 32],
        client: [5; 32],
        model: "m".into(),
        prompt: Prompt::Text("hi".into()),
        max_tokens: 8,
        sampling: Sampling::GREEDY,
        stop: vec![],
    }
}

fn position(token: u32, top: usize) -> strata_wire::task::PositionLogprobs {
    use strata_wire::task::{PositionLogprobs, TokenLogprob};
    let t = |i: u32| TokenLogprob {
        token: i,
        bytes: format!("tok{i}").into_bytes(),
        logprob: -(i as f32) / 10.0,
    };
    PositionLogprobs {
        sampled: t(token),
        top: (0..top as u32).map(|i| t(token + i)).collect(),
    }
}

#[test]
fn logprob_calls_are_appended_and_round_trip() {
    use strata_wire::task::PositionLogprobs;
    // Borsh writes the variant index first: every earlier one keeps its own.
    let start = TaskRequest::StartLogprobs {
        spec: spec(),
        top_logprobs: 3,
    };
    let poll = TaskRequest::PollLogprobs {
        task_id: [4; 32],
        from_byte: 7,
        from_token: 2,
        to_end: true,
    };
    let out = TaskResponse::LogprobOutput {
        text: "Par".into(),
        logprobs: vec![position(9, 3), position(12, 0)],
        finished: None,
    };
    for (bytes, index) in [(encode(&start), 7), (encode(&poll), 8), (encode(&out), 6)] {
        assert_eq!(bytes[0], index);
    }
    assert_eq!(
        decode::<TaskRequest>(&encode(&start), 1 << 20),
        Ok(start.clone())
    );
    assert_eq!(start.task_id(), [4; 32]);
    assert_eq!(decode::<TaskRequest>(&encode(&poll), 1 << 20), Ok(poll));
    assert_eq!(decode::<TaskResponse>(&encode(&out), 1 << 20), Ok(out));
    // What a node counts against MAX_LOGPROB_BYTES is the encoding's size.
    for p in [position(1, 0), position(40, 20)] {
        assert_eq!(p.encoded_len(), encode(&p).len());
        assert_eq!(decode::<PositionLogprobs>(&encode(&p), 1 << 20), Ok(p));
    }
}

#[test]
fn a_full_logprob_answer_fits_the_message_limit() {
    use strata_wire::task::{MAX_LOGPROB_BYTES, MAX_PROMPT_BYTES, MAX_TASK_MESSAGE_BYTES};
    // Positions up to the logprob budget plus as much text as a prompt may
    // hold still make one message.
    let mut logprobs = Vec::new();
    let mut size = 0;
    loop {
        let p = position(100, 20);
        if size + p.encoded_len() > MAX_LOGPROB_BYTES {
            break;
        }
        size += p.encoded_len();
        logprobs.push(p);
    }
    let out = TaskResponse::LogprobOutput {
        text: "x".repeat(MAX_PROMPT_BYTES),
        logprobs,
        finished: None,
    };
    assert!(encode(&out).len() <= MAX_TASK_MESSAGE_BYTES);
}

mod hostile {
    use proptest::prelude::*;
    use strata_wire::task::{TaskRequest, TaskResponse, MAX_TASK_MESSAGE_BYTES};
    use strata_wire::{decode, encode};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary bytes (and valid logprob messages with their tail
        /// mangled) never panic the task decoders: they decode or are refused.
        #[test]
        fn task_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), cut in 0usize..64, flip in any::<u8>()) {
            let _ = decode::<TaskRequest>(&bytes, MAX_TASK_MESSAGE_BYTES);
            let _ = decode::<TaskResponse>(&bytes, MAX_TASK_MESSAGE_BYTES);
            let out = TaskResponse::LogprobOutput {
                text: "hi".into(),
                logprobs: vec![super::position(3, 2)],
                finished: None,
            };
            let mut b = encode(&out);
            let at = b.len().saturating_sub(cut + 1);
            b[at] ^= flip;
            b.truncate(b.len() - cut.min(b.len()));
            let _ = decode::<TaskResponse>(&b, MAX_TASK_MESSAGE_BYTES);
            let mut with_index = bytes.clone();
            with_index.insert(0, 6);
            let _ = decode::<TaskResponse>(&with_index, MAX_TASK_MESSAGE_BYTES);
            with_index[0] = 7;
            let _ = decode::<TaskRequest>(&with_index, MAX_TASK_MESSAGE_BYTES);
        }
    }
}
