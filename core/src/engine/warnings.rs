//! Warnings an engine collected for its binding to hand over (when `collect_warnings` is set),
//! and the templates it has warned about already (one warning each).

use std::collections::HashSet;
use std::sync::Mutex;

/// Only this file touches its fields.
#[derive(Default)]
pub(crate) struct Warnings {
    /// Not yet taken by `Engine::take_warnings`.
    queue: Mutex<Vec<String>>,
    /// Templates whose shadowing tables were warned about.
    templates: Mutex<HashSet<String>>,
}

impl Warnings {
    /// Queues a warning: one line (bindings hand them over newline-separated), at most 1000,
    /// each once.
    pub(super) fn push(&self, msg: &str) {
        let msg = msg.replace(['\r', '\n'], " ");
        if let Ok(mut w) = self.queue.lock() {
            if w.len() < 1000 && !w.contains(&msg) {
                w.push(msg);
            }
        }
    }

    /// The warnings queued since the last call.
    pub(super) fn take(&self) -> Vec<String> {
        self.queue.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default()
    }

    /// Whether this is the first warning about `template` (true once).
    pub(super) fn first_for_template(&self, template: &str) -> bool {
        self.templates.lock().map(|mut s| s.insert(template.to_owned())).unwrap_or(false)
    }
}
