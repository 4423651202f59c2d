//! A progress indicator for slow steps: a spinner on a TTY, plain lines otherwise.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shows the current slow step on stderr.
#[derive(Clone)]
pub struct Spinner {
    state: Arc<State>,
}

struct State {
    message: Mutex<String>,
    running: AtomicBool,
    tty: bool,
}

impl Spinner {
    /// Starts the indicator (a background thread on a TTY).
    pub fn start() -> Spinner {
        let tty = std::io::stderr().is_terminal();
        let state = Arc::new(State { message: Mutex::new(String::new()), running: AtomicBool::new(true), tty });
        if tty {
            let st = state.clone();
            std::thread::spawn(move || {
                let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
                let mut i = 0;
                while st.running.load(Ordering::SeqCst) {
                    let msg = st.message.lock().map(|m| m.clone()).unwrap_or_default();
                    if !msg.is_empty() {
                        eprint!("\r\x1b[2K{} {msg}", frames[i % frames.len()]);
                        let _ = std::io::stderr().flush();
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(80));
                }
            });
        }
        Spinner { state }
    }

    /// Names the step in progress.
    pub fn set(&self, msg: &str) {
        if !self.state.running.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(mut m) = self.state.message.lock() {
            *m = msg.to_owned();
        }
        if !self.state.tty {
            eprintln!("pgisolate: {msg}");
        }
    }

    /// Stops and clears the indicator.
    pub fn stop(&self) {
        if self.state.running.swap(false, Ordering::SeqCst) && self.state.tty {
            std::thread::sleep(Duration::from_millis(90));
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}
