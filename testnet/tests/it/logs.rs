//! Every log line of this test binary, kept in memory: what a test reads to
//! check that one task can be followed across the services by its id.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// The shared buffer, installed as the binary's global subscriber on first
/// use (debug for the services, so their per-task lines are kept).
pub(crate) fn capture() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        // The `task` span is strata_service's: it must be enabled too.
        let filter = "warn,strata_service=info,strata_gateway=debug,strata_node=debug,\
                      strata_relayer=debug,strata_verifier=info";
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(move || Line(writer.clone()))
            .try_init();
        buf
    })
}

/// The lines logged inside the `task` span of `task_id` (hex), as
/// `(target, line)`.
pub(crate) fn of_task(task_id: &str) -> Vec<(String, String)> {
    let text = {
        let buf = capture().lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    };
    let span = format!("task{{id={task_id}}}");
    text.lines()
        .filter(|l| l.contains(&span))
        .map(|l| {
            // `… task{id=…}: strata_node::service: settled …`
            let target = l
                .split(": ")
                .nth(1)
                .and_then(|t| t.split("::").next())
                .unwrap_or_default()
                .to_string();
            (target, l.to_string())
        })
        .collect()
}

struct Line(Arc<Mutex<Vec<u8>>>);

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The last lines logged, to show what there is when a check fails.
pub(crate) fn sample() -> String {
    let buf = capture().lock().unwrap_or_else(|p| p.into_inner());
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "{} lines logged; the last ones:\n{}",
        lines.len(),
        lines[lines.len().saturating_sub(20)..].join("\n")
    )
}
