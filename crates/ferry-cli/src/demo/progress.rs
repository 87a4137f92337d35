//! Progress on standard error: a bar on a terminal, plain lines otherwise.

use std::{
    io::IsTerminal,
    sync::Mutex,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};

use super::db::Progress;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressView {
    /// A bar (standard error is a terminal).
    Bar,
    /// A line every second.
    Lines,
}

impl ProgressView {
    /// A bar when standard error is a terminal, plain lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            ProgressView::Bar
        } else {
            ProgressView::Lines
        }
    }

    /// Starts showing progress towards `total` orders.
    pub fn start(self, total: u64) -> Reporter {
        let bar = (self == ProgressView::Bar).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} orders settled  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Reporter {
            view: self,
            total,
            bar,
            last_line: Mutex::new(None),
        }
    }
}

/// Shows a run's progress.
pub struct Reporter {
    view: ProgressView,
    total: u64,
    bar: Option<ProgressBar>,
    last_line: Mutex<Option<Instant>>,
}

impl Reporter {
    /// Shows the latest progress.
    pub fn update(&self, p: &Progress) {
        let detail = format!(
            "created {} · confirmed {} · dead-lettered {} · outbox pending {}",
            p.created, p.confirmed, p.dead_lettered_orders, p.outbox_pending
        );
        match (&self.bar, self.view) {
            (Some(bar), _) => {
                bar.set_position(p.settled().min(self.total));
                bar.set_message(detail);
            }
            (None, _) => {
                let Ok(mut last) = self.last_line.lock() else {
                    return;
                };
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    *last = Some(Instant::now());
                    eprintln!(
                        "demo: {}/{} orders settled ({detail})",
                        p.settled(),
                        self.total
                    );
                }
            }
        }
    }

    /// Stops showing progress.
    pub fn finish(&self, p: &Progress) {
        if let Some(bar) = &self.bar {
            bar.set_position(p.settled().min(self.total));
            bar.finish_and_clear();
        } else if self.view == ProgressView::Lines {
            eprintln!("demo: {}/{} orders settled", p.settled(), self.total);
        }
    }
}
