//! `ferry_cl_lora::rnode::parse_reply` on an arbitrary command byte and data: a typed
//! answer or a typed error, never a panic.
#![no_main]

use ferry_cl_lora::rnode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&command, rest)) = data.split_first() {
        let _ = rnode::parse_reply(command, rest);
    }
});
