//! Running the `strata` binary the way a user does, for every CLI test.

use std::path::Path;
use std::process::{Command, Output};

/// The `strata` binary built for these tests.
pub fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

/// `strata` with `home` as its HOME and working directory, so that the real
/// `~/.config/solana` is never touched.
pub fn in_home(home: &Path) -> Command {
    let mut c = strata();
    c.env("HOME", home).current_dir(home);
    c
}

/// How a run ended and what it printed.
pub struct Run {
    /// Exit status (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Runs `cmd` to the end.
pub fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run strata");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}
