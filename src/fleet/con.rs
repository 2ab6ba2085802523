//! The fleet's Redis: one standalone server (`redis = "redis://HOST:PORT"`) or a Redis Cluster
//! (`redis = ["redis://NODE1:PORT", ...]`, the redis crate's cluster client, which routes each
//! command to the node that holds its key's hash slot and follows MOVED/ASK), behind one
//! pipeline type so the fleet code does not care which.
//!
//! In a cluster every command of a pipeline goes to its own slot's node, and a command or a
//! Lua script with several keys must have them all in one slot: the fleet's keys of one rule
//! and entity share a hash tag (`PREFIX:{HASH}:...`, see [`super::key`]).

use std::time::Duration;

use redis::Value;

/// Where the fleet's Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`
    Standalone(String),
    /// Seed nodes of a Redis Cluster (the client learns the others from them).
    Cluster(Vec<String>),
}

/// Cluster seed nodes at most.
pub const MAX_NODES: usize = 64;

impl Target {
    /// The target for messages (no password).
    pub fn name(&self) -> String {
        match self {
            Target::Standalone(u) => super::redact_url(u),
            Target::Cluster(n) => format!(
                "cluster {}{}",
                super::redact_url(&n[0]),
                if n.len() > 1 {
                    format!(" (+{} nodes)", n.len() - 1)
                } else {
                    String::new()
                }
            ),
        }
    }

    /// Check every URL (one line naming the one that is wrong).
    pub fn check(&self) -> Result<(), String> {
        match self {
            Target::Standalone(u) => super::check_url(u),
            Target::Cluster(nodes) => {
                if nodes.is_empty() || nodes.len() > MAX_NODES {
                    return Err(format!("a cluster is 1 to {MAX_NODES} node URLs"));
                }
                for u in nodes {
                    super::check_url(u)?;
                    let rest = u.strip_prefix("redis://").unwrap_or(u);
                    let db = rest.split_once('/').map_or("", |(_, d)| d);
                    let db = db.split('?').next().unwrap_or("");
                    if !db.is_empty() && db != "0" {
                        return Err(format!(
                            "{:?}: a cluster node has only database 0",
                            super::redact_url(u)
                        ));
                    }
                }
                Client::open(self).map(|_| ())
            }
        }
    }
}

pub(super) enum Client {
    One(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// How long a connect or a reply may take before Redis counts as unavailable.
const TIMEOUT: Duration = Duration::from_secs(1);

impl Client {
    pub(super) fn open(t: &Target) -> Result<Client, String> {
        match t {
            Target::Standalone(u) => redis::Client::open(u.as_str())
                .map(Client::One)
                .map_err(|e| format!("{:?}: {e}", super::redact_url(u))),
            Target::Cluster(nodes) => redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                .connection_timeout(TIMEOUT)
                .response_timeout(TIMEOUT)
                // the fleet thread has its own backoff: fail fast, go on with local state
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(200)
                .build()
                .map(Client::Cluster)
                .map_err(|e| format!("{}: {e}", t.name())),
        }
    }

    /// Connect, and load the scripts (standalone; a cluster gets them with `EVAL`).
    pub(super) fn connect(&self, scripts: &[&Script]) -> redis::RedisResult<Con> {
        match self {
            Client::One(c) => {
                let mut c = c.get_connection_with_timeout(TIMEOUT)?;
                c.set_read_timeout(Some(TIMEOUT))?;
                c.set_write_timeout(Some(TIMEOUT))?;
                for s in scripts {
                    let _: String = redis::cmd("SCRIPT").arg("LOAD").arg(s.body).query(&mut c)?;
                }
                Ok(Con::One(c))
            }
            Client::Cluster(c) => {
                let c = c.get_connection()?;
                c.set_read_timeout(Some(TIMEOUT))?;
                c.set_write_timeout(Some(TIMEOUT))?;
                Ok(Con::Cluster(Box::new(c)))
            }
        }
    }
}

pub(super) enum Con {
    One(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Con {
    pub(super) fn pipe(&self) -> Pipe {
        Pipe {
            cmds: Vec::new(),
            cluster: matches!(self, Con::Cluster(_)),
        }
    }
}

/// A Lua script and its SHA1 (as Redis names it).
pub(super) struct Script {
    pub(super) body: &'static str,
    sha: String,
}

impl Script {
    pub(super) fn new(body: &'static str) -> Script {
        Script {
            body,
            sha: sha1_smol::Sha1::from(body).digest().to_string(),
        }
    }
}

/// Commands sent in one pipelined round trip (in a cluster: one per node involved).
pub(super) struct Pipe {
    /// (command, its reply is kept)
    cmds: Vec<(redis::Cmd, bool)>,
    cluster: bool,
}

impl Pipe {
    /// A command whose reply is dropped.
    pub(super) fn cmd(&mut self, name: &str) -> &mut redis::Cmd {
        self.cmds.push((redis::cmd(name), false));
        // cannot fail: a command was pushed on the line above
        &mut self.cmds.last_mut().expect("just pushed").0
    }

    /// A command whose reply is returned by [`Pipe::query`].
    pub(super) fn get(&mut self, name: &str) -> &mut redis::Cmd {
        self.cmds.push((redis::cmd(name), true));
        // cannot fail: a command was pushed on the line above
        &mut self.cmds.last_mut().expect("just pushed").0
    }

    /// Run a script on `keys` (all in one hash slot); its reply is kept. Arguments follow.
    pub(super) fn script(&mut self, s: &Script, keys: &[&str]) -> &mut redis::Cmd {
        let c = if self.cluster {
            let c = self.get("EVAL");
            c.arg(s.body);
            c
        } else {
            let c = self.get("EVALSHA");
            c.arg(&s.sha);
            c
        };
        c.arg(keys.len()).arg(keys)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// Send every command, in one round trip per node; the kept replies, in order.
    pub(super) fn query(self, con: &mut Con) -> redis::RedisResult<Vec<Value>> {
        if self.cmds.is_empty() {
            return Ok(Vec::new());
        }
        match con {
            Con::One(c) => {
                let mut p = redis::pipe();
                for (cmd, keep) in self.cmds {
                    p.add_command(cmd);
                    if !keep {
                        p.ignore();
                    }
                }
                p.query(c)
            }
            Con::Cluster(c) => {
                let mut p = redis::cluster::cluster_pipe();
                for (cmd, keep) in self.cmds {
                    p.add_command(cmd);
                    if !keep {
                        p.ignore();
                    }
                }
                p.query(c.as_mut())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_node_urls_are_each_checked() {
        let ok = Target::Cluster(vec!["redis://127.0.0.1:7000".into(), "redis://127.0.0.1:7001/0".into()]);
        assert!(ok.check().is_ok());
        for bad in [
            vec![],
            vec!["redis://127.0.0.1:7000".into(), "127.0.0.1:7001".into()],
            vec!["redis://127.0.0.1:7000/3".into()],
            vec!["redis://:pw@127.0.0.1:7000".into(), "redis://h:0".into()],
        ] {
            let e = Target::Cluster(bad.clone()).check().unwrap_err();
            assert!(!e.contains("pw"), "{e}");
            assert_eq!(e.lines().count(), 1, "{bad:?}: {e}");
        }
    }

    #[test]
    fn script_sha_is_the_one_redis_computes() {
        // SHA1 of "return 1", as `SCRIPT LOAD "return 1"` answers
        assert_eq!(Script::new("return 1").sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
