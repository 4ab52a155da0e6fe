//! `ferry_sim::scenario::Scenario::parse` on arbitrary UTF-8. A scenario that parses
//! is valid, maps to an engine policy, answers `buffer_of` for every node, and
//! survives the round trip through `toml::to_string`. Contacts and messages are not
//! generated (a valid scenario may legitimately ask for hours of mobility).
#![no_main]

use ferry_sim::scenario::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(scenario) = Scenario::parse(text) else {
        return;
    };
    scenario.validate().expect("a parsed scenario is valid");
    scenario
        .policy_config()
        .expect("a parsed scenario has a policy");
    let buffers = scenario.buffers();
    assert_eq!(buffers.len(), scenario.nodes as usize);
    for n in [0, scenario.nodes / 2, scenario.nodes - 1] {
        assert_eq!(scenario.buffer_of(n), buffers[n as usize]);
    }
    // f64 fields (NaN cannot pass validation) print back exactly.
    let written = toml::to_string(&scenario).expect("a scenario serialises");
    match Scenario::parse(&written) {
        Ok(again) => assert!(
            again == scenario,
            "round trip changed the scenario:\n{scenario:?}\n{again:?}"
        ),
        Err(e) => panic!("a written scenario does not parse: {e}\n{written}"),
    }
});
