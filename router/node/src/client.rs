//! The CLI side of the local API: `ferry send`, `recv`, `status`, `peers`, `bundles`.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use ferry_router::config::Config;
use serde_json::Value;

/// A client for the node whose home is given.
#[derive(Debug)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    max_bundle_bytes: usize,
}

/// What `ferry send` asks for.
#[derive(Debug)]
pub struct SendOptions {
    pub to: Option<String>,
    pub group: bool,
    pub endpoint: Option<String>,
    pub lifetime: Option<String>,
    pub priority: Option<String>,
    pub ephemeral: bool,
}

fn api_error(e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, resp) => {
            let msg = resp
                .into_json::<Value>()
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {code}"));
            anyhow!("{msg}")
        }
        ureq::Error::Transport(t) => {
            anyhow!("cannot reach the node's API ({t}); is `ferry run` running?")
        }
    }
}

impl Client {
    /// Reads the home's config to find the API address.
    pub fn for_home(home: &Path) -> Result<Self> {
        let path = home.join(ferry_router::home::CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg = Config::parse(&text)?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout_read(Duration::from_secs(600))
            .build();
        Ok(Self {
            base: format!("http://{}", cfg.node.api),
            agent,
            max_bundle_bytes: cfg.store.max_bundle_bytes,
        })
    }

    /// The node's bundle size limit.
    pub fn max_bundle_bytes(&self) -> usize {
        self.max_bundle_bytes
    }

    /// Submits a payload; returns the bundle id once the node committed it.
    pub fn send(&self, o: &SendOptions, payload: &[u8]) -> Result<String> {
        let mut req = self.agent.post(&format!("{}/v1/bundles", self.base));
        if let Some(to) = &o.to {
            req = req.query("to", to);
        }
        if o.group {
            req = req.query("group", "true");
        }
        if let Some(e) = &o.endpoint {
            req = req.query("endpoint", e);
        }
        if let Some(l) = &o.lifetime {
            req = req.query("lifetime", l);
        }
        if let Some(p) = &o.priority {
            req = req.query("priority", p);
        }
        if o.ephemeral {
            req = req.query("ephemeral", "true");
        }
        let v: Value = req
            .send_bytes(payload)
            .map_err(api_error)?
            .into_json()
            .context("bad answer from the node")?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("bad answer from the node: no id"))
    }

    /// Takes payloads and acknowledges each once written. Returns how many.
    pub fn recv(
        &self,
        endpoint: Option<&str>,
        wait: u64,
        out: Option<&Path>,
        max: Option<usize>,
    ) -> Result<usize> {
        if let Some(dir) = out {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut n = 0usize;
        let mut wait = wait;
        while max.is_none_or(|m| n < m) {
            let resp = self
                .agent
                .get(&format!("{}/v1/deliveries/next", self.base))
                .query("endpoint", endpoint.unwrap_or(""))
                .query("wait", &wait.to_string())
                .call()
                .map_err(api_error)?;
            if resp.status() == 204 {
                break;
            }
            let id = resp
                .header("ferry-bundle-id")
                .ok_or_else(|| anyhow!("bad answer from the node: no bundle id"))?
                .to_owned();
            let source = resp.header("ferry-source").unwrap_or("?").to_owned();
            // Sized once from the announced length (a large payload is not grown
            // by doubling), within the node's bundle limit.
            let announced = resp
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            let mut payload = Vec::with_capacity(announced.min(self.max_bundle_bytes + 1));
            resp.into_reader()
                .take(self.max_bundle_bytes as u64 + 1)
                .read_to_end(&mut payload)
                .context("reading the payload")?;
            match out {
                Some(dir) => {
                    let path = dir.join(&id);
                    ferry_router::home::write_atomic(&path, &payload, 0o644)?;
                    eprintln!(
                        "ferry: {} from {} -> {}",
                        short(&id),
                        short(&source),
                        path.display()
                    );
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&payload)?;
                    stdout.flush()?;
                }
            }
            // Only now that the payload is written is it safe to release it.
            self.agent
                .post(&format!("{}/v1/deliveries/{id}/ack", self.base))
                .call()
                .map_err(api_error)?;
            n += 1;
            wait = 0;
        }
        Ok(n)
    }

    /// Prints a JSON endpoint, raw or as indented text.
    /// Asks the running node to sync the drive mounted at `mount`.
    pub fn drive_sync(
        &self,
        mount: &Path,
        max_bytes: Option<u64>,
    ) -> Result<crate::drive::SyncSummary> {
        let body = serde_json::json!({
            "path": mount.to_string_lossy(),
            "max_bytes": max_bytes,
        });
        let v: Value = self
            .agent
            .post(&format!("{}/v1/drives/sync", self.base))
            .send_json(body)
            .map_err(api_error)?
            .into_json()
            .context("reading the node's answer")?;
        serde_json::from_value(v).context("unexpected answer from the node")
    }

    pub fn show(&self, path: &str, json: bool) -> Result<()> {
        let v: Value = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .map_err(api_error)?
            .into_json()
            .context("bad answer from the node")?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print_value(&v, 0);
        }
        Ok(())
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn print_value(v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                match val {
                    Value::Object(_) | Value::Array(_) => {
                        println!("{pad}{k}:");
                        print_value(val, indent + 2);
                    }
                    _ => println!("{pad}{k}: {}", scalar(val)),
                }
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                println!("{pad}(none)");
            }
            for item in items {
                match item {
                    Value::Object(map) => {
                        let line: Vec<String> = map
                            .iter()
                            .map(|(k, v)| format!("{k}={}", scalar(v)))
                            .collect();
                        println!("{pad}- {}", line.join(" "));
                    }
                    other => println!("{pad}- {}", scalar(other)),
                }
            }
        }
        other => println!("{pad}{}", scalar(other)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}
