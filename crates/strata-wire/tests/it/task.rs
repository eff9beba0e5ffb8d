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
