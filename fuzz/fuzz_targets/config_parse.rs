//! `Config::parse` on arbitrary UTF-8. A config that parses must survive the round
//! trip through the commented file `ferry init` writes.
#![no_main]

use ferry_router::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = Config::parse(text) else {
        return;
    };
    cfg.validate().expect("a parsed config is valid");
    let peers = cfg.peer_addrs().expect("parsed peers are valid");
    assert_eq!(peers.len(), cfg.peers.len());
    assert!(cfg.default_lifetime_secs() > 0);
    let written = cfg.to_commented_toml();
    match Config::parse(&written) {
        Ok(again) => assert!(
            again == cfg,
            "round trip changed the config:\n{cfg:?}\n{again:?}\ninput: {text:?}"
        ),
        Err(e) => panic!(
            "ferry's own config file does not parse: {e}\ninput: {text:?}\nwritten:\n{written}"
        ),
    }
});
