//! `ferry sim run|compare` through the real binary: a small scenario on a hand-made
//! ONE-format trace, deterministic output, the formats, and one-line errors.

use std::path::Path;

use ferry_tests::Ferry;

const CONTACTS: &str = "# a line of four nodes, links coming and going
0.00 CONN 0 1 up
60.00 CONN 0 1 down
100.00 CONN 1 2 up
160.00 CONN 1 2 down
200.00 CONN 2 3 up
260.00 CONN 2 3 down
300.00 CONN 0 3 up
360.00 CONN 0 3 down
";

const MESSAGES: &str = "1.00 C M1 0 3 1000
2.00 C M2 3 0 1000
";

fn scenario(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("contacts.txt"), CONTACTS).expect("contacts");
    std::fs::write(dir.join("messages.txt"), MESSAGES).expect("messages");
    let path = dir.join("line.toml");
    std::fs::write(
        &path,
        r#"name = "line"
seed = 7
nodes = 4
duration_s = 600
lifetime_s = 3600

[link]
bitrate_bytes = 100000

[buffer]
bytes = 0

[routing]
policy = "epidemic"

[contacts]
kind = "trace"
path = "contacts.txt"

[messages]
kind = "trace"
path = "messages.txt"
"#,
    )
    .expect("scenario");
    path
}

#[test]
fn a_run_is_deterministic_and_delivers_along_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario(dir.path());
    let run = || {
        Ferry::new(["sim", "run", "--format", "json"])
            .arg_path(&path)
            .run()
            .success()
    };
    let a = run();
    let b = run();
    assert_eq!(
        a.stdout_text(),
        b.stdout_text(),
        "same scenario, same report"
    );
    let v = a.json();
    assert_eq!(v["created"], 2);
    // M1 (0 → 3) rides 0-1, 1-2, 2-3; M2 (3 → 0) meets 0 directly at 300 s.
    assert_eq!(v["delivered"], 2, "{v}");
    assert_eq!(v["policy"], "epidemic");
}

#[test]
fn compare_prints_each_policy_and_writes_a_chart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario(dir.path());
    let svg = dir.path().join("chart.svg");
    let out = Ferry::new([
        "sim",
        "compare",
        "--policies",
        "epidemic,direct",
        "--format",
        "csv",
        "--svg",
    ])
    .arg_path(&svg)
    .arg_path(&path)
    .run()
    .success();
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "header and two rows:\n{text}");
    assert!(lines[1].contains("epidemic") && lines[2].contains("direct"));
    let chart = std::fs::read_to_string(&svg).expect("svg written");
    assert!(chart.starts_with("<svg") && chart.contains("direct"));
}

/// Policies run side by side (`--jobs`) give the reports they give one at a time,
/// in the order asked; a policy that does not exist fails before anything runs.
#[test]
fn compare_runs_policies_in_parallel_with_the_same_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario(dir.path());
    let compare = |jobs: &str| {
        Ferry::new([
            "sim",
            "compare",
            "--policies",
            "direct,epidemic,prophet,spray-and-wait",
            "--format",
            "json",
            "--jobs",
            jobs,
        ])
        .arg_path(&path)
        .run()
        .success()
        .stdout_text()
    };
    let one = compare("1");
    assert_eq!(one, compare("4"));
    assert_eq!(one, compare("2"));
    let v: serde_json::Value = serde_json::from_str(&one).expect("json");
    let names: Vec<&str> = v
        .as_array()
        .expect("an array of reports")
        .iter()
        .map(|r| r["policy"].as_str().expect("policy"))
        .collect();
    assert_eq!(names, ["direct", "epidemic", "prophet", "spray-and-wait:8"]);

    Ferry::new([
        "sim",
        "compare",
        "--policies",
        "epidemic,nonsense",
        "--jobs",
        "2",
    ])
    .arg_path(&path)
    .run()
    .failure_with("nonsense");
    // A usage error (exit 2, as for every bad argument).
    let zero = Ferry::new(["sim", "compare", "--jobs", "0"])
        .arg_path(&path)
        .run();
    assert_eq!(zero.code(), Some(2));
    assert!(zero.stdout_text().is_empty());
}

#[test]
fn bad_scenarios_and_traces_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario(dir.path());
    // A malformed trace line: named with its line number.
    std::fs::write(
        dir.path().join("contacts.txt"),
        "0.00 CONN 0 1 up\n5.00 CONN 0 x down\n",
    )
    .expect("contacts");
    let out = Ferry::new(["sim", "run"]).arg_path(&path).run();
    let err = out.failure_with("line 2");
    assert!(err.contains("contacts.txt"), "{err}");
    // A TOML syntax error, with its line.
    std::fs::write(&path, "name = \"x\"\nnodes = = 3\n").expect("scenario");
    Ferry::new(["sim", "run"])
        .arg_path(&path)
        .run()
        .failure_with("line 2");
    // An unknown policy.
    let ok = scenario(dir.path());
    Ferry::new(["sim", "run", "--policy", "teleport"])
        .arg_path(&ok)
        .run()
        .failure_with("teleport");
}
