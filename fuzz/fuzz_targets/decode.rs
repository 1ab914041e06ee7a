//! Feeds arbitrary bytes to every decoder a worker or client runs on peer
//! input. Run: `cargo +nightly fuzz run decode` (from the repo root).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tf_protocol::*;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = FrameHeader::decode(data) {
        let payload = &data[HEADER_LEN.min(data.len())..];
        let _ = Request::decode(h.opcode, payload);
    }
    if data.len() >= 4 {
        let op = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let _ = Request::decode(op, &data[4..]);
    }
    let _ = decode_reply::<InitReply>(data);
    let _ = decode_reply::<NvmlInitReply>(data);
    let _ = decode_reply::<HelloAck>(data);
    let _ = decode_data_reply(data);
});
