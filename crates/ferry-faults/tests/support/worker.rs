//! A `fault-worker` process (the relay or the consumer) the test can wait on and kill.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use ferry_faults::{NODE, READY, WorkerSettings};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
};

/// A running worker process; killed (SIGKILL) if dropped while running.
pub struct Worker {
    pub role: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    node: Arc<Mutex<Option<String>>>,
    pub log: PathBuf,
}

/// Where the workers' logs go: `$CARGO_TARGET_TMPDIR/fault-logs/`.
pub fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fault-logs");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

impl Worker {
    /// Starts `fault-worker <mode>` and waits until it says it is ready.
    pub async fn start(
        mode: &str,
        case: &str,
        settings: &WorkerSettings,
        extra_env: &[(&str, String)],
    ) -> Worker {
        let role = format!("{case}-{mode}-{}", ferry_testkit::unique_name("w"));
        let log = log_dir().join(format!("{role}.log"));
        let stderr = std::fs::File::create(&log).expect("create the worker's log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_fault-worker"));
        command
            .arg(mode)
            .envs(settings.to_env())
            .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,lapin=warn,sqlx=warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start fault-worker");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the worker's stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        let node = Arc::new(Mutex::new(None));
        let on = Arc::clone(&node);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(url) = line.strip_prefix(NODE).and_then(|l| l.strip_prefix(' ')) {
                    if let Ok(mut on) = on.lock() {
                        *on = Some(url.to_owned());
                    }
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut worker = Worker {
            role,
            child,
            stdin,
            lines,
            node,
            log,
        };
        worker.wait_for_line(READY, Duration::from_secs(60)).await;
        worker
    }

    /// Waits for a line starting with `prefix` on the worker's stdout; returns it.
    pub async fn wait_for_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.starts_with(prefix) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!(
                    "worker {} exited before printing `{prefix}` ({:?}); its log: {}",
                    self.role,
                    self.child.try_wait(),
                    self.log_tail()
                ),
                Err(_) => panic!(
                    "worker {} did not print `{prefix}` within {limit:?}; its log: {}",
                    self.role,
                    self.log_tail()
                ),
            }
        }
    }

    /// The node the worker's broker connection was last seen on (the URL, password hidden).
    pub fn node(&self) -> Option<String> {
        self.node.lock().ok().and_then(|n| n.clone())
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Stops gracefully (closes its stdin); SIGKILL after `limit`.
    pub async fn stop(mut self, limit: Duration) {
        drop(self.stdin.take());
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!(
                "worker {} ended with {status}; its log: {}",
                self.role,
                self.log_tail()
            ),
            Ok(Err(e)) => eprintln!("worker {}: {e}", self.role),
            Err(_) => {
                eprintln!(
                    "worker {} did not stop within {limit:?}; killing it",
                    self.role
                );
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
            }
        }
    }

    /// The last lines of the worker's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("{} (last lines:)\n{tail}", self.log.display())
    }
}
