//! Live progress on stderr: a line per step start and end, and a spinner during waits
//! when stderr is a terminal; plain lines in CI logs.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Progress {
    interactive: bool,
    started: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            interactive: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    pub fn is_interactive(&self) -> bool {
        self.interactive
    }

    fn stamp(&self) -> String {
        format!("[{:>7.1}s]", self.started.elapsed().as_secs_f64())
    }

    pub fn line(&self, message: &str) {
        eprintln!("{} {message}", self.stamp());
    }

    pub fn step_started(&self, name: &str, title: &str) {
        self.line(&format!("▶ {name}: {title}"));
    }

    pub fn step_finished(&self, name: &str, verdict: &str, elapsed: Duration) {
        self.line(&format!(
            "■ {name}: {verdict} after {:.1} s",
            elapsed.as_secs_f64()
        ));
    }

    /// Starts a wait: a spinner on a terminal, one plain line otherwise. The wait ends
    /// when the returned guard is dropped or finished.
    pub fn wait(&self, what: &str) -> Wait {
        if self.interactive {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            Wait { bar: Some(bar) }
        } else {
            self.line(&format!("… {what}"));
            Wait { bar: None }
        }
    }
}

/// A running wait; updates show on the spinner (interactive) or are dropped (CI).
pub struct Wait {
    bar: Option<ProgressBar>,
}

impl Wait {
    pub fn update(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
