//! Tests of the messages generator: parsing, validation and the shape of
//! what it emits (the generated Rust itself is compiled and tested in
//! tf-protocol and tf-worker-core).

use super::model::{snake, Op, Payload, Scalar, Ty};
use super::{generate, parse};
use std::collections::BTreeSet;

fn remoted() -> BTreeSet<String> {
    ["cuInit", "cuA", "cuAAsync", "cuB", "cuC", "cuD"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

const GOOD: &str = "\
control HELLO 1
module messages
const MAX 16
/// doc
struct Pair +Copy
    a1: u32
    b1: x64
enum Kind +Copy
    One @cuC
    Two @cuD
struct Job
    kind: Kind
    pair: Pair
    data: bytes(MAX)
enum Request root calls=Core
    Hello @HELLO name:str(MAX)   # a comment
    Init @cuInit flags:x32
    Copy=copy_it @cuA @cuAAsync?stream stream:opt(x64) data:bytes
    Part @cuB tag=0 check pairs:vec(Pair, MAX)
    Whole @cuB tag=1 guid: [u8; 16]
    Sub(SubRequest)
enum SubRequest calls=SubCalls
    Run(Job)
";

fn errors(text: &str) -> Vec<String> {
    generate("", text, &remoted()).unwrap_err()
}

#[test]
fn parses_the_grammar() {
    let spec = parse::parse(GOOD).unwrap();
    assert_eq!(spec.controls, [("HELLO".to_string(), 1, 1)]);
    let root = spec.root();
    assert_eq!(root.calls.as_deref(), Some("Core"));
    assert!(root.variants[3].check && !root.variants[4].check);
    let copy = &root.variants[2];
    assert_eq!(copy.method(), "copy_it");
    assert_eq!(copy.alt, Some(("cuAAsync".into(), "stream".into())));
    assert_eq!(
        copy.fields()[0].ty,
        Ty::Opt(Box::new(Ty::Scalar(Scalar::X64)))
    );
    assert_eq!(
        root.variants[4].fields()[0].ty,
        Ty::Array(Scalar::U8, "16".into())
    );
    assert!(matches!(&root.variants[5].payload, Payload::Newtype(t) if t == "SubRequest"));
    assert_eq!(spec.find_struct("Pair").unwrap().docs, ["doc"]);
    assert_eq!(
        spec.type_ops("Request"),
        ["HELLO", "cuInit", "cuA", "cuAAsync", "cuB", "cuC", "cuD"]
            .iter()
            .map(|n| spec.op(n))
            .collect::<Vec<_>>()
    );
    assert_eq!(spec.op("HELLO"), Op::Control("HELLO".into()));
}

#[test]
fn emits_codecs_and_calls() {
    let out = generate("// banner\n", GOOD, &remoted()).unwrap();
    let paths: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "crates/tf-protocol/src/generated/messages.rs",
            "crates/tf-worker-core/src/generated/calls.rs"
        ]
    );
    let wire = &out[0].1;
    assert!(wire.starts_with("// banner\n"));
    // The tagged variants share one arm that reads the tag.
    assert!(wire.contains("op::cuB => match r.u8()? { 0 => { let v = Self::Part"));
    // The option is on the wire only with the async opcode.
    assert!(wire.contains("stream: if opcode == op::cuAAsync { Some(r.u64()?) } else { None }"));
    assert!(wire.contains("Self::Copy { stream: Some(_), .. } => op::cuAAsync"));
    assert!(wire.contains("r.str(MAX)?.to_owned()"));
    assert!(wire.contains("control::HELLO => \"Hello\""));
    // A `check` variant is handed to the enum's hand-written check.
    assert!(wire.contains(
        "0 => { let v = Self::Part { pairs: r.vec(MAX, Pair::get)? }; v.check().map_err(|why| r.bad(why))?; v }"
    ), "{wire}");
    assert!(wire.contains("1 => Self::Whole { guid: r.fixed::<16>()? }"));
    // A `Copy` struct field is shown by value.
    assert!(wire.contains("a.dec(\"pair\", self.pair)?;"));
    let calls = &out[1].1;
    assert!(calls.contains("fn copy_it(&mut self, stream: Option<u64>, data: &[u8]) -> Outcome;"));
    assert!(calls.contains("fn run(&mut self, job: tf_protocol::messages::Job<'_>) -> Outcome;"));
    assert!(calls.contains("Request::Sub(r) => route_sub_request(s, r)"));
}

#[test]
fn rejects_bad_specs() {
    let with = |extra: &str| format!("{GOOD}{extra}");
    let has = |errs: Vec<String>, what: &str| {
        assert!(
            errs.iter().any(|e| e.contains(what)),
            "{errs:?} lacks {what:?}"
        );
    };
    has(
        errors(&with("    Nope @cuNope\n")),
        "neither in codegen/remoted.txt",
    );
    has(
        errors(&with("    Late @cuInit x1:bytes y1:u32\n")),
        "must be the last field",
    );
    has(errors(&with("    Again @cuInit\n")), "distinct `tag=N`");
    has(
        errors(&with("    Alt @cuInit @cuC?y1 y1:u32\n")),
        "needs an `opt(...)` field",
    );
    has(
        errors(&with("    T @cuInit y1:Missing\n")),
        "unknown type `Missing`",
    );
    has(
        errors(&with("    T @cuInit y1:str(NOPE)\n")),
        "neither a `const` nor a number",
    );
    has(
        errors(&with("    T @cuInit w:u32\n")),
        "bad or repeated field name",
    );
    has(errors(&with("    NoOp y1:u32\n")), "needs `@op`");
    has(
        errors(&with("enum Other root calls=X\n    A @cuC\n")),
        "exactly one enum must be `root`",
    );
    has(
        errors(&with("enum Lost calls=Lost\n    A @cuC\n")),
        "is not a `Lost(Lost)` variant",
    );
    has(
        errors("struct A\n    x1: u32\n"),
        "before any `module` line",
    );
    has(errors(&with("    bogus\n")), "needs `@op`");
    has(
        errors(&with("/// doc\nmodule other\n")),
        "documents a struct",
    );
}

#[test]
fn snake_case() {
    assert_eq!(snake("MemAlloc"), "mem_alloc");
    assert_eq!(snake("MemcpyHtoD"), "memcpy_hto_d");
    assert_eq!(snake("NvmlRequest"), "nvml_request");
    assert_eq!(snake("D2D8"), "d2_d8");
}
