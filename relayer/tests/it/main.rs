//! The relayer's integration tests, in one binary: bad input refused with
//! nothing stored (`bad_input`), the receipt-to-payment flow on a real chain
//! (`flow`), SIGKILL crash safety (`sigkill`), and audit reports, challenges
//! and their rewards (`audits`), and pipelined tasks' hop receipts and
//! their links (`tasks`). Shared set-up lives in `common` (also used
//! by the CLI's tests).

mod audits;
mod bad_input;
mod common;
mod flow;
mod sigkill;
mod tasks;
