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
