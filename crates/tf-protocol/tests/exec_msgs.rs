//! Exec requests (modules, launches, streams, events): every variant
//! round-trips through a frame, and no byte string makes a decoder panic.

use proptest::prelude::*;
use tf_protocol::exec_msgs::*;
use tf_protocol::*;

fn attr(id: u32, fill: u8) -> LaunchAttr {
    LaunchAttr {
        id,
        value: [fill; LAUNCH_ATTR_VALUE],
    }
}

fn shape(a: u64, b: u64, n_attrs: usize) -> Shape {
    Shape {
        grid: [a as u32, 1, (b >> 3) as u32],
        block: [b as u32, 2, 3],
        shared_mem: (a >> 7) as u32,
        stream: b,
        attrs: (0..n_attrs).map(|i| attr(i as u32 + 1, a as u8)).collect(),
    }
}

fn load(a: u64, b: u64, data: &[u8]) -> Load<'_> {
    let wrapper = (a % 3) as u32;
    let parts = if wrapper == 2 {
        vec![data.len() as u64, b & 0xffff, 7]
    } else {
        vec![data.len() as u64]
    };
    Load {
        ctx: a,
        handle: handle::make(handle::MODULE, b),
        image: ImageSpec { wrapper, parts },
        jit: (0..(a % 4))
            .map(|i| Opt {
                option: i as u32,
                value: b ^ i,
            })
            .collect(),
        library: (0..(b % 3))
            .map(|i| Opt {
                option: i as u32,
                value: a,
            })
            .collect(),
        want_log: a & 8 != 0,
        tail: data,
    }
}

/// Every variant, chosen by `kind`.
fn build(kind: u8, a: u64, b: u64, data: &[u8]) -> ExecRequest<'_> {
    use ExecRequest as E;
    let s = format!("_Z6kernel{a}");
    match kind {
        0 => E::ImagePart {
            handle: a,
            offset: b,
            data,
        },
        1 => E::ModuleLoad {
            api: ModuleApi::Data,
            load: load(a, b, data),
        },
        2 => E::ModuleLoad {
            api: ModuleApi::DataEx,
            load: load(a, b, data),
        },
        3 => E::ModuleLoad {
            api: ModuleApi::FatBinary,
            load: load(a, b, data),
        },
        4 => E::ModuleLoad {
            api: ModuleApi::File,
            load: load(a, b, data),
        },
        5 => E::LibraryLoad {
            api: LibraryApi::Data,
            load: load(a, b, data),
        },
        6 => E::LibraryLoad {
            api: LibraryApi::File,
            load: load(a, b, data),
        },
        7 => E::ModuleUnload { module: a },
        8 => E::ModuleGetFunction { module: a, name: s },
        9 => E::ModuleGetGlobal { module: b, name: s },
        10 => E::LibraryUnload { library: a },
        11 => E::LibraryGetKernel {
            library: a,
            name: s,
        },
        12 => E::LibraryGetModule {
            ctx: a,
            library: b,
            module: a ^ b,
        },
        13 => E::LibraryGetGlobal {
            ctx: a,
            library: b,
            name: s,
        },
        14 => E::KernelGetFunction { ctx: a, kernel: b },
        15 => E::FuncGetAttribute {
            ctx: a,
            func: b,
            attrib: a as i32,
        },
        16 => E::FuncSetAttribute {
            ctx: a,
            func: b,
            attrib: 8,
            value: b as i32,
        },
        17 => E::FuncSetCacheConfig {
            ctx: a,
            func: b,
            config: 2,
        },
        18 => E::KernelGetAttribute {
            kernel: a,
            attrib: 4,
            dev: b as i32,
        },
        19 => E::KernelSetAttribute {
            kernel: a,
            attrib: 8,
            value: -1,
            dev: 0,
        },
        20 => E::Occupancy {
            ctx: a,
            func: b,
            query: Occupancy::MaxActiveBlocks {
                block_size: a as i32,
                dynamic_smem: b,
                flags: (a & 1 == 1).then_some(b as u32),
            },
        },
        21 => E::Occupancy {
            ctx: a,
            func: b,
            query: Occupancy::MaxPotentialBlockSize {
                dynamic_smem: a,
                block_size_limit: 512,
                flags: (b & 1 == 1).then_some(1),
                smem_by_block_size: (0..(a % 40)).collect(),
            },
        },
        22 => E::Occupancy {
            ctx: a,
            func: b,
            query: Occupancy::AvailableDynamicSmem {
                num_blocks: 3,
                block_size: 128,
            },
        },
        23 => E::Occupancy {
            ctx: a,
            func: b,
            query: Occupancy::MaxPotentialClusterSize(shape(a, b, 2)),
        },
        24 => E::Occupancy {
            ctx: a,
            func: b,
            query: Occupancy::MaxActiveClusters(shape(b, a, 1)),
        },
        25..=27 => E::Launch(Launch {
            api: [
                LaunchApi::Kernel,
                LaunchApi::KernelEx,
                LaunchApi::Cooperative,
            ][kind as usize - 25],
            ctx: a,
            func: b,
            shape: shape(a, b, (a % 5) as usize),
            params: data,
        }),
        28 => E::StreamCreate {
            ctx: a,
            stream: b,
            flags: 1,
            priority: (a & 1 == 1).then_some(-(b as i32)),
        },
        29 => E::StreamDestroy { stream: a },
        30 => E::StreamSynchronize { ctx: a, stream: b },
        31 => E::StreamQuery { ctx: a, stream: b },
        32 => E::StreamWaitEvent {
            ctx: a,
            stream: b,
            event: a ^ b,
            flags: 0,
        },
        33 => E::StreamGetPriority { ctx: a, stream: b },
        34 => E::EventCreate {
            ctx: a,
            event: b,
            flags: 2,
        },
        35 => E::EventRecord {
            ctx: a,
            event: b,
            stream: a,
            flags: (b & 1 == 1).then_some(1),
        },
        36 => E::EventSynchronize { event: a },
        37 => E::EventQuery { event: b },
        38 => E::EventElapsedTime { start: a, end: b },
        39 => E::EventDestroy { event: a },
        40 => E::Link {
            ctx: a,
            link: handle::make(handle::LINK, b),
            jit: vec![Opt {
                option: 3,
                value: a,
            }],
            inputs: vec![
                LinkInput {
                    kind: (a % 6) as u32,
                    name: s.clone(),
                    jit: Vec::new(),
                    size: (data.len() / 2) as u64,
                },
                LinkInput {
                    kind: 1,
                    name: String::new(),
                    jit: vec![Opt {
                        option: 7,
                        value: b,
                    }],
                    size: (data.len() - data.len() / 2) as u64,
                },
            ],
            tail: data,
        },
        41 => E::LinkRead {
            link: a,
            offset: b,
            size: a ^ b,
        },
        42..=44 => {
            let rank = if kind == 42 {
                1 + (a % 5) as u32
            } else {
                3 + (a % 3) as u32
            };
            let r = rank as usize;
            let shape = match kind {
                42 => TensorMapShape::Tiled {
                    box_dim: vec![b as u32; r],
                },
                43 => TensorMapShape::Im2col {
                    lower: vec![-(a as i32); r - 2],
                    upper: vec![b as i32; r - 2],
                    channels: 8,
                    pixels: 16,
                },
                _ => TensorMapShape::Im2colWide {
                    lower: a as i32,
                    upper: b as i32,
                    channels: 8,
                    pixels: 16,
                    mode: 1,
                },
            };
            E::TensorMapEncode(TensorMapEncode {
                ctx: a,
                dtype: 7,
                rank,
                address: b,
                dims: vec![a; r],
                strides: vec![b; r - 1],
                element_strides: vec![1; r],
                interleave: 0,
                swizzle: 3,
                l2: 2,
                oob: 1,
                shape,
            })
        }
        45 => E::TensorMapReplaceAddress {
            ctx: a,
            map: [b as u8; TENSOR_MAP_BYTES],
            address: a,
        },
        _ => E::MemsetAsync(Memset {
            ctx: a,
            stream: b,
            dst: a ^ b,
            pitch: if a & 1 == 1 { b } else { 0 },
            value: b as u32,
            width: a,
            op: MemsetOp::new([1, 2, 4][(a % 3) as usize], (a & 1 == 1).then_some(b)).unwrap(),
        }),
    }
}

const KINDS: u8 = 47;

proptest! {
    #[test]
    fn exec_requests_round_trip(kind in 0u8..KINDS, a in any::<u64>(), b in any::<u64>(),
                                data in proptest::collection::vec(any::<u8>(), 0..128)) {
        let req = Request::Exec(build(kind, a, b, &data));
        let (fixed, bulk) = req.encode();
        let mut payload = fixed;
        payload.extend_from_slice(bulk);
        let frame = encode_frame(FrameHeader::request(req.opcode(), 0, 1), &payload);
        let h = FrameHeader::decode(&frame).unwrap();
        let back = Request::decode(h.opcode, &frame[HEADER_LEN..]).unwrap();
        prop_assert_eq!(back, req);
    }

    #[test]
    fn truncated_or_extended_exec_requests_fail_cleanly(kind in 0u8..KINDS, a in any::<u64>(),
            b in any::<u64>(), cut in 1usize..40) {
        let data = [1u8, 2, 3];
        let req = Request::Exec(build(kind, a, b, &data));
        let (mut payload, bulk) = req.encode();
        payload.extend_from_slice(bulk);
        let n = payload.len().saturating_sub(cut);
        prop_assert!(Request::decode(req.opcode(), &payload[..n]).is_err());
        payload.push(0);
        prop_assert!(Request::decode(req.opcode(), &payload).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic_exec(opcode in 1395u32..1610,
            bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Request::decode(opcode, &bytes);
        let _ = decode_reply::<FunctionReply>(&bytes);
        let _ = decode_reply::<LoadReply>(&bytes);
        let _ = decode_reply::<IntReply>(&bytes);
        let _ = decode_reply::<Elapsed>(&bytes);
        let _ = decode_reply::<LinkReply>(&bytes);
        let _ = decode_reply::<LinkBytes>(&bytes);
        let _ = decode_reply::<TensorMapBytes>(&bytes);
        let _ = decode_reply::<OccupancyReply>(&bytes);
    }
}

#[test]
fn replies_round_trip() {
    let f = FunctionReply {
        handle: handle::make(handle::FUNCTION, 9),
        layout: Some(vec![
            ParamSlot { offset: 0, size: 8 },
            ParamSlot {
                offset: 64,
                size: 128,
            },
        ]),
    };
    assert_eq!(
        decode_reply::<FunctionReply>(&encode_reply(0, Some(&f))).unwrap(),
        Ok(f)
    );
    let none = FunctionReply {
        handle: 3,
        layout: None,
    };
    assert_eq!(
        decode_reply::<FunctionReply>(&encode_reply(0, Some(&none))).unwrap(),
        Ok(none)
    );
    let l = LoadReply {
        status: 218,
        values: vec![1, 2, 3],
        info_log: b"info".to_vec(),
        error_log: b"ptxas fatal".to_vec(),
    };
    assert_eq!(
        decode_reply::<LoadReply>(&encode_reply(0, Some(&l))).unwrap(),
        Ok(l)
    );
    let e = Elapsed(1.25);
    assert_eq!(
        decode_reply::<Elapsed>(&encode_reply(0, Some(&e))).unwrap(),
        Ok(e)
    );
    assert_eq!(
        decode_reply::<IntReply>(&encode_reply::<IntReply>(600, None)).unwrap(),
        Err(600)
    );
}

#[test]
fn hostile_counts_and_shapes_are_refused() {
    // A layout count over the limit.
    let mut w = Writer::new();
    w.u32(0).u64(1).u8(1).u32(u32::MAX);
    assert!(decode_reply::<FunctionReply>(&w.finish()).is_err());
    // An image spec whose parts disagree with the wrapper version.
    let data = [0u8; 4];
    let mut l = load(1, 2, &data);
    l.image = ImageSpec {
        wrapper: 1,
        parts: vec![1, 2],
    };
    let req = Request::Exec(ExecRequest::ModuleLoad {
        api: ModuleApi::Data,
        load: l,
    });
    let (mut p, bulk) = req.encode();
    p.extend_from_slice(bulk);
    assert!(Request::decode(req.opcode(), &p).is_err());
    // A memset whose rows disagree with its opcode (the opcode alone says
    // the element size and whether there are rows).
    let m = Memset {
        ctx: 1,
        stream: 0,
        dst: 2,
        pitch: 0,
        value: 0,
        width: 4,
        op: MemsetOp::D2D16 { height: 3 },
    };
    let (p, _) = Request::Exec(ExecRequest::MemsetAsync(m)).encode();
    assert!(Request::decode(tf_api::op::cuMemsetD16Async, &p).is_err());
    let one_d = Memset {
        op: MemsetOp::D16,
        ..m
    };
    let (p, _) = Request::Exec(ExecRequest::MemsetAsync(one_d)).encode();
    assert!(Request::decode(tf_api::op::cuMemsetD2D16Async, &p).is_err());
    assert_eq!(MemsetOp::new(3, None), None);
    assert_eq!((m.op.elem(), m.op.height()), (2, Some(3)));
}

#[test]
fn handles_carry_their_kind() {
    let s = handle::make(handle::STREAM, 5);
    assert!(handle::is(handle::STREAM, s));
    assert!(!handle::is(handle::EVENT, s));
    assert!(!handle::is(handle::STREAM, handle::STREAM));
    assert!(handle::is_default_stream(0) && handle::is_default_stream(2));
    assert!(!handle::is_default_stream(s));
    assert_eq!(
        layout_size(&[
            ParamSlot {
                offset: 64,
                size: 128
            },
            ParamSlot { offset: 0, size: 8 }
        ]),
        192
    );
    assert_eq!(layout_size(&[]), 0);
}

/// A tensor map's arrays must be as long as its rank says, the rank within
/// the driver's range, and a link must name inputs of known types whose
/// sizes account for the bytes: the decoder refuses the rest.
#[test]
fn link_and_tensor_map_checks() {
    let good = TensorMapEncode {
        ctx: 1,
        dtype: 7,
        rank: 2,
        address: 0x1000,
        dims: vec![64, 64],
        strides: vec![256],
        element_strides: vec![1, 1],
        interleave: 0,
        swizzle: 0,
        l2: 0,
        oob: 0,
        shape: TensorMapShape::Tiled {
            box_dim: vec![32, 32],
        },
    };
    let decodes = |e: &TensorMapEncode| {
        let req = Request::Exec(ExecRequest::TensorMapEncode(e.clone()));
        let (p, _) = req.encode();
        Request::decode(req.opcode(), &p).is_ok()
    };
    assert!(decodes(&good));
    for (rank, dims) in [(0u32, 0usize), (6, 6), (2, 3)] {
        let bad = TensorMapEncode {
            rank,
            dims: vec![1; dims],
            ..good.clone()
        };
        assert!(!decodes(&bad), "rank {rank} with {dims} dims");
    }
    let short_box = TensorMapEncode {
        shape: TensorMapShape::Tiled { box_dim: vec![32] },
        ..good.clone()
    };
    assert!(!decodes(&short_box));
    // im2col needs rank 3..=5.
    let im2col_rank2 = TensorMapEncode {
        shape: TensorMapShape::Im2col {
            lower: vec![],
            upper: vec![],
            channels: 8,
            pixels: 8,
        },
        ..good.clone()
    };
    assert!(!decodes(&im2col_rank2));

    let link = |kind: u32, inputs: usize| {
        let req = Request::Exec(ExecRequest::Link {
            ctx: 1,
            link: handle::make(handle::LINK, 1),
            jit: Vec::new(),
            inputs: (0..inputs)
                .map(|_| LinkInput {
                    kind,
                    name: "x".into(),
                    jit: Vec::new(),
                    size: 1,
                })
                .collect(),
            tail: b"a",
        });
        let (mut p, bulk) = req.encode();
        p.extend_from_slice(bulk);
        Request::decode(req.opcode(), &p).is_ok()
    };
    assert!(link(1, 1));
    assert!(!link(1, 0), "a link without inputs");
    assert!(!link(6, 1), "CU_JIT_NUM_INPUT_TYPES is not a type");

    let r = LinkReply {
        log: LoadReply {
            status: 0,
            values: vec![5],
            info_log: b"linked".to_vec(),
            error_log: Vec::new(),
        },
        size: 1234,
    };
    assert_eq!(
        decode_reply::<LinkReply>(&encode_reply(0, Some(&r))).unwrap(),
        Ok(r)
    );
    let m = TensorMapBytes([9; TENSOR_MAP_BYTES]);
    assert_eq!(
        decode_reply::<TensorMapBytes>(&encode_reply(0, Some(&m))).unwrap(),
        Ok(m)
    );
}
