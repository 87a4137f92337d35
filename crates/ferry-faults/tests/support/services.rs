//! Breaking and mending the shared services: `rabbitmqctl`, `pg_ctlcluster`, and a guard that
//! leaves RabbitMQ and PostgreSQL running (and the memory watermark at 0.4) whatever happens.

use std::{
    net::{SocketAddr, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

/// The broker's memory watermark outside case 7 (RabbitMQ's default).
pub const NORMAL_WATERMARK: &str = "0.4";

const RABBIT: &str = "127.0.0.1:5672";
const POSTGRES: &str = "127.0.0.1:5432";

/// Runs a service command (bounded by `timeout(1)`), returning its output or a readable error.
pub async fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new("timeout")
        .arg("120")
        .arg(program)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `rabbitmqctl …`, panicking with the tool's output when it fails.
pub async fn rabbitmqctl(args: &[&str]) {
    if let Err(e) = run("rabbitmqctl", args).await {
        panic!("{e}");
    }
}

/// The PostgreSQL version whose cluster `main` runs here (the newest in `/etc/postgresql`).
pub fn pg_version() -> String {
    let mut versions: Vec<(u32, String)> = std::fs::read_dir("/etc/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .map(|v| (v.split('.').next().unwrap_or("0").parse().unwrap_or(0), v))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|(_, v)| v)
        .unwrap_or_else(|| "15".to_owned())
}

/// Restarts PostgreSQL (`pg_ctlcluster … restart`: every session is ended).
pub async fn restart_postgres() {
    let version = pg_version();
    if let Err(e) = run(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", &version, "main", "restart"],
    )
    .await
    {
        panic!("{e}");
    }
}

fn reachable(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .ok()
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

fn wait_reachable(addr: &str, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if reachable(addr) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn blocking(program: &str, args: &[&str]) {
    match Command::new("timeout")
        .arg("120")
        .arg(program)
        .args(args)
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "fault suite: `{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("fault suite: cannot run {program}: {e}"),
    }
}

/// Leaves the services as it found them when dropped, also when a case panics: RabbitMQ's app
/// started, its memory watermark back at 0.4 (when the case touched it), PostgreSQL started;
/// then waits until both accept connections.
#[derive(Debug, Default)]
pub struct ServicesGuard {
    /// Set the watermark back to 0.4 on drop.
    pub restore_watermark: bool,
}

impl ServicesGuard {
    /// Mends what is broken now (blocking; call it from `Drop` or outside a runtime's hot path).
    pub fn mend(&self) {
        if !reachable(RABBIT) {
            eprintln!("fault suite: RabbitMQ is not listening; starting its app");
            blocking("rabbitmqctl", &["start_app"]);
        }
        if self.restore_watermark {
            blocking(
                "rabbitmqctl",
                &["set_vm_memory_high_watermark", NORMAL_WATERMARK],
            );
        }
        if !reachable(POSTGRES) {
            eprintln!("fault suite: PostgreSQL is not listening; starting it");
            blocking(
                "pg_ctlcluster",
                &["--skip-systemctl-redirect", &pg_version(), "main", "start"],
            );
        }
        if !wait_reachable(RABBIT, Duration::from_secs(60)) {
            eprintln!("fault suite: RabbitMQ is still not listening on {RABBIT}");
        }
        if !wait_reachable(POSTGRES, Duration::from_secs(60)) {
            eprintln!("fault suite: PostgreSQL is still not listening on {POSTGRES}");
        }
    }
}

impl Drop for ServicesGuard {
    fn drop(&mut self) {
        self.mend();
    }
}
