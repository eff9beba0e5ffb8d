//! native-svm's integration tests, in one binary: a tiny native program
//! (`support`) run through real signed LiteSVM transactions
//! (`litesvm_native`).

mod litesvm_native;
mod support;
