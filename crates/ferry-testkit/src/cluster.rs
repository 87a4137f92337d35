//! The local three-node RabbitMQ cluster of `scripts/cluster` (nodes `ferry-c1..3@localhost`,
//! AMQP on 127.0.0.1:5681-5683, guest/guest), for tests that break a cluster: started by
//! [`Cluster::start`], broken through its methods, and stopped — every process it started
//! killed, its directories removed — when the [`Cluster`] is dropped, also when a test panics.
//! The machine's own broker (5672) is never touched.
//!
//! A test using it stops and starts RabbitMQ nodes: it lives in a test binary of its own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferry_testkit::cluster::ClusterError> {
//! use ferry_testkit::cluster::Cluster;
//!
//! let cluster = Cluster::start().await?;
//! // "amqp://…:5681/%2f,amqp://…:5682/%2f,amqp://…:5683/%2f", for RabbitMqOptions::new
//! let urls = cluster.urls().to_owned();
//! cluster.kill(2).await?;
//! cluster.start_node(2).await?;
//! drop(cluster); // stopped, directories removed
//! # let _ = urls;
//! # Ok(())
//! # }
//! ```

use std::{
    process::Command,
    time::{Duration, Instant},
};

/// `scripts/cluster` in this repository.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/cluster");

/// The nodes, numbered as the script numbers them.
pub const NODES: [usize; 3] = [1, 2, 3];

/// A script command that failed (its output says why).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `scripts/cluster` could not be run.
    #[error("cannot run scripts/cluster {command}")]
    Run {
        /// The arguments.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `scripts/cluster` ran and failed.
    #[error("`scripts/cluster {command}` failed ({status}): {output}")]
    Failed {
        /// The arguments.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard output and error.
        output: String,
    },
    /// The cluster answered something the caller cannot use.
    #[error("{0}")]
    Unexpected(String),
}

/// A running cluster; stopped when dropped.
#[derive(Debug)]
pub struct Cluster {
    urls: String,
}

/// Runs the script (bounded by `timeout(1)`), returning its standard output.
async fn script(args: &[&str]) -> Result<String, ClusterError> {
    let command = args.join(" ");
    let output = tokio::process::Command::new("timeout")
        .arg("180")
        .arg(SCRIPT)
        .args(args)
        .output()
        .await
        .map_err(|source| ClusterError::Run {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ClusterError::Failed {
            command,
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

/// `scripts/cluster stop`, blocking (for `Drop`); failures are printed.
fn stop_blocking() {
    match Command::new("timeout")
        .arg("120")
        .arg(SCRIPT)
        .arg("stop")
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "cluster: `scripts/cluster stop` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("cluster: cannot run {SCRIPT}: {e}"),
    }
}

impl Cluster {
    /// Starts the three nodes and clusters them, after clearing what an earlier run may have
    /// left; on failure, stops whatever did start.
    ///
    /// # Errors
    ///
    /// The script's failure.
    pub async fn start() -> Result<Cluster, ClusterError> {
        // A run killed before its guard could act leaves nodes behind.
        tokio::task::spawn_blocking(stop_blocking).await.ok();
        // From here on, dropping the guard stops the nodes.
        let mut cluster = Cluster {
            urls: String::new(),
        };
        script(&["start"]).await?;
        cluster.urls = script(&["urls"]).await?.trim().to_owned();
        Ok(cluster)
    }

    /// The three nodes' AMQP URLs, comma-separated (what `--amqp-url` and
    /// `RabbitMqOptions::new` take).
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// The node (1 to 3) a URL (as `RabbitMq::node` shows it, password hidden) points at.
    ///
    /// ```
    /// use ferry_testkit::cluster::Cluster;
    /// assert_eq!(Cluster::node_of("amqp://guest:***@127.0.0.1:5682/%2f"), Some(2));
    /// assert_eq!(Cluster::node_of("amqp://127.0.0.1:5672/%2f"), None);
    /// ```
    pub fn node_of(url: &str) -> Option<usize> {
        let port: u16 = url
            .rsplit('@')
            .next()
            .and_then(|host| host.split('/').find(|part| part.contains(':')))
            .and_then(|host| host.rsplit(':').next())
            .and_then(|port| port.parse().ok())?;
        match port {
            5681..=5683 => Some(usize::from(port - 5680)),
            _ => None,
        }
    }

    /// The Erlang node name of node `n`.
    pub fn name(n: usize) -> String {
        format!("ferry-c{n}@localhost")
    }

    /// SIGKILLs node `n`'s Erlang VM.
    ///
    /// # Errors
    ///
    /// The node was not running, or survived.
    pub async fn kill(&self, n: usize) -> Result<(), ClusterError> {
        script(&["kill-node", &n.to_string()]).await.map(drop)
    }

    /// Stops node `n` gracefully (its data stays).
    ///
    /// # Errors
    ///
    /// `rabbitmqctl stop` failed.
    pub async fn stop_node(&self, n: usize) -> Result<(), ClusterError> {
        script(&["stop-node", &n.to_string()]).await.map(drop)
    }

    /// Starts node `n` again and waits until it runs (it rejoins the cluster).
    ///
    /// # Errors
    ///
    /// The node did not start.
    pub async fn start_node(&self, n: usize) -> Result<(), ClusterError> {
        script(&["start-node", &n.to_string()]).await.map(drop)
    }

    /// `rabbitmqctl ARGS` against the first node that answers; its standard output.
    ///
    /// # Errors
    ///
    /// No node answered.
    pub async fn ctl(&self, args: &[&str]) -> Result<String, ClusterError> {
        let mut last = None;
        for n in NODES {
            let n = n.to_string();
            let mut full = vec!["ctl", n.as_str()];
            full.extend_from_slice(args);
            match script(&full).await {
                Ok(out) => return Ok(out),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClusterError::Unexpected("no node".into())))
    }

    /// The node holding the leader of quorum queue `queue`.
    ///
    /// # Errors
    ///
    /// No node answered, or the queue or its leader is unknown.
    pub async fn leader(&self, queue: &str) -> Result<usize, ClusterError> {
        let out = self
            .ctl(&["-q", "list_queues", "name", "leader", "--no-table-headers"])
            .await?;
        let leader = out
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .find(|(name, _)| name.trim() == queue)
            .map(|(_, leader)| leader.trim().to_owned())
            .ok_or_else(|| ClusterError::Unexpected(format!("queue {queue} not listed: {out}")))?;
        NODES
            .into_iter()
            .find(|n| Cluster::name(*n) == leader)
            .ok_or_else(|| {
                ClusterError::Unexpected(format!("{queue}'s leader is {leader}, not a node"))
            })
    }

    /// The node of each client connection open on the cluster (by the port it connected to).
    ///
    /// # Errors
    ///
    /// No node answered.
    pub async fn connection_nodes(&self) -> Result<Vec<usize>, ClusterError> {
        let out = self
            .ctl(&["-q", "list_connections", "port", "--no-table-headers"])
            .await?;
        Ok(out
            .lines()
            .filter_map(|port| port.trim().parse::<u16>().ok())
            .filter(|port| (5681..=5683).contains(port))
            .map(|port| usize::from(port - 5680))
            .collect())
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

    /// Waits until stopping node `n` would leave every quorum queue a majority (its replicas
    /// caught up after a restart), as an operator checks before stopping a node.
    ///
    /// # Errors
    ///
    /// Still critical after `limit`.
    pub async fn wait_not_quorum_critical(
        &self,
        n: usize,
        limit: Duration,
    ) -> Result<(), ClusterError> {
        let started = Instant::now();
        loop {
            match script(&["queues", &n.to_string(), "check_if_node_is_quorum_critical"]).await {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() > limit => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Starts every node that is down (after a test that failed midway); failures are printed.
    pub async fn mend(&self) {
        for n in NODES {
            if !self.running(n).await {
                eprintln!("cluster: node {n} is down; starting it");
                if let Err(e) = self.start_node(n).await {
                    eprintln!("cluster: {e}");
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
