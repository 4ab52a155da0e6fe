//! What a run measured, and how to print it: JSON, one CSV row, a text table, and
//! several runs side by side. Every output is deterministic (fields in a fixed
//! order, floats with a fixed number of decimals in text and CSV).

use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{BufferPolicy, LinkModel};

/// Bytes put on the air, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Bytes {
    /// Message bundles, at their modelled size, per completed transfer.
    pub message_bundles: u64,
    /// Receipts (real bundles, real length), per completed transfer.
    pub receipts: u64,
    /// Every control frame emitted (reconciliation included).
    pub control_frames: u64,
    /// Reconciliation frames alone (requests and replies).
    pub reconciliation: u64,
}

/// Buffer occupancy over all nodes at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OccupancySample {
    /// Simulated seconds.
    pub time_s: u64,
    /// Mean modelled bytes held per node.
    pub mean_bytes: f64,
    /// Most modelled bytes held by one node.
    pub max_bytes: u64,
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Routing policy (`epidemic`, `spray-and-wait:8`, ...).
    pub policy: String,
    /// Seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: u32,
    /// Simulated seconds.
    pub duration_s: u64,
    /// `refuse` or `drop-oldest`.
    pub buffer_policy: String,
    /// Messages created.
    pub created: u64,
    /// Messages delivered at least once.
    pub delivered: u64,
    /// `delivered / created`.
    pub delivery_ratio: f64,
    /// Mean creation-to-first-delivery latency, seconds.
    pub latency_mean_s: Option<f64>,
    /// Median latency, seconds.
    pub latency_median_s: Option<f64>,
    /// 95th percentile latency (nearest rank), seconds.
    pub latency_p95_s: Option<f64>,
    /// `(relayed − delivered) / delivered`.
    pub overhead_ratio: Option<f64>,
    /// Mean hops of first deliveries.
    pub hop_count_mean: Option<f64>,
    /// Completed transfers of message bundles (every hop, final ones included).
    pub relayed: u64,
    /// Bundles dropped for room (drop-oldest buffers).
    pub dropped_buffer: u64,
    /// Bundles an engine refused (store full, hop limit, ...).
    pub refused: u64,
    /// Bundles removed at expiry.
    pub expired: u64,
    /// Copies removed because a receipt proved delivery.
    pub removed_by_receipt: u64,
    /// Copies removed after a hand-over (destination reached, single copy).
    pub handed_over: u64,
    /// Receipts created by destinations.
    pub receipts_emitted: u64,
    /// Sources that learned of a delivery from a receipt.
    pub receipts_confirmed: u64,
    /// Bundle transmissions under way when their contact went down.
    pub transfers_cut: u64,
    /// Transfers reported failed to a sender (cut, queued on a contact that went
    /// down, or handed to a link already down).
    pub transfers_failed: u64,
    /// Bundles dropped on arrival (undecodable or expired).
    pub rejected_on_arrival: u64,
    /// Links an engine asked to close.
    pub links_closed: u64,
    /// Trace `up` events for a pair already up (ignored).
    pub duplicate_ups: u64,
    /// Errors engines returned (the run goes on; see the notes for the first).
    pub engine_errors: u64,
    /// Events the loop handled.
    pub events: u64,
    /// Bytes sent.
    pub bytes: Bytes,
    /// The most modelled bytes one node held at once.
    pub occupancy_peak_bytes: u64,
    /// Occupancy every `report.occupancy_interval_s`.
    pub occupancy: Vec<OccupancySample>,
    /// What is modelled truthfully and what differs from The ONE.
    pub notes: Vec<String>,
}

/// The notes every report carries.
pub fn standard_notes(link: &LinkModel, buffer: BufferPolicy) -> Vec<String> {
    let mut n = vec![
        "Routing is Ferry's real engine (ferry_router::engine::Engine) on every node, with its real link protocol: reconciliation, offers, wants, custody acks, receipts.".to_string(),
        "Messages travel as real sealed bundles (real headers, signatures, envelopes) with an 8-byte payload; airtime and buffer occupancy use the message's modelled size.".to_string(),
        "Unlike The ONE, control traffic costs airtime: the contact-start reconciliation, offers, wants and acks are real frames serialized at the link bitrate (on a lane of their own per direction, so they do not wait behind a bundle), and delivery receipts are real bundles that spread and take transmitter time.".to_string(),
        "Signatures are not re-verified per hop: every bundle is created honestly by the simulator, so the driver only decodes it and checks expiry before Input::Received.".to_string(),
        "Engines commit to their in-memory stores at the end of every input (commit_delay 0) instead of grouping commits for 5 ms: custody acks leave up to 5 ms earlier than on a real node.".to_string(),
        "A bundle occupies its transmitter until it has arrived (transmission plus latency); a contact that goes down loses the transfer under way (TransferFailed to the sender, nothing to the receiver) and what was queued behind it.".to_string(),
        "Removed and dropped bundles stay in the node's seen-set (Ferry's deduplication), so a node never takes the same bundle twice; The ONE may accept a dropped message again.".to_string(),
        "Times are integer microseconds in the loop, milliseconds for engines, whole seconds for bundle creation and expiry (wall clock T0 + t).".to_string(),
    ];
    if link.one_transfer_per_node {
        n.push("One bundle transfer per node at a time over all its links (The ONE's model); frames are not limited.".into());
    }
    if link.loss > 0.0 {
        n.push(format!(
            "Each transmission attempt is lost with probability {}; the link retries at once (seeded), so loss costs time, never data.",
            link.loss
        ));
    }
    if let Some(d) = link.duty_cycle {
        n.push(format!(
            "Duty cycle {d}: after sending for t a node stays silent for t·(1/d − 1)."
        ));
    }
    n.push(match buffer {
        BufferPolicy::Refuse => "Full buffers refuse new bundles (Ferry): the sender keeps custody and backs off.".into(),
        BufferPolicy::DropOldest => "Full buffers drop their oldest bundles (lowest insertion) to make room (The ONE); the engine finds them gone.".into(),
    });
    n
}

fn f(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) => format!("{x:.decimals$}"),
        None => "-".into(),
    }
}

/// The rows of the text table: label, value.
fn rows(r: &Report) -> Vec<(&'static str, String)> {
    let mean_occ = if r.occupancy.is_empty() {
        None
    } else {
        Some(r.occupancy.iter().map(|s| s.mean_bytes).sum::<f64>() / r.occupancy.len() as f64)
    };
    vec![
        ("scenario", r.scenario.clone()),
        ("policy", r.policy.clone()),
        ("seed", r.seed.to_string()),
        ("nodes", r.nodes.to_string()),
        ("buffer policy", r.buffer_policy.clone()),
        ("created", r.created.to_string()),
        ("delivered", r.delivered.to_string()),
        ("delivery ratio", format!("{:.4}", r.delivery_ratio)),
        ("latency mean (s)", f(r.latency_mean_s, 1)),
        ("latency median (s)", f(r.latency_median_s, 1)),
        ("latency p95 (s)", f(r.latency_p95_s, 1)),
        ("overhead ratio", f(r.overhead_ratio, 2)),
        ("hop count mean", f(r.hop_count_mean, 2)),
        ("relayed", r.relayed.to_string()),
        ("dropped (buffer)", r.dropped_buffer.to_string()),
        ("refused", r.refused.to_string()),
        ("expired", r.expired.to_string()),
        ("removed by receipt", r.removed_by_receipt.to_string()),
        ("receipts emitted", r.receipts_emitted.to_string()),
        ("transfers cut", r.transfers_cut.to_string()),
        ("bytes: messages", r.bytes.message_bundles.to_string()),
        ("bytes: receipts", r.bytes.receipts.to_string()),
        ("bytes: control", r.bytes.control_frames.to_string()),
        ("bytes: recon", r.bytes.reconciliation.to_string()),
        ("occupancy mean (B)", f(mean_occ, 0)),
        ("occupancy peak (B)", r.occupancy_peak_bytes.to_string()),
        ("engine errors", r.engine_errors.to_string()),
    ]
}

const CSV_HEADER: &str = "scenario,policy,seed,nodes,buffer_policy,created,delivered,delivery_ratio,latency_mean_s,latency_median_s,latency_p95_s,overhead_ratio,hop_count_mean,relayed,dropped_buffer,refused,expired,removed_by_receipt,receipts_emitted,transfers_cut,bytes_messages,bytes_receipts,bytes_control,bytes_recon,occupancy_peak_bytes,engine_errors";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

impl Report {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The CSV header line (no newline).
    pub fn csv_header() -> &'static str {
        CSV_HEADER
    }

    /// One CSV row (no newline), columns as [`Report::csv_header`].
    pub fn csv_row(&self) -> String {
        [
            csv_field(&self.scenario),
            csv_field(&self.policy),
            self.seed.to_string(),
            self.nodes.to_string(),
            csv_field(&self.buffer_policy),
            self.created.to_string(),
            self.delivered.to_string(),
            format!("{:.6}", self.delivery_ratio),
            opt(self.latency_mean_s),
            opt(self.latency_median_s),
            opt(self.latency_p95_s),
            opt(self.overhead_ratio),
            opt(self.hop_count_mean),
            self.relayed.to_string(),
            self.dropped_buffer.to_string(),
            self.refused.to_string(),
            self.expired.to_string(),
            self.removed_by_receipt.to_string(),
            self.receipts_emitted.to_string(),
            self.transfers_cut.to_string(),
            self.bytes.message_bundles.to_string(),
            self.bytes.receipts.to_string(),
            self.bytes.control_frames.to_string(),
            self.bytes.reconciliation.to_string(),
            self.occupancy_peak_bytes.to_string(),
            self.engine_errors.to_string(),
        ]
        .join(",")
    }

    /// Header and one row, newline-terminated.
    pub fn to_csv(&self) -> String {
        format!("{CSV_HEADER}\n{}\n", self.csv_row())
    }

    /// A two-column table, then the notes.
    pub fn to_text(&self) -> String {
        let rows = rows(self);
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut s = String::new();
        for (k, v) in rows {
            let _ = writeln!(s, "{k:<w$}  {v}");
        }
        if !self.notes.is_empty() {
            s.push_str("\nnotes:\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

/// Several runs side by side: one column per run (headed by its policy).
pub fn compare_text(reports: &[Report]) -> String {
    let table: Vec<Vec<(&'static str, String)>> = reports.iter().map(rows).collect();
    let Some(first) = table.first() else {
        return String::new();
    };
    let lw = first.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let widths: Vec<usize> = table
        .iter()
        .map(|col| col.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(8))
        .collect();
    let mut s = String::new();
    for (i, (label, _)) in first.iter().enumerate() {
        let _ = write!(s, "{label:<lw$}");
        for (col, w) in table.iter().zip(&widths) {
            let v = col.get(i).map_or("", |(_, v)| v.as_str());
            let _ = write!(s, "  {v:>w$}");
        }
        s.push('\n');
    }
    s
}
