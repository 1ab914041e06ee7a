//! The model of `codegen/messages.txt` and its validation: every name
//! resolves, every opcode exists, bulk data comes last, and every frame
//! opcode decodes to exactly one variant (or is told apart by a tag).

use std::collections::{BTreeMap, BTreeSet};

/// A fixed-size wire value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    U8,
    U16,
    U32,
    I32,
    U64,
    I64,
    Bool,
    /// `u32` shown in hex.
    X32,
    /// `u64` shown in hex.
    X64,
}

impl Scalar {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "u8" => Self::U8,
            "u16" => Self::U16,
            "u32" => Self::U32,
            "i32" => Self::I32,
            "u64" => Self::U64,
            "i64" => Self::I64,
            "bool" => Self::Bool,
            "x32" => Self::X32,
            "x64" => Self::X64,
            _ => return None,
        })
    }

    /// The Rust type, which is also the `Writer` method's name.
    pub fn rust(self) -> &'static str {
        match self {
            Self::U8 => "u8",
            Self::U16 => "u16",
            Self::U32 | Self::X32 => "u32",
            Self::I32 => "i32",
            Self::U64 | Self::X64 => "u64",
            Self::I64 => "i64",
            Self::Bool => "bool",
        }
    }

    /// The `Reader` method (`flag` checks that a bool is 0 or 1).
    pub fn read(self) -> &'static str {
        match self {
            Self::Bool => "flag",
            other => other.rust(),
        }
    }

    pub fn hex(self) -> bool {
        matches!(self, Self::X32 | Self::X64)
    }
}

/// A wire type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    Scalar(Scalar),
    /// UTF-8 text of at most the limit's bytes.
    Str(String),
    /// Trailing bulk data, optionally bounded.
    Bytes(Option<String>),
    Vec(Box<Ty>, String),
    Opt(Box<Ty>),
    Array(Scalar, String),
    /// A struct or enum of the file.
    Named(String),
}

#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub docs: Vec<String>,
    pub line: usize,
}

#[derive(Clone, Debug)]
pub enum Payload {
    Unit,
    Newtype(String),
    Fields(Vec<Field>),
}

#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    /// The trait method's name, when not the variant's in snake case.
    pub method: Option<String>,
    pub docs: Vec<String>,
    pub payload: Payload,
    pub op: Option<String>,
    /// `(opcode, field)`: the opcode when the `opt` field is `Some`.
    pub alt: Option<(String, String)>,
    pub tag: Option<u8>,
    /// The decoder then calls the hand-written `check` of the enum.
    pub check: bool,
    pub line: usize,
}

impl Variant {
    pub fn fields(&self) -> &[Field] {
        match &self.payload {
            Payload::Fields(f) => f,
            _ => &[],
        }
    }

    /// The worker trait's method for this variant.
    pub fn method(&self) -> String {
        self.method.clone().unwrap_or_else(|| snake(&self.name))
    }

    /// Whether `field` is the opcode-implied option of `@alt?field`.
    pub fn implied(&self, field: &str) -> Option<&str> {
        match &self.alt {
            Some((op, f)) if f == field => Some(op),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Struct {
    pub name: String,
    pub docs: Vec<String>,
    pub derives: Vec<String>,
    /// The decoder calls the hand-written `check`.
    pub check: bool,
    pub fields: Vec<Field>,
    pub module: String,
    pub line: usize,
}

#[derive(Clone, Debug)]
pub struct Enum {
    pub name: String,
    pub docs: Vec<String>,
    pub derives: Vec<String>,
    /// A request domain: the worker trait's name.
    pub calls: Option<String>,
    pub root: bool,
    pub variants: Vec<Variant>,
    pub module: String,
    pub line: usize,
}

impl Enum {
    pub fn unit_only(&self) -> bool {
        self.variants
            .iter()
            .all(|v| matches!(v.payload, Payload::Unit))
    }
}

#[derive(Clone, Debug)]
pub struct Const {
    pub name: String,
    pub expr: String,
    pub docs: Vec<String>,
    pub module: String,
}

#[derive(Clone, Debug)]
pub enum Item {
    Const(Const),
    Struct(Struct),
    Enum(Enum),
}

/// The whole file.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// `(name, opcode, line)`.
    pub controls: Vec<(String, u32, usize)>,
    pub modules: Vec<String>,
    pub items: Vec<Item>,
}

/// A frame opcode as the generated code names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `tf_api::op::<name>`.
    Api(String),
    /// `control::<NAME>` of the root's module; shown as the variant's name.
    Control(String),
}

/// `MemcpyHtoD` → `memcpy_hto_d`: an underscore before each capital that
/// follows a lower-case letter or digit.
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

const KEYWORDS: [&str; 38] = [
    "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else", "enum",
    "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move",
    "mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while",
];

fn ident_ok(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&s)
}

impl Spec {
    pub fn structs(&self) -> impl Iterator<Item = &Struct> {
        self.items.iter().filter_map(|i| match i {
            Item::Struct(s) => Some(s),
            _ => None,
        })
    }

    pub fn enums(&self) -> impl Iterator<Item = &Enum> {
        self.items.iter().filter_map(|i| match i {
            Item::Enum(e) => Some(e),
            _ => None,
        })
    }

    pub fn find_struct(&self, name: &str) -> Option<&Struct> {
        self.structs().find(|s| s.name == name)
    }

    /// Whether a struct or enum of the file derives `Copy`.
    pub fn is_copy(&self, name: &str) -> bool {
        let derives = match (self.find_struct(name), self.find_enum(name)) {
            (Some(s), _) => &s.derives,
            (_, Some(e)) => &e.derives,
            _ => return false,
        };
        derives.iter().any(|d| d == "Copy")
    }

    pub fn find_enum(&self, name: &str) -> Option<&Enum> {
        self.enums().find(|e| e.name == name)
    }

    pub fn root(&self) -> &Enum {
        self.enums().find(|e| e.root).expect("checked: one root")
    }

    /// The module that defines a type or constant.
    pub fn module_of(&self, name: &str) -> Option<&str> {
        self.items.iter().find_map(|i| match i {
            Item::Const(c) if c.name == name => Some(c.module.as_str()),
            Item::Struct(s) if s.name == name => Some(s.module.as_str()),
            Item::Enum(e) if e.name == name => Some(e.module.as_str()),
            _ => None,
        })
    }

    /// Whether a value of this type borrows bulk data from the frame (and
    /// so carries the `'a` lifetime).
    pub fn bulk(&self, ty: &Ty) -> bool {
        match ty {
            Ty::Bytes(_) => true,
            Ty::Named(n) => self.named_bulk(n),
            _ => false,
        }
    }

    pub fn named_bulk(&self, name: &str) -> bool {
        if let Some(s) = self.find_struct(name) {
            return s.fields.last().is_some_and(|f| self.bulk(&f.ty));
        }
        self.find_enum(name)
            .is_some_and(|e| e.variants.iter().any(|v| self.variant_bulk(v)))
    }

    pub fn variant_bulk(&self, v: &Variant) -> bool {
        match &v.payload {
            Payload::Unit => false,
            Payload::Newtype(t) => self.named_bulk(t),
            Payload::Fields(f) => f.last().is_some_and(|f| self.bulk(&f.ty)),
        }
    }

    /// Whether the frame opcode is chosen by a value of this type: enums,
    /// and structs with a field of such a type.
    pub fn keyed(&self, ty: &Ty) -> bool {
        match ty {
            Ty::Named(n) => {
                self.find_enum(n).is_some()
                    || self
                        .find_struct(n)
                        .is_some_and(|s| s.fields.iter().any(|f| self.keyed(&f.ty)))
            }
            _ => false,
        }
    }

    /// The field of a struct that chooses the opcode.
    pub fn key_field<'s>(&self, s: &'s Struct) -> Option<&'s Field> {
        s.fields.iter().find(|f| self.keyed(&f.ty))
    }

    /// Every frame opcode a value of type `name` may be sent with, once each.
    pub fn type_ops(&self, name: &str) -> Vec<Op> {
        if let Some(e) = self.find_enum(name) {
            let mut ops: Vec<Op> = Vec::new();
            for op in e.variants.iter().flat_map(|v| self.variant_ops(v)) {
                if !ops.contains(&op) {
                    ops.push(op);
                }
            }
            return ops;
        }
        match self.find_struct(name).and_then(|s| self.key_field(s)) {
            Some(Field {
                ty: Ty::Named(n), ..
            }) => self.type_ops(n),
            _ => Vec::new(),
        }
    }

    /// Every frame opcode of a variant.
    pub fn variant_ops(&self, v: &Variant) -> Vec<Op> {
        if let Some(op) = &v.op {
            let mut ops = vec![self.op(op)];
            if let Some((alt, _)) = &v.alt {
                ops.push(self.op(alt));
            }
            return ops;
        }
        match self.variant_key(v) {
            Some(t) => self.type_ops(t),
            None => Vec::new(),
        }
    }

    /// The keyed type that gives a variant without `@op` its opcode.
    pub fn variant_key<'v>(&self, v: &'v Variant) -> Option<&'v str> {
        match &v.payload {
            Payload::Newtype(t) if self.keyed(&Ty::Named(t.clone())) => Some(t),
            Payload::Fields(fs) => fs.iter().find_map(|f| match &f.ty {
                Ty::Named(n) if self.keyed(&f.ty) => Some(n.as_str()),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn op(&self, name: &str) -> Op {
        if self.controls.iter().any(|(c, ..)| c == name) {
            Op::Control(name.to_string())
        } else {
            Op::Api(name.to_string())
        }
    }

    /// The decoder's groups for `e`: opcodes with the same candidate
    /// variants (indices) share one match arm.
    pub fn decode_groups(&self, e: &Enum) -> Vec<(Vec<Op>, Vec<usize>)> {
        let mut by_op: Vec<(Op, Vec<usize>)> = Vec::new();
        for (i, v) in e.variants.iter().enumerate() {
            for op in self.variant_ops(v) {
                match by_op.iter_mut().find(|(o, _)| *o == op) {
                    // A nested enum may send one opcode from two variants.
                    Some((_, c)) if c.contains(&i) => {}
                    Some((_, c)) => c.push(i),
                    None => by_op.push((op, vec![i])),
                }
            }
        }
        let mut groups: Vec<(Vec<Op>, Vec<usize>)> = Vec::new();
        for (op, cands) in by_op {
            match groups.iter_mut().find(|(_, c)| *c == cands) {
                Some((ops, _)) => ops.push(op),
                None => groups.push((vec![op], cands)),
            }
        }
        groups
    }

    /// The domains under `e` (itself included), in declaration order.
    pub fn domains<'s>(&'s self, e: &'s Enum) -> Vec<&'s Enum> {
        let mut out = vec![e];
        for v in &e.variants {
            if let Payload::Newtype(t) = &v.payload {
                if let Some(sub) = self.find_enum(t).filter(|s| s.calls.is_some()) {
                    out.extend(self.domains(sub));
                }
            }
        }
        out
    }
}

/// Validates the model against the remoted opcodes (`op::` names).
pub fn check(spec: &Spec, remoted: &BTreeSet<String>) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, value, line) in &spec.controls {
        if *value >= 1000 || *value == 0 {
            errors.push(format!(
                "line {line}: control opcode {value} must be in 1..1000"
            ));
        }
        if spec.controls.iter().filter(|(_, v, _)| v == value).count() > 1 {
            errors.push(format!("line {line}: control opcode {value} used twice"));
        }
        if !ident_ok(name) {
            errors.push(format!("line {line}: bad control name `{name}`"));
        }
    }
    for item in &spec.items {
        let (name, what) = match item {
            Item::Const(c) => (c.name.as_str(), "constant"),
            Item::Struct(s) => (s.name.as_str(), "struct"),
            Item::Enum(e) => (e.name.as_str(), "enum"),
        };
        if let Some(prev) = names.insert(name, what) {
            errors.push(format!("`{name}` declared twice (a {prev} and a {what})"));
        }
        if !ident_ok(name) {
            errors.push(format!("bad name `{name}`"));
        }
    }
    let roots: Vec<&Enum> = spec.enums().filter(|e| e.root).collect();
    if roots.len() != 1 {
        errors.push(format!(
            "exactly one enum must be `root`, found {}",
            roots.len()
        ));
    }
    for s in spec.structs() {
        check_struct(spec, s, &mut errors);
    }
    for e in spec.enums() {
        check_enum(spec, e, remoted, &mut errors);
    }
    if let [root] = roots[..] {
        check_domains(spec, root, &mut errors);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check_limit(spec: &Spec, limit: &str, line: usize, errors: &mut Vec<String>) {
    let is_const = spec
        .items
        .iter()
        .any(|i| matches!(i, Item::Const(c) if c.name == limit));
    if !is_const && limit.parse::<usize>().is_err() {
        errors.push(format!(
            "line {line}: `{limit}` is neither a `const` nor a number"
        ));
    }
}

/// Checks one field's type; `last`: the field ends its message, so bulk
/// data may be in it.
fn check_ty(spec: &Spec, ty: &Ty, last: bool, line: usize, errors: &mut Vec<String>) {
    match ty {
        Ty::Scalar(_) => {}
        Ty::Str(max) => check_limit(spec, max, line, errors),
        Ty::Array(_, n) => check_limit(spec, n, line, errors),
        Ty::Bytes(max) => {
            if let Some(max) = max {
                check_limit(spec, max, line, errors);
            }
            if !last {
                errors.push(format!(
                    "line {line}: `bytes` must be the last field of a message"
                ));
            }
        }
        Ty::Vec(item, max) => {
            check_limit(spec, max, line, errors);
            check_inner(spec, item, line, errors);
        }
        Ty::Opt(item) => check_inner(spec, item, line, errors),
        Ty::Named(n) => {
            if spec.find_struct(n).is_none() && spec.find_enum(n).is_none() {
                errors.push(format!("line {line}: unknown type `{n}`"));
            } else if spec.named_bulk(n) && !last {
                errors.push(format!(
                    "line {line}: `{n}` carries bulk data, so it must be the last field"
                ));
            } else if spec.find_enum(n).is_some_and(|e| e.calls.is_some()) {
                errors.push(format!(
                    "line {line}: domain `{n}` can only be a `Variant({n})` of another domain"
                ));
            }
        }
    }
}

/// Items of `vec` and `opt`: plain values, no bulk, no opcode choice.
fn check_inner(spec: &Spec, item: &Ty, line: usize, errors: &mut Vec<String>) {
    match item {
        Ty::Scalar(_) => {}
        Ty::Named(n) if spec.find_struct(n).is_some() => {
            if spec.named_bulk(n) || spec.keyed(item) {
                errors.push(format!(
                    "line {line}: `{n}` cannot be an item (bulk data or opcode choice)"
                ));
            }
        }
        other => errors.push(format!(
            "line {line}: `vec`/`opt` items are integers, bool or structs, not {other:?}"
        )),
    }
}

/// Names the generated code uses for its own variables (the writer, the
/// reader, the argument list, loop items), so fields cannot take them.
const RESERVED: [&str; 9] = ["a", "f", "n", "opcode", "r", "s", "v", "w", "x"];

fn check_fields(spec: &Spec, fields: &[Field], errors: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    let mut keyed = 0;
    for (i, f) in fields.iter().enumerate() {
        if !ident_ok(&f.name)
            || RESERVED.contains(&f.name.as_str())
            || !seen.insert(f.name.as_str())
        {
            errors.push(format!(
                "line {}: bad or repeated field name `{}`",
                f.line, f.name
            ));
        }
        check_ty(spec, &f.ty, i + 1 == fields.len(), f.line, errors);
        if spec.keyed(&f.ty) {
            keyed += 1;
        }
    }
    if keyed > 1 {
        let line = fields.first().map_or(0, |f| f.line);
        errors.push(format!(
            "line {line}: more than one field chooses the opcode"
        ));
    }
}

fn check_struct(spec: &Spec, s: &Struct, errors: &mut Vec<String>) {
    if s.fields.is_empty() {
        errors.push(format!(
            "line {}: struct `{}` has no fields",
            s.line, s.name
        ));
    }
    check_fields(spec, &s.fields, errors);
    if contains(spec, &Ty::Named(s.name.clone()), &s.name, 0) {
        errors.push(format!("line {}: `{}` contains itself", s.line, s.name));
    }
}

/// Whether `ty` reaches type `name` (cycles would make infinite types).
fn contains(spec: &Spec, ty: &Ty, name: &str, depth: usize) -> bool {
    if depth > 32 {
        return true;
    }
    match ty {
        Ty::Vec(t, _) | Ty::Opt(t) => contains(spec, t, name, depth + 1),
        Ty::Named(n) => {
            (depth > 0 && n == name)
                || spec.find_struct(n).is_some_and(|s| {
                    s.fields
                        .iter()
                        .any(|f| contains(spec, &f.ty, name, depth + 1))
                })
        }
        _ => false,
    }
}

fn check_enum(spec: &Spec, e: &Enum, remoted: &BTreeSet<String>, errors: &mut Vec<String>) {
    if e.variants.is_empty() {
        errors.push(format!(
            "line {}: enum `{}` has no variants",
            e.line, e.name
        ));
    }
    let mut names = BTreeSet::new();
    let mut methods = BTreeSet::new();
    for v in &e.variants {
        let line = v.line;
        if !ident_ok(&v.name) || !names.insert(v.name.clone()) {
            errors.push(format!("line {line}: bad or repeated variant `{}`", v.name));
        }
        if e.calls.is_some() && (!ident_ok(&v.method()) || !methods.insert(v.method())) {
            errors.push(format!(
                "line {line}: bad or repeated method `{}`",
                v.method()
            ));
        }
        match &v.payload {
            Payload::Fields(fs) => check_fields(spec, fs, errors),
            Payload::Newtype(t) => {
                if spec.find_struct(t).is_none() && spec.find_enum(t).is_none() {
                    errors.push(format!("line {line}: unknown type `{t}`"));
                }
            }
            Payload::Unit => {}
        }
        let key = spec.variant_key(v);
        match (&v.op, key) {
            (Some(_), Some(k)) => errors.push(format!(
                "line {line}: `{}` has both `@op` and `{k}`, which chooses the opcode",
                v.name
            )),
            (None, None) => errors.push(format!(
                "line {line}: `{}` needs `@op` (or a field of a keyed type)",
                v.name
            )),
            _ => {}
        }
        for op in v.op.iter().chain(v.alt.as_ref().map(|(o, _)| o)) {
            if spec.op(op) == Op::Api(op.clone()) && !remoted.contains(op) {
                errors.push(format!(
                    "line {line}: `{op}` is neither in codegen/remoted.txt nor a `control` opcode"
                ));
            }
        }
        if let Some((_, field)) = &v.alt {
            match v.fields().iter().find(|f| &f.name == field) {
                Some(Field { ty: Ty::Opt(_), .. }) => {}
                _ => errors.push(format!(
                    "line {line}: `@alt?{field}` needs an `opt(...)` field `{field}`"
                )),
            }
        }
    }
    for (ops, cands) in spec.decode_groups(e) {
        if cands.len() < 2 {
            continue;
        }
        let mut tags = BTreeSet::new();
        for &i in &cands {
            let v = &e.variants[i];
            if !v.tag.is_some_and(|t| tags.insert(t)) {
                errors.push(format!(
                    "line {}: `{}::{}` shares opcode {:?} with another variant: give each a distinct `tag=N`",
                    v.line, e.name, v.name, ops[0]
                ));
            }
        }
    }
}

/// Domains hang under the root as `Name(Domain)` variants, and nowhere else.
fn check_domains(spec: &Spec, root: &Enum, errors: &mut Vec<String>) {
    if root.calls.is_none() {
        errors.push(format!("line {}: the root needs `calls=Trait`", root.line));
    }
    let reached: BTreeSet<&str> = spec.domains(root).iter().map(|d| d.name.as_str()).collect();
    let mut traits = BTreeSet::new();
    for e in spec.enums().filter(|e| e.calls.is_some()) {
        if !reached.contains(e.name.as_str()) {
            errors.push(format!(
                "line {}: domain `{}` is not a `{}({})` variant of the root",
                e.line, e.name, e.name, e.name
            ));
        }
        if !traits.insert(e.calls.clone()) {
            errors.push(format!("line {}: trait name used twice", e.line));
        }
    }
}
