//! `ferry sim run` and `ferry sim compare`: the simulator (`ferry-sim`) from the
//! command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ferry_sim::report::{compare_text, Report};
use ferry_sim::scenario::Scenario;

/// How to print reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A text table.
    Text,
    /// JSON (one object, or an array for `compare`).
    Json,
    /// CSV with a header row.
    Csv,
}

/// What `ferry sim run|compare` was asked.
#[derive(Debug)]
pub struct SimArgs {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Policies to run (`None`: the scenario's own).
    pub policies: Option<Vec<String>>,
    /// Output format.
    pub format: Format,
    /// Also write an SVG chart here.
    pub svg: Option<PathBuf>,
}

fn load(path: &Path) -> Result<(Scenario, PathBuf)> {
    Scenario::load(path).with_context(|| format!("scenario {}", path.display()))
}

/// Runs the scenario once per policy and prints the reports.
pub fn run(args: &SimArgs) -> Result<()> {
    let (scenario, base) = load(&args.scenario)?;
    let show = std::io::stderr().is_terminal();
    if show {
        eprint!("ferry: reading contacts and messages ...");
    }
    let contacts = scenario.contacts(&base)?;
    let messages = scenario.messages(&base)?;
    if show {
        eprintln!(
            "\rferry: {} contact events, {} messages, {} nodes",
            contacts.len(),
            messages.len(),
            scenario.nodes
        );
    }
    let policies: Vec<String> = match &args.policies {
        Some(p) => p.clone(),
        None => vec![scenario.routing.policy.clone()],
    };
    let mut reports: Vec<Report> = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        let mut s = scenario.clone();
        s.routing.policy = policy.trim().to_owned();
        let config = s
            .policy_config()
            .with_context(|| format!("policy `{policy}`"))?;
        let label = format!("ferry: [{}/{}] {}", i + 1, policies.len(), s.routing.policy);
        let mut progress = |t: u64, end: u64| {
            if show {
                eprint!(
                    "\r{label} ... {}%",
                    (t * 100).checked_div(end).unwrap_or(100)
                );
            }
        };
        let (report, _) =
            ferry_sim::run::run_observed(&s, config, &contacts, &messages, &mut progress)
                .with_context(|| format!("running `{policy}`"))?;
        if show {
            eprintln!(
                "\r{label}: delivered {}/{} ({} events)   ",
                report.delivered, report.created, report.events
            );
        }
        reports.push(report);
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json if reports.len() == 1 => writeln!(out, "{}", reports[0].to_json())?,
        Format::Json => {
            let v: Vec<serde_json::Value> = reports
                .iter()
                .map(|r| serde_json::from_str(&r.to_json()))
                .collect::<Result<_, _>>()?;
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        Format::Csv => {
            writeln!(out, "{}", Report::csv_header())?;
            for r in &reports {
                writeln!(out, "{}", r.csv_row())?;
            }
        }
        Format::Text if reports.len() == 1 => write!(out, "{}", reports[0].to_text())?,
        Format::Text => write!(out, "{}", compare_text(&reports))?,
    }
    if let Some(path) = &args.svg {
        let svg = ferry_sim::plot::svg(&scenario.name, &reports);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Parses `--policies a,b,c`.
pub fn parse_policies(list: &str) -> Result<Vec<String>> {
    let v: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if v.is_empty() {
        bail!("--policies needs at least one policy, e.g. epidemic,spray-and-wait,prophet,direct");
    }
    Ok(v)
}
