//! Fuzzes the custody store's on-disk record decoders with arbitrary bytes: they
//! must never panic, and whatever decodes must re-encode to a record that decodes
//! to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As stored bytes (almost always stopped by the version byte or the CRC)...
    check(data);
    // ...and as a record body behind a valid version byte and CRC, so the postcard
    // body decoder and the field checks are reached.
    check(&ferry_storage::record::frame_record_body(data));
    // The bundle blob frame.
    match ferry_storage::record::decode_blob(data) {
        Ok(ferry_storage::record::Blob::Inline(bytes)) => {
            assert_eq!(ferry_storage::record::encode_blob(bytes), data);
        }
        Ok(ferry_storage::record::Blob::File { len, .. }) => {
            assert_eq!(data.len(), ferry_storage::record::BLOB_FILE_LEN);
            assert_eq!(data[5..], len.to_le_bytes());
        }
        Err(_) => {}
    }
});

fn check(bytes: &[u8]) {
    if let Ok(info) = ferry_storage::record::decode_record(bytes) {
        let again =
            ferry_storage::record::encode_record(&info).expect("a decoded record re-encodes");
        assert_eq!(ferry_storage::record::decode_record(&again), Ok(info));
    }
}
