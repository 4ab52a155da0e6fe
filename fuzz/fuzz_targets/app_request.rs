//! App API requests: the app stream's text messages and the sealing parameters of
//! a submission never panic, whatever the bytes; a message that decodes encodes
//! back to one that decodes the same.
#![no_main]

use ferry_router::app_api::{StreamMessage, SubmitDefaults, SubmitQuery};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let defaults = SubmitDefaults {
        realm: Some("valley"),
        lifetime_secs: 86_400,
        hop_limit: 8,
    };
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = StreamMessage::decode(text) {
            let again = m.encode();
            if again.len() <= ferry_router::app_api::MAX_STREAM_TEXT {
                assert_eq!(StreamMessage::decode(&again), Ok(m.clone()), "{again}");
            }
            if let StreamMessage::Params(q) = m {
                if let Ok(p) = q.seal_params(defaults) {
                    assert_eq!(p.hop_limit, 8);
                }
            }
        }
    }
    if let Ok(q) = serde_json::from_slice::<SubmitQuery>(data) {
        let _ = q.seal_params(defaults);
    }
});
