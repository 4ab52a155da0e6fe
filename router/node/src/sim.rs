//! `ferry sim run` and `ferry sim compare`: the simulator (`ferry-sim`) from the
//! command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

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
    /// Policies run at the same time (`None`: one per CPU, at most one per policy).
    pub jobs: Option<usize>,
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
        Some(p) => p.iter().map(|p| p.trim().to_owned()).collect(),
        None => vec![scenario.routing.policy.clone()],
    };
    // Every policy is checked before any runs.
    let mut runs = Vec::with_capacity(policies.len());
    for policy in &policies {
        let mut s = scenario.clone();
        s.routing.policy.clone_from(policy);
        let config = s
            .policy_config()
            .with_context(|| format!("policy `{policy}`"))?;
        runs.push((s, config));
    }
    let jobs = jobs_for(args.jobs, runs.len());
    let progress = Progress::new(&policies, show);
    // Runs are independent and seeded: their reports do not depend on how many run
    // at once. Each is taken by the next free worker, in order.
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Report>>>> =
        runs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((s, config)) = runs.get(i) else {
                    return;
                };
                let mut on_progress = |t: u64, end: u64| progress.set(i, t, end);
                let result = ferry_sim::run::run_observed(
                    s,
                    config.clone(),
                    &contacts,
                    &messages,
                    &mut on_progress,
                )
                .map(|(report, _)| report)
                .with_context(|| format!("running `{}`", s.routing.policy));
                if let Ok(r) = &result {
                    progress.done(i, r);
                }
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(result);
                }
            });
        }
    });
    let mut reports: Vec<Report> = Vec::with_capacity(results.len());
    for (slot, policy) in results.into_iter().zip(&policies) {
        match slot.into_inner().ok().flatten() {
            Some(r) => reports.push(r?),
            None => bail!("the run of `{policy}` stopped without a report"),
        }
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

/// How many runs go at once: `asked`, or one per CPU; never more than `runs`.
fn jobs_for(asked: Option<usize>, runs: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    asked.unwrap_or(cpus).clamp(1, runs.max(1))
}

/// The progress line of the runs under way (on a terminal only).
struct Progress {
    show: bool,
    labels: Vec<String>,
    /// Percent done per run; `None` until it starts.
    percent: Mutex<Vec<Option<u64>>>,
}

impl Progress {
    fn new(policies: &[String], show: bool) -> Self {
        Self {
            show,
            labels: policies.to_vec(),
            percent: Mutex::new(vec![None; policies.len()]),
        }
    }

    /// Run `i` is at virtual time `t` of `end`; the line is redrawn when a whole
    /// percent changes.
    fn set(&self, i: usize, t: u64, end: u64) {
        if !self.show {
            return;
        }
        let pc = (t * 100).checked_div(end).unwrap_or(100).min(100);
        let Ok(mut p) = self.percent.lock() else {
            return;
        };
        if p.get(i).copied().flatten() == Some(pc) {
            return;
        }
        if let Some(slot) = p.get_mut(i) {
            *slot = Some(pc);
        }
        let running: Vec<String> = p
            .iter()
            .zip(&self.labels)
            .filter_map(|(pc, l)| pc.filter(|&x| x < 100).map(|x| format!("{l} {x}%")))
            .collect();
        eprint!("\rferry: {}   ", running.join(", "));
    }

    /// Run `i` finished with `report`.
    fn done(&self, i: usize, report: &Report) {
        if let Ok(mut p) = self.percent.lock() {
            if let Some(slot) = p.get_mut(i) {
                *slot = Some(100);
            }
        }
        if self.show {
            eprintln!(
                "\rferry: [{}/{}] {}: delivered {}/{} ({} events)   ",
                i + 1,
                self.labels.len(),
                self.labels.get(i).map_or("?", String::as_str),
                report.delivered,
                report.created,
                report.events
            );
        }
    }
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
