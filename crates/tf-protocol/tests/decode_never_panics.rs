//! Property tests: every request round-trips, and no byte string makes any
//! decoder panic.

use proptest::prelude::*;
use tf_protocol::*;

fn any_request() -> impl Strategy<Value = (u8, u64, u64, u64, Vec<u8>)> {
    (
        0u8..20,
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
}

fn build(kind: u8, a: u64, b: u64, c: u64, data: &[u8]) -> Request<'_> {
    let stream = if a & 1 == 1 { Some(c) } else { None };
    match kind {
        0 => Request::Hello(Hello {
            capabilities: a,
            pid: b as u32,
            connection_id: format!("id-{c}"),
            program: "prog".into(),
        }),
        1 => Request::Goodbye,
        2 => Request::Ping,
        3 => Request::Init { flags: a as u32 },
        4 => Request::PrimaryCtxRetain { dev: a as i32 },
        5 => Request::PrimaryCtxRelease { dev: a as i32 },
        6 => Request::PrimaryCtxGetState { dev: b as i32 },
        7 => Request::CtxSynchronize { ctx: a },
        8 => Request::MemAlloc { ctx: a, size: b },
        9 => Request::MemFree { ctx: a, ptr: b },
        10 => Request::MemGetInfo { ctx: c },
        11 => Request::MemcpyHtoD {
            ctx: a,
            stream,
            dst: b,
            data,
        },
        12 => Request::MemcpyDtoH {
            ctx: a,
            stream,
            src: b,
            size: c,
        },
        13 => Request::MemcpyDtoD {
            ctx: a,
            stream,
            dst: b,
            src: c,
            size: a ^ b,
        },
        14 => Request::MemsetD8 {
            ctx: a,
            dst: b,
            value: c as u8,
            count: a,
        },
        15 => Request::MemsetD32 {
            ctx: a,
            dst: b,
            value: c as u32,
            count: b,
        },
        16 => Request::NvmlInit,
        17 => Request::NvmlShutdown,
        _ => Request::NvmlMemoryInfo { index: a as u32 },
    }
}

proptest! {
    #[test]
    fn requests_round_trip((kind, a, b, c, data) in any_request()) {
        let req = build(kind, a, b, c, &data);
        let (fixed, bulk) = req.encode();
        let mut payload = fixed;
        payload.extend_from_slice(bulk);
        let frame = encode_frame(FrameHeader::request(req.opcode(), 0, 7), &payload);
        let h = FrameHeader::decode(&frame).unwrap();
        prop_assert_eq!(h.length as usize, payload.len());
        let back = Request::decode(h.opcode, &frame[HEADER_LEN..]).unwrap();
        prop_assert_eq!(back, req);
    }

    #[test]
    fn arbitrary_bytes_never_panic(opcode in prop_oneof![0u32..8, 995u32..1040, 1795u32..1915, 2995u32..3015, any::<u32>()],
                                   bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = FrameHeader::decode(&bytes);
        let _ = Request::decode(opcode, &bytes);
        let _ = decode_reply::<InitReply>(&bytes);
        let _ = decode_reply::<NvmlInitReply>(&bytes);
        let _ = decode_reply::<HelloAck>(&bytes);
        let _ = decode_reply::<(u64, u64, u64)>(&bytes);
        let _ = decode_data_reply(&bytes);
    }

    #[test]
    fn truncated_requests_fail_cleanly((kind, a, b, c, data) in any_request(), cut in 0usize..64) {
        let req = build(kind, a, b, c, &data);
        let (mut payload, bulk) = req.encode();
        payload.extend_from_slice(bulk);
        if cut < payload.len() {
            let short = &payload[..payload.len() - cut - 1];
            // A shorter payload either fails or (for variable-length data) decodes to something else; never panics.
            let _ = Request::decode(req.opcode(), short);
        }
    }
}

#[test]
fn init_reply_round_trips() {
    let r = InitReply {
        driver_version: 13000,
        devices: vec![DeviceInfo {
            name: "NVIDIA H200".into(),
            uuid: [7; 16],
            total_mem: 150 << 30,
            pci_bus_id: "0000:04:00.0".into(),
            attributes: vec![(1, 1024), (16, 132)],
        }],
    };
    let bytes = encode_reply(0, Some(&r));
    assert_eq!(decode_reply::<InitReply>(&bytes).unwrap().unwrap(), r);
    let err = encode_reply::<InitReply>(2, None);
    assert_eq!(decode_reply::<InitReply>(&err).unwrap(), Err(2));
}

#[test]
fn hostile_counts_are_refused_without_allocating() {
    let mut w = Writer::new();
    w.u32(0).i32(1).u32(u32::MAX);
    assert!(decode_reply::<InitReply>(&w.finish()).is_err());
}

#[test]
fn trailing_bytes_are_refused() {
    let (mut p, _) = Request::MemAlloc { ctx: 1, size: 2 }.encode();
    p.push(0);
    assert_eq!(
        Request::decode(tf_api::op::cuMemAlloc_v2, &p),
        Err(ProtocolError::Trailing(1))
    );
}
