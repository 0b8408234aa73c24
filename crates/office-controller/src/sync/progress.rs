//! Progress of one branch's transfer: a live line when stderr is a terminal (indicatif), otherwise a log line
//! at most every five seconds, so that a long initial load never runs without a word.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::report::BranchReport;

/// Where one branch's transfer stands, shown as it goes.
#[derive(Clone)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: Arc<Mutex<Instant>>,
}

impl Progress {
    /// Log lines only.
    pub fn quiet() -> Progress {
        Progress { bar: None, last: Arc::new(Mutex::new(Instant::now())) }
    }

    /// A live line in `multi`.
    pub fn line(multi: &indicatif::MultiProgress, branch: &str) -> Progress {
        let bar = multi.add(indicatif::ProgressBar::new_spinner());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {prefix:<12} {msg} [{elapsed}]") {
            bar.set_style(style);
        }
        bar.set_prefix(branch.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar: Some(bar), ..Progress::quiet() }
    }

    /// A line for one branch outside `sync` (`branch init`): live on a terminal, log lines otherwise.
    pub fn for_branch(branch: &str) -> Progress {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Progress::line(&indicatif::MultiProgress::new(), branch)
        } else {
            Progress::quiet()
        }
    }

    /// Shows where a transfer stands.
    pub fn update(&self, branch: &str, phase: &str, report: &BranchReport) {
        let message = format!(
            "{phase}: pulled {} rows / {} B, pushed {} rows / {} B",
            report.rows("pull"),
            report.bytes_pulled,
            report.rows("push"),
            report.bytes_pushed
        );
        match &self.bar {
            Some(bar) => bar.set_message(message),
            None => {
                if let Ok(mut last) = self.last.lock()
                    && last.elapsed() >= Duration::from_secs(5)
                {
                    *last = Instant::now();
                    tracing::info!(branch, "{message}");
                }
            }
        }
    }

    /// Ends the line with the outcome.
    pub fn finish(&self, report: &BranchReport) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(if report.ok { "done".to_string() } else { "FAILED".to_string() });
        }
    }
}
