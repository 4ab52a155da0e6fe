//! The ONE simulator's external events format: contact traces and message workloads.
//!
//! Two kinds of file, one event per line, fields separated by spaces or tabs:
//!
//! ```text
//! # contacts: <time> CONN <a> <b> up|down
//! 0.10 CONN 19 30 up
//! 12.40 CONN 19 30 down
//! # messages: <time> C <id> <from> <to> <size>
//! 32 C M1 42 46 618834
//! ```
//!
//! - `time` is in seconds with an optional decimal part (`12`, `12.5`, `0.10`); it is
//!   converted to [`SimMillis`] by rounding to the nearest millisecond (half up),
//!   exactly, without going through floating point. Signs, exponents, `inf` and `NaN`
//!   are refused. Times must be non-decreasing within a file.
//! - Node indices are non-negative decimal integers (The ONE's host addresses).
//! - Lines whose first non-blank character is `#` are comments; blank lines are
//!   skipped. A trailing `\r` (CRLF files) is accepted.
//!
//! Contacts are normalised to `a < b` (a line may name the pair either way round; a
//! node in contact with itself is an error). The ONE tolerates a repeated `up` of a
//! pair that is already up and a `down` of a pair that is not up; so does this parser,
//! but it drops them from the output and counts them in [`TraceStats`]. So in what
//! [`parse_contacts`] returns, the events of each pair alternate up, down, up, … and
//! start with an up. Pairs still up at the end of the file are left open (the run
//! treats them as lasting until its end) and counted in [`TraceStats::open_at_end`].
//!
//! Every malformed line is refused with its (1-based) line number: a wrong field
//! count, a bad number, an unknown keyword, a node index at or beyond
//! [`TraceLimits::max_nodes`], a line longer than [`TraceLimits::max_line_bytes`], more
//! events than [`TraceLimits::max_events`]. Memory use is therefore bounded by a small
//! multiple of the text's size.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::model::{ContactEvent, MessageEvent, NodeIndex, SimMillis};

/// The largest time accepted: 10¹² seconds (about 31,700 years), in milliseconds.
/// Keeps every time and every sum of two times far from `u64` overflow.
pub const MAX_TRACE_TIME_MS: SimMillis = 1_000_000_000_000_000;

/// A malformed trace: the 1-based line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
#[non_exhaustive]
pub struct TraceError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl TraceError {
    fn new(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line,
            reason: reason.into(),
        }
    }
}

/// Bounds on what a trace may hold, so a hostile file cannot cost more memory or time
/// than its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceLimits {
    /// Node indices must be below this (`None`: any `u32`).
    pub max_nodes: Option<u32>,
    /// Longest line in bytes (without its newline).
    pub max_line_bytes: usize,
    /// Most event lines (comments and blank lines not counted).
    pub max_events: usize,
}

impl Default for TraceLimits {
    /// No node limit, lines up to 4 KiB, up to 100 million events.
    fn default() -> Self {
        Self {
            max_nodes: None,
            max_line_bytes: 4096,
            max_events: 100_000_000,
        }
    }
}

impl TraceLimits {
    /// The default limits with node indices below `nodes`.
    pub fn with_nodes(nodes: u32) -> Self {
        Self {
            max_nodes: Some(nodes),
            ..Self::default()
        }
    }
}

/// What [`parse_contacts_with`] saw besides the events it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceStats {
    /// Event lines read (comments and blank lines not counted).
    pub event_lines: usize,
    /// `up` events returned.
    pub ups: usize,
    /// `down` events returned.
    pub downs: usize,
    /// `up` lines for a pair that was already up: ignored.
    pub duplicate_ups: usize,
    /// `down` lines for a pair that was not up: ignored.
    pub unmatched_downs: usize,
    /// Pairs still up after the last line.
    pub open_at_end: usize,
    /// Distinct nodes named by the returned events.
    pub hosts: usize,
    /// The highest node index named (`None`: no events).
    pub max_node: Option<NodeIndex>,
    /// Time of the last event (`0` if none).
    pub last_time: SimMillis,
}

/// Parses a contact trace with the default [`TraceLimits`].
pub fn parse_contacts(text: &str) -> Result<Vec<ContactEvent>, TraceError> {
    parse_contacts_with(text, &TraceLimits::default()).map(|(events, _)| events)
}

/// Parses a contact trace: `<time> CONN <a> <b> up|down` lines (see the module docs
/// for what is accepted and how duplicates are handled).
pub fn parse_contacts_with(
    text: &str,
    limits: &TraceLimits,
) -> Result<(Vec<ContactEvent>, TraceStats), TraceError> {
    let mut events = Vec::new();
    let mut stats = TraceStats::default();
    let mut up: HashSet<(NodeIndex, NodeIndex)> = HashSet::new();
    let mut hosts: HashSet<NodeIndex> = HashSet::new();
    let mut last = 0;
    for (n, line) in event_lines(text, limits) {
        let line = line?;
        stats.event_lines += 1;
        let [time, _, a, b, state] = fields(n, line, "CONN", "<time> CONN <a> <b> up|down")?;
        let time = parse_time(time).map_err(|r| TraceError::new(n, r))?;
        let a = parse_node(a, limits).map_err(|r| TraceError::new(n, r))?;
        let b = parse_node(b, limits).map_err(|r| TraceError::new(n, r))?;
        let is_up = match state {
            "up" => true,
            "down" => false,
            other => {
                return Err(TraceError::new(
                    n,
                    format!("expected `up` or `down`, found `{}`", shorten(other)),
                ))
            }
        };
        if a == b {
            return Err(TraceError::new(
                n,
                format!("node {a} in contact with itself"),
            ));
        }
        advance(n, time, &mut last)?;
        let (a, b) = if a < b { (a, b) } else { (b, a) };
        if is_up {
            if !up.insert((a, b)) {
                stats.duplicate_ups += 1;
                continue;
            }
            stats.ups += 1;
        } else {
            if !up.remove(&(a, b)) {
                stats.unmatched_downs += 1;
                continue;
            }
            stats.downs += 1;
        }
        hosts.insert(a);
        hosts.insert(b);
        stats.max_node = stats.max_node.max(Some(b));
        stats.last_time = time;
        events.push(ContactEvent {
            time,
            a,
            b,
            up: is_up,
        });
    }
    stats.open_at_end = up.len();
    stats.hosts = hosts.len();
    Ok((events, stats))
}

/// Parses a message workload with the default [`TraceLimits`].
pub fn parse_messages(text: &str) -> Result<Vec<MessageEvent>, TraceError> {
    parse_messages_with(text, &TraceLimits::default())
}

/// Parses a message workload: `<time> C <id> <from> <to> <size>` lines. `from != to`,
/// `size > 0`, ids are unique and times non-decreasing. (The ONE's optional seventh
/// field, a response size, is not supported and is refused.)
pub fn parse_messages_with(
    text: &str,
    limits: &TraceLimits,
) -> Result<Vec<MessageEvent>, TraceError> {
    let mut events = Vec::new();
    // Id → line of its first use.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut last = 0;
    for (n, line) in event_lines(text, limits) {
        let line = line?;
        let [time, _, id, from, to, size] =
            fields(n, line, "C", "<time> C <id> <from> <to> <size>")?;
        let time = parse_time(time).map_err(|r| TraceError::new(n, r))?;
        let from = parse_node(from, limits).map_err(|r| TraceError::new(n, r))?;
        let to = parse_node(to, limits).map_err(|r| TraceError::new(n, r))?;
        if from == to {
            return Err(TraceError::new(
                n,
                format!("message `{}` from node {from} to itself", shorten(id)),
            ));
        }
        let size = parse_u64(size).ok_or_else(|| {
            TraceError::new(n, format!("size `{}` is not a number", shorten(size)))
        })?;
        if size == 0 {
            return Err(TraceError::new(n, "size must be at least 1 byte"));
        }
        advance(n, time, &mut last)?;
        if let Some(first) = ids.insert(id, n) {
            return Err(TraceError::new(
                n,
                format!("message id `{}` already used on line {first}", shorten(id)),
            ));
        }
        events.push(MessageEvent {
            time,
            id: id.to_owned(),
            from,
            to,
            size,
        });
    }
    Ok(events)
}

/// Appends `events` to `out` in the contact format, one line each, times with three
/// decimals. What [`parse_contacts`] returned writes back to text that parses to the
/// same events.
pub fn write_contacts(events: &[ContactEvent], out: &mut String) {
    for e in events {
        let state = if e.up { "up" } else { "down" };
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{} CONN {} {} {state}", format_time(e.time), e.a, e.b);
    }
}

/// Appends `events` to `out` in the message format. Ids are written as they are: an
/// id that is empty, contains whitespace or repeats does not parse back.
pub fn write_messages(events: &[MessageEvent], out: &mut String) {
    for e in events {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{} C {} {} {} {}",
            format_time(e.time),
            e.id,
            e.from,
            e.to,
            e.size
        );
    }
}

/// Formats milliseconds as seconds with three decimals (`12.345`).
pub fn format_time(ms: SimMillis) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The event lines of `text` with their 1-based numbers: comments and blank lines
/// skipped, each line checked against the length limit and the event count against
/// the event limit.
fn event_lines<'a>(
    text: &'a str,
    limits: &'a TraceLimits,
) -> impl Iterator<Item = (usize, Result<&'a str, TraceError>)> + 'a {
    let mut count = 0usize;
    let mut failed = false;
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter_map(move |(n, line)| {
            if failed {
                return None;
            }
            if line.len() > limits.max_line_bytes {
                failed = true;
                return Some((
                    n,
                    Err(TraceError::new(
                        n,
                        format!(
                            "line is {} bytes long, more than the limit of {}",
                            line.len(),
                            limits.max_line_bytes
                        ),
                    )),
                ));
            }
            let trimmed = line.trim_matches(|c: char| c.is_ascii_whitespace());
            if trimmed.is_empty() || trimmed.starts_with('#') {
                return None;
            }
            count += 1;
            if count > limits.max_events {
                failed = true;
                return Some((
                    n,
                    Err(TraceError::new(
                        n,
                        format!("more than {} events", limits.max_events),
                    )),
                ));
            }
            Some((n, Ok(trimmed)))
        })
}

/// Times of events must not go back: moves `last` to `time` or refuses line `n`.
fn advance(n: usize, time: SimMillis, last: &mut SimMillis) -> Result<(), TraceError> {
    if time < *last {
        return Err(TraceError::new(
            n,
            format!(
                "time {} goes back (previous event at {})",
                format_time(time),
                format_time(*last)
            ),
        ));
    }
    *last = time;
    Ok(())
}

/// The `N` whitespace-separated fields of event line `n`, whose second field must be
/// `keyword` (`shape` describes the line for the error).
fn fields<'l, const N: usize>(
    n: usize,
    line: &'l str,
    keyword: &str,
    shape: &str,
) -> Result<[&'l str; N], TraceError> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    if let Some(k) = fields.get(1).filter(|k| **k != keyword) {
        return Err(unknown_keyword(n, k, keyword));
    }
    <[&str; N]>::try_from(fields.as_slice()).map_err(|_| {
        TraceError::new(
            n,
            format!("expected {N} fields `{shape}`, found {}", fields.len()),
        )
    })
}

fn unknown_keyword(line: usize, found: &str, expected: &str) -> TraceError {
    TraceError::new(
        line,
        format!(
            "unknown event `{}` (this file holds `{expected}` events)",
            shorten(found)
        ),
    )
}

/// Seconds with an optional decimal part → milliseconds, rounded half up, exactly.
fn parse_time(s: &str) -> Result<SimMillis, String> {
    let bad = || format!("time `{}` is not a non-negative decimal number", shorten(s));
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() || !int.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let too_large = || {
        format!(
            "time `{}` is beyond the limit of {} s",
            shorten(s),
            MAX_TRACE_TIME_MS / 1000
        )
    };
    let secs = parse_u64(int).ok_or_else(too_large)?;
    let mut ms: u64 = 0;
    for (i, d) in frac.bytes().take(3).enumerate() {
        ms += u64::from(d - b'0') * [100, 10, 1][i];
    }
    let round_up = frac.as_bytes().get(3).is_some_and(|d| *d >= b'5');
    let total = secs
        .checked_mul(1000)
        .and_then(|t| t.checked_add(ms + u64::from(round_up)))
        .filter(|t| *t <= MAX_TRACE_TIME_MS)
        .ok_or_else(too_large)?;
    Ok(total)
}

fn parse_node(s: &str, limits: &TraceLimits) -> Result<NodeIndex, String> {
    let v = parse_u64(s)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("node `{}` is not a node index", shorten(s)))?;
    if let Some(max) = limits.max_nodes {
        if v >= max {
            return Err(format!(
                "node {v} is out of range (the scenario has {max} nodes: 0..{max})"
            ));
        }
    }
    Ok(v)
}

/// Plain decimal digits only (no sign, no spaces), without overflow.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A field quoted in an error message, cut to a readable length.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(r: Result<impl std::fmt::Debug, TraceError>) -> String {
        r.expect_err("should be refused").to_string()
    }

    #[test]
    fn parses_times_exactly() {
        assert_eq!(parse_time("0.10"), Ok(100));
        assert_eq!(parse_time("12"), Ok(12_000));
        assert_eq!(parse_time("12."), Ok(12_000));
        assert_eq!(parse_time("1.2345"), Ok(1_235));
        assert_eq!(parse_time("1.2344999"), Ok(1_234));
        assert_eq!(parse_time("0.0005"), Ok(1));
        assert_eq!(parse_time("43199.99"), Ok(43_199_990));
        for bad in [
            "", ".5", "-1", "+1", "1e3", "inf", "NaN", "1.2.3", "1,5", "0x10",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert!(parse_time("99999999999999999999999").is_err());
        assert_eq!(parse_time("1000000000000"), Ok(MAX_TRACE_TIME_MS));
        assert!(parse_time("1000000000000.001").is_err());
    }

    #[test]
    fn contacts_are_normalised_and_duplicates_counted() {
        let text = "# header\n\n0.10 CONN 30 19 up\r\n1 CONN 19 30 up\n2\tCONN 19 30 down\n\
                    2 CONN 19 30 down\n3 CONN 1 2 up\n";
        let (ev, stats) = parse_contacts_with(text, &TraceLimits::default()).unwrap();
        assert_eq!(
            ev,
            vec![
                ContactEvent {
                    time: 100,
                    a: 19,
                    b: 30,
                    up: true
                },
                ContactEvent {
                    time: 2000,
                    a: 19,
                    b: 30,
                    up: false
                },
                ContactEvent {
                    time: 3000,
                    a: 1,
                    b: 2,
                    up: true
                },
            ]
        );
        assert_eq!(stats.event_lines, 5);
        assert_eq!((stats.ups, stats.downs), (2, 1));
        assert_eq!((stats.duplicate_ups, stats.unmatched_downs), (1, 1));
        assert_eq!(stats.open_at_end, 1);
        assert_eq!(stats.hosts, 4);
        assert_eq!(stats.max_node, Some(30));
        assert_eq!(stats.last_time, 3000);
    }

    #[test]
    fn malformed_contact_lines_name_their_line() {
        let cases = [
            ("0 CONN 1 2", "line 1: expected 5 fields"),
            ("#c\n0 CONN 1 2 up x", "line 2: expected 5 fields"),
            ("0 CONN 1 x up", "line 1: node `x`"),
            ("0 CONN 1 -2 up", "line 1: node `-2`"),
            ("0 CONN 1 4294967296 up", "line 1: node `4294967296`"),
            ("0 CONN 1 2 sideways", "line 1: expected `up` or `down`"),
            ("0 C M1 1 2 10", "line 1: unknown event `C`"),
            ("0 LINK 1 2 up", "line 1: unknown event `LINK`"),
            ("NaN CONN 1 2 up", "line 1: time `NaN`"),
            ("-1 CONN 1 2 up", "line 1: time `-1`"),
            ("inf CONN 1 2 up", "line 1: time `inf`"),
            ("0 CONN 3 3 up", "line 1: node 3 in contact with itself"),
            (
                "5 CONN 1 2 up\n\n4 CONN 1 2 down",
                "line 3: time 4.000 goes back",
            ),
        ];
        for (text, want) in cases {
            let got = err(parse_contacts(text));
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
        let limits = TraceLimits::with_nodes(10);
        let got = err(parse_contacts_with("0 CONN 1 10 up", &limits));
        assert!(got.starts_with("line 1: node 10 is out of range"), "{got}");
        let limits = TraceLimits {
            max_line_bytes: 10,
            ..TraceLimits::default()
        };
        let got = err(parse_contacts_with("0 CONN 1 2 up\n", &limits));
        assert!(got.starts_with("line 1: line is 13 bytes long"), "{got}");
        let limits = TraceLimits {
            max_events: 2,
            ..TraceLimits::default()
        };
        let text = "0 CONN 1 2 up\n# c\n0 CONN 1 3 up\n0 CONN 1 4 up\n";
        assert_eq!(
            err(parse_contacts_with(text, &limits)),
            "line 4: more than 2 events"
        );
    }

    #[test]
    fn messages_parse_and_malformed_lines_are_refused() {
        let ev = parse_messages("# m\n32 C M1 42 46 618834\n32.5 C M2 1 0 1\n").unwrap();
        assert_eq!(
            ev,
            vec![
                MessageEvent {
                    time: 32_000,
                    id: "M1".into(),
                    from: 42,
                    to: 46,
                    size: 618_834
                },
                MessageEvent {
                    time: 32_500,
                    id: "M2".into(),
                    from: 1,
                    to: 0,
                    size: 1
                },
            ]
        );
        let cases = [
            ("1 C M1 1 2", "line 1: expected 6 fields"),
            ("1 C M1 1 2 10 20", "line 1: expected 6 fields"),
            ("1 CONN 1 2 up", "line 1: unknown event `CONN`"),
            ("1 DR M1 1 2 10", "line 1: unknown event `DR`"),
            (
                "1 C M1 1 1 10",
                "line 1: message `M1` from node 1 to itself",
            ),
            ("1 C M1 1 2 0", "line 1: size must be at least 1 byte"),
            ("1 C M1 1 2 -5", "line 1: size `-5`"),
            (
                "1 C M1 1 2 10\n2 C M1 2 1 10",
                "line 2: message id `M1` already used on line 1",
            ),
            (
                "2 C M1 1 2 10\n1 C M2 2 1 10",
                "line 2: time 1.000 goes back",
            ),
            ("x C M1 1 2 10", "line 1: time `x`"),
        ];
        for (text, want) in cases {
            let got = err(parse_messages(text));
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
        let got = err(parse_messages_with(
            "1 C M1 1 7 10",
            &TraceLimits::with_nodes(7),
        ));
        assert!(got.starts_with("line 1: node 7 is out of range"), "{got}");
    }

    #[test]
    fn long_fields_are_shortened_in_errors() {
        let long = "x".repeat(1000);
        let got = err(parse_contacts(&format!("0 CONN 1 {long} up")));
        assert!(got.len() < 200, "{got}");
    }

    fn helsinki(file: &str) -> Option<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/traces/helsinki-126")
            .join(file);
        std::fs::read_to_string(path).ok()
    }

    /// The real trace agrees with its README: 30,870 up, 30,866 down, 126 hosts,
    /// 1,463 messages.
    #[test]
    fn helsinki_trace_matches_its_readme() {
        let (Some(contacts), Some(messages)) = (helsinki("contacts.txt"), helsinki("messages.txt"))
        else {
            // Not every checkout has the shared traces next to it.
            return;
        };
        let (ev, stats) = parse_contacts_with(&contacts, &TraceLimits::with_nodes(126)).unwrap();
        assert_eq!(stats.ups, 30_870);
        assert_eq!(stats.downs, 30_866);
        assert_eq!(stats.open_at_end, 4);
        assert_eq!((stats.duplicate_ups, stats.unmatched_downs), (0, 0));
        assert_eq!(stats.hosts, 126);
        assert_eq!(stats.max_node, Some(125));
        assert!(stats.last_time <= 43_200_000);
        assert_eq!(ev.len(), 61_736);
        assert!(ev.iter().all(|e| e.a < e.b));
        let msgs = parse_messages_with(&messages, &TraceLimits::with_nodes(126)).unwrap();
        assert_eq!(msgs.len(), 1_463);
        assert!(msgs.iter().all(|m| (500_000..=1_000_000).contains(&m.size)));
        // Both write back to text that parses to the same events.
        let mut out = String::new();
        write_contacts(&ev, &mut out);
        assert_eq!(parse_contacts(&out).unwrap(), ev);
        out.clear();
        write_messages(&msgs, &mut out);
        assert_eq!(parse_messages(&out).unwrap(), msgs);
    }

    fn contact_events() -> impl Strategy<Value = Vec<ContactEvent>> {
        // Start from arbitrary (delta time, pair) steps; toggling keeps each pair's
        // events alternating as the parser's output does.
        prop::collection::vec((0u64..5_000_000, 0u32..20, 0u32..20), 0..200).prop_map(|steps| {
            let mut up = HashSet::new();
            let mut t = 0;
            let mut out = Vec::new();
            for (dt, a, b) in steps {
                if a == b {
                    continue;
                }
                t += dt;
                let (a, b) = (a.min(b), a.max(b));
                let is_up = up.insert((a, b));
                if !is_up {
                    up.remove(&(a, b));
                }
                out.push(ContactEvent {
                    time: t,
                    a,
                    b,
                    up: is_up,
                });
            }
            out
        })
    }

    fn message_events() -> impl Strategy<Value = Vec<MessageEvent>> {
        prop::collection::vec(
            (
                0u64..5_000_000,
                any::<u32>(),
                any::<u32>(),
                1u64..u64::MAX,
                "[A-Za-z0-9_.:-]{1,12}",
            ),
            0..100,
        )
        .prop_map(|rows| {
            let mut t = 0;
            let mut ids = HashSet::new();
            rows.into_iter()
                .filter(|(_, f, to, _, id)| f != to && ids.insert(id.clone()))
                .map(|(dt, from, to, size, id)| {
                    t += dt;
                    MessageEvent {
                        time: t,
                        id,
                        from,
                        to,
                        size,
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn contacts_round_trip(ev in contact_events()) {
            let mut out = String::new();
            write_contacts(&ev, &mut out);
            prop_assert_eq!(parse_contacts(&out).unwrap(), ev);
        }

        #[test]
        fn messages_round_trip(ev in message_events()) {
            let mut out = String::new();
            write_messages(&ev, &mut out);
            prop_assert_eq!(parse_messages(&out).unwrap(), ev);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = parse_contacts(&text);
            let _ = parse_messages(&text);
        }

        #[test]
        fn trace_like_text_never_panics(
            lines in prop::collection::vec(
                "[0-9.]{0,6} (CONN|C|X) [0-9a-z]{0,4} [0-9]{0,3} [0-9a-z]{0,4}( up| down| [0-9]{1,3})?",
                0..20,
            ),
        ) {
            let text = lines.join("\n");
            let limits = TraceLimits { max_nodes: Some(50), max_line_bytes: 30, max_events: 10 };
            if let Ok((ev, stats)) = parse_contacts_with(&text, &limits) {
                prop_assert_eq!(ev.len(), stats.ups + stats.downs);
                prop_assert!(ev.windows(2).all(|w| w[0].time <= w[1].time));
                prop_assert!(ev.iter().all(|e| e.a < e.b && e.b < 50));
            }
            if let Ok(m) = parse_messages_with(&text, &limits) {
                prop_assert!(m.iter().all(|m| m.from != m.to && m.size > 0));
            }
        }
    }
}
