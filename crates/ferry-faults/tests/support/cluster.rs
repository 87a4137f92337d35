//! The local three-node RabbitMQ cluster of `scripts/cluster`: started by the cluster suite,
//! broken by its cases, and stopped (every process killed, every directory removed) when the
//! [`Cluster`] is dropped, also when a case panicked.

use std::{process::Command, time::Duration};

/// `scripts/cluster` in this repository.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/cluster");

/// The nodes, numbered as the script numbers them.
pub const NODES: [usize; 3] = [1, 2, 3];

/// A running cluster; stopped when dropped.
#[derive(Debug)]
pub struct Cluster {
    urls: String,
}

/// Runs the script (bounded by `timeout(1)`), returning its standard output or a readable error.
async fn script(args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new("timeout")
        .arg("180")
        .arg(SCRIPT)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run {SCRIPT}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`scripts/cluster {}` failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

async fn must(args: &[&str]) -> String {
    script(args).await.unwrap_or_else(|e| panic!("{e}"))
}

fn stop_blocking() {
    match Command::new("timeout")
        .arg("120")
        .arg(SCRIPT)
        .arg("stop")
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "cluster suite: `scripts/cluster stop` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("cluster suite: cannot run {SCRIPT}: {e}"),
    }
}

impl Cluster {
    /// Starts the three nodes (after clearing what an earlier run may have left).
    pub async fn start() -> Cluster {
        tokio::task::spawn_blocking(stop_blocking)
            .await
            .expect("stop what an earlier run left");
        if let Err(e) = script(&["start"]).await {
            tokio::task::spawn_blocking(stop_blocking).await.ok();
            panic!("{e}");
        }
        let urls = must(&["urls"]).await.trim().to_owned();
        Cluster { urls }
    }

    /// The three nodes' AMQP URLs, comma-separated (what `--amqp-url` and the workers take).
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// The node (1 to 3) a connection's URL (as `RabbitMq::node` shows it) points at.
    pub fn node_of(url: &str) -> usize {
        let port: u16 = url
            .rsplit('@')
            .next()
            .and_then(|host| host.split('/').next())
            .and_then(|host| host.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        match port {
            5681..=5683 => usize::from(port - 5680),
            _ => panic!("{url} is not a node of the cluster"),
        }
    }

    /// The Erlang node name of node `n`.
    pub fn name(n: usize) -> String {
        format!("ferry-c{n}@localhost")
    }

    /// SIGKILLs node `n`'s Erlang VM.
    pub async fn kill(&self, n: usize) {
        must(&["kill-node", &n.to_string()]).await;
    }

    /// Stops node `n` gracefully.
    pub async fn stop_node(&self, n: usize) {
        must(&["stop-node", &n.to_string()]).await;
    }

    /// Starts node `n` again and waits until it runs (it rejoins the cluster).
    pub async fn start_node(&self, n: usize) {
        must(&["start-node", &n.to_string()]).await;
    }

    /// `rabbitmqctl` against a running node.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let mut last = String::new();
        for n in NODES {
            let n = n.to_string();
            let mut full = vec!["ctl", n.as_str()];
            full.extend_from_slice(args);
            match script(&full).await {
                Ok(out) => return out,
                Err(e) => last = e,
            }
        }
        panic!("no node answered: {last}");
    }

    /// The node holding the leader of quorum queue `queue`.
    pub async fn leader(&self, queue: &str) -> usize {
        let out = self
            .ctl(&["-q", "list_queues", "name", "leader", "--no-table-headers"])
            .await;
        let leader = out
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(name, _)| name.trim() == queue)
            .map(|(_, leader)| leader.trim().to_owned())
            .unwrap_or_else(|| panic!("queue {queue} not listed: {out}"));
        NODES
            .into_iter()
            .find(|n| Cluster::name(*n) == leader)
            .unwrap_or_else(|| panic!("{queue}'s leader {leader} is not a node of the cluster"))
    }

    /// Whether node `n` runs the RabbitMQ application.
    pub async fn running(&self, n: usize) -> bool {
        script(&[
            "ctl",
            &n.to_string(),
            "-q",
            "await_startup",
            "--timeout",
            "2",
        ])
        .await
        .is_ok()
    }

    /// Waits until stopping node `n` would leave every quorum queue with a majority (its
    /// members caught up after a restart); fails after `limit`.
    pub async fn wait_not_quorum_critical(&self, n: usize, limit: Duration) {
        let started = std::time::Instant::now();
        loop {
            let check =
                script(&["queues", &n.to_string(), "check_if_node_is_quorum_critical"]).await;
            match check {
                Ok(_) => return,
                Err(e) if started.elapsed() > limit => {
                    panic!("node {n} is still quorum critical after {limit:?}: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Starts every node that is down (after a case that failed midway).
    pub async fn mend(&self) {
        for n in NODES {
            if !self.running(n).await {
                eprintln!("cluster suite: node {n} is down; starting it");
                if let Err(e) = script(&["start-node", &n.to_string()]).await {
                    eprintln!("cluster suite: {e}");
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop_blocking();
    }
}
