//! `crates/tf-protocol/src/generated/<module>.rs`: the constants, structs
//! and enums of one module of `codegen/messages.txt` with their codecs and
//! log formatters.

use super::exprs::{self, V};
use super::model::{Enum, Field, Item, Op, Payload, Spec, Struct, Ty, Variant};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Emits one module.
pub fn module(banner: &str, spec: &Spec, module: &str) -> String {
    let g = Gen { spec, module };
    let mut body = String::new();
    let root = spec.root();
    if root.module == module {
        g.controls(&mut body);
    }
    for item in spec.items.iter() {
        match item {
            Item::Const(c) if c.module == module => {
                docs(&mut body, &c.docs, "");
                let _ = writeln!(body, "pub const {}: usize = {};\n", c.name, c.expr);
            }
            Item::Struct(s) if s.module == module => g.structure(&mut body, s),
            Item::Enum(e) if e.module == module => g.enumeration(&mut body, e),
            _ => {}
        }
    }
    if root.module == module {
        g.root_extras(&mut body, root);
    }
    let mut s = String::from(banner);
    let _ = writeln!(
        s,
        "//! Wire messages of [`crate::{module}`], from `codegen/messages.txt`.\n"
    );
    let has_types = spec.items.iter().any(|i| match i {
        Item::Struct(s) => s.module == module,
        Item::Enum(e) => e.module == module,
        Item::Const(_) => false,
    });
    if has_types {
        s.push_str(
            "use std::fmt;\n\nuse crate::codec::{Reader, Writer};\nuse crate::show::Args;\nuse crate::ProtocolError;\n",
        );
    }
    if body.contains("op::") {
        s.push_str("use tf_api::op;\n");
    }
    for (m, names) in g.imports() {
        let _ = writeln!(s, "use crate::generated::{m}::{{{}}};", names.join(", "));
    }
    s.push('\n');
    s.push_str(&body);
    s
}

fn docs(s: &mut String, docs: &[String], indent: &str) {
    for d in docs {
        if d.is_empty() {
            let _ = writeln!(s, "{indent}///");
        } else {
            let _ = writeln!(s, "{indent}/// {d}");
        }
    }
}

fn derives(extra: &[String]) -> String {
    let mut d = vec!["Debug", "Clone", "PartialEq", "Eq"];
    d.extend(extra.iter().map(String::as_str));
    format!("#[derive({})]", d.join(", "))
}

struct Gen<'s> {
    spec: &'s Spec,
    module: &'s str,
}

impl Gen<'_> {
    /// `<'a>` for types that borrow bulk data.
    fn lt(&self, name: &str) -> &'static str {
        if self.spec.named_bulk(name) {
            "<'a>"
        } else {
            ""
        }
    }

    fn rust_ty(&self, ty: &Ty) -> String {
        match ty {
            Ty::Scalar(s) => s.rust().into(),
            Ty::Str(_) => "String".into(),
            Ty::Bytes(_) => "&'a [u8]".into(),
            Ty::Vec(t, _) => format!("Vec<{}>", self.rust_ty(t)),
            Ty::Opt(t) => format!("Option<{}>", self.rust_ty(t)),
            Ty::Array(s, n) => format!("[{}; {n}]", s.rust()),
            Ty::Named(n) => format!("{n}{}", self.lt(n)),
        }
    }

    fn op_path(&self, op: &Op) -> String {
        match op {
            Op::Api(n) => format!("op::{n}"),
            Op::Control(n) if self.spec.root().module == self.module => format!("control::{n}"),
            Op::Control(n) => format!(
                "crate::generated::{}::control::{n}",
                self.spec.root().module
            ),
        }
    }

    /// Types and constants of other modules that this one names.
    fn imports(&self) -> Vec<(String, Vec<String>)> {
        let mut used: BTreeSet<String> = BTreeSet::new();
        let add_ty = |ty: &Ty, used: &mut BTreeSet<String>| {
            let mut t = ty;
            loop {
                match t {
                    Ty::Vec(inner, max) => {
                        used.insert(max.clone());
                        t = inner;
                    }
                    Ty::Opt(inner) => t = inner,
                    Ty::Str(n) | Ty::Array(_, n) | Ty::Bytes(Some(n)) | Ty::Named(n) => {
                        used.insert(n.clone());
                        break;
                    }
                    _ => break,
                }
            }
        };
        let mut domain_display = false;
        for item in &self.spec.items {
            match item {
                Item::Struct(s) if s.module == self.module => {
                    s.fields.iter().for_each(|f| add_ty(&f.ty, &mut used));
                }
                Item::Enum(e) if e.module == self.module => {
                    domain_display |= e.calls.is_some();
                    for v in &e.variants {
                        if let Payload::Newtype(t) = &v.payload {
                            used.insert(t.clone());
                        }
                        v.fields().iter().for_each(|f| add_ty(&f.ty, &mut used));
                    }
                }
                _ => {}
            }
        }
        let mut by_module: Vec<(String, Vec<String>)> = Vec::new();
        let root = self.spec.root();
        if domain_display && root.module != self.module {
            by_module.push((root.module.clone(), vec!["opcode_name".into()]));
        }
        for name in used {
            let Some(m) = self.spec.module_of(&name) else {
                continue; // a number
            };
            if m == self.module {
                continue;
            }
            match by_module.iter_mut().find(|(bm, _)| bm == m) {
                Some((_, names)) => names.push(name),
                None => by_module.push((m.to_string(), vec![name])),
            }
        }
        by_module.sort();
        by_module
    }

    fn controls(&self, s: &mut String) {
        s.push_str("/// Control opcodes (not CUDA functions).\npub mod control {\n");
        for (name, value, _) in &self.spec.controls {
            let _ = writeln!(s, "    pub const {name}: u32 = {value};");
        }
        s.push_str("}\n\n");
    }

    fn fields_decl(&self, s: &mut String, fields: &[Field], public: bool) {
        for f in fields {
            docs(s, &f.docs, "    ");
            let vis = if public { "pub " } else { "" };
            let _ = writeln!(s, "    {vis}{}: {},", f.name, self.rust_ty(&f.ty));
        }
    }

    fn structure(&self, s: &mut String, st: &Struct) {
        let spec = self.spec;
        let (name, lt) = (&st.name, self.lt(&st.name));
        let key = spec.key_field(st);
        docs(s, &st.docs, "");
        let _ = writeln!(s, "{}\npub struct {name}{lt} {{", derives(&st.derives));
        self.fields_decl(s, &st.fields, true);
        let _ = writeln!(s, "}}\n\nimpl{lt} {name}{lt} {{");
        if let Some(k) = key {
            let _ = writeln!(
                s,
                "    /// The frame opcode (chosen by `{}`).\n    pub fn opcode(&self) -> u32 {{ self.{}.opcode() }}\n",
                k.name, k.name
            );
        }
        // Writer.
        let mut stmts = String::new();
        let mut bulk = None;
        for f in &st.fields {
            let (p, b) = exprs::put(spec, &f.ty, &V::field(&f.name), false);
            stmts.push_str(&p);
            bulk = b.or(bulk);
        }
        match bulk {
            Some(b) => {
                let _ = writeln!(
                    s,
                    "    /// Writes the fields; returns the bulk data that follows them.\n    pub(crate) fn put(&self, w: &mut Writer) -> &'a [u8] {{ {stmts} {b} }}\n"
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "    /// Writes the fields.\n    pub(crate) fn put(&self, w: &mut Writer) {{ {stmts} }}\n"
                );
            }
        }
        // Reader.
        let reader = if lt.is_empty() { "'_" } else { "'a" };
        let opcode = if key.is_some() { "opcode: u32, " } else { "" };
        let inits: Vec<String> = st
            .fields
            .iter()
            .map(|f| format!("{}: {}", f.name, exprs::get(spec, &f.ty, None)))
            .collect();
        let build = format!("Self {{ {} }}", inits.join(", "));
        let body = if st.check {
            format!("let v = {build}; v.check().map_err(|why| r.bad(why))?; Ok(v)")
        } else {
            format!("Ok({build})")
        };
        let _ = writeln!(
            s,
            "    /// Reads and validates the fields.\n    pub(crate) fn get({opcode}r: &mut Reader<{reader}>) -> Result<Self, ProtocolError> {{ {body} }}\n"
        );
        // Formatter.
        let shown: String = st
            .fields
            .iter()
            .map(|f| exprs::show(spec, &f.ty, &V::field(&f.name), &f.name))
            .collect();
        let _ = writeln!(
            s,
            "    /// Appends the fields to a log line's argument list.\n    pub(crate) fn show(&self, a: &mut Args<'_, '_>) -> fmt::Result {{ {shown} Ok(()) }}\n}}\n"
        );
        let _ = writeln!(
            s,
            "impl fmt::Display for {name}{} {{\n    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {{ crate::show::braces(f, |a| self.show(a)) }}\n}}\n",
            if lt.is_empty() { "" } else { "<'_>" }
        );
    }

    /// The pattern that binds every field of `v` (`Self::V { a, b }`).
    fn pattern(&self, v: &Variant) -> String {
        match &v.payload {
            Payload::Unit => format!("Self::{}", v.name),
            Payload::Newtype(_) => format!("Self::{}(v)", v.name),
            Payload::Fields(fs) => format!(
                "Self::{} {{ {} }}",
                v.name,
                fs.iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The bound values of `v`'s fields with their types and names.
    fn bound<'v>(&self, v: &'v Variant) -> Vec<(Ty, V, &'v str, bool)> {
        match &v.payload {
            Payload::Unit => Vec::new(),
            Payload::Newtype(t) => vec![(Ty::Named(t.clone()), V::Ref("v".into()), "", false)],
            Payload::Fields(fs) => fs
                .iter()
                .map(|f| {
                    let implied = v.implied(&f.name).is_some();
                    (
                        f.ty.clone(),
                        V::Ref(f.name.clone()),
                        f.name.as_str(),
                        implied,
                    )
                })
                .collect(),
        }
    }

    fn enumeration(&self, s: &mut String, e: &Enum) {
        let (name, lt) = (&e.name, self.lt(&e.name));
        docs(s, &e.docs, "");
        let _ = writeln!(s, "{}\npub enum {name}{lt} {{", derives(&e.derives));
        for v in &e.variants {
            docs(s, &v.docs, "    ");
            match &v.payload {
                Payload::Unit => {
                    let _ = writeln!(s, "    {},", v.name);
                }
                Payload::Newtype(t) => {
                    let _ = writeln!(s, "    {}({t}{}),", v.name, self.lt(t));
                }
                Payload::Fields(fs) => {
                    let _ = writeln!(s, "    {} {{", v.name);
                    self.fields_decl(s, fs, false);
                    s.push_str("    },\n");
                }
            }
        }
        let _ = writeln!(s, "}}\n\nimpl{lt} {name}{lt} {{");
        if e.unit_only() {
            self.unit_helpers(s, e);
        }
        self.opcode_fn(s, e);
        self.put_fn(s, e);
        self.get_fn(s, e);
        self.show_fn(s, e);
        s.push_str("}\n\n");
        if e.calls.is_some() {
            let _ = writeln!(
                s,
                "impl fmt::Display for {name}{} {{\n    /// `cuMemAlloc_v2(ctx=0x7c7c000000000001, size=4096)`.\n    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {{\n        crate::show::call(f, opcode_name(self.opcode()).unwrap_or(\"?\"), |a| self.show(a))\n    }}\n}}\n",
                if lt.is_empty() { "" } else { "<'_>" }
            );
        }
    }

    fn unit_helpers(&self, s: &mut String, e: &Enum) {
        let all: Vec<String> = e
            .variants
            .iter()
            .map(|v| format!("Self::{}", v.name))
            .collect();
        let _ = writeln!(
            s,
            "    /// Every value, in declaration order.\n    pub const ALL: &'static [Self] = &[{}];\n",
            all.join(", ")
        );
        let arms: String = e
            .variants
            .iter()
            .flat_map(|v| {
                self.spec
                    .variant_ops(v)
                    .into_iter()
                    .map(move |op| (op, v.name.clone()))
            })
            .map(|(op, n)| format!("{} => Some(Self::{n}),", self.op_path(&op)))
            .collect();
        let _ = writeln!(
            s,
            "    /// The value sent with `opcode`, if any.\n    pub fn from_opcode(opcode: u32) -> Option<Self> {{ match opcode {{ {arms} _ => None }} }}\n"
        );
    }

    fn opcode_fn(&self, s: &mut String, e: &Enum) {
        let mut arms = String::new();
        for v in &e.variants {
            let any = match &v.payload {
                Payload::Unit => format!("Self::{}", v.name),
                Payload::Newtype(_) => format!("Self::{}(_)", v.name),
                Payload::Fields(_) => format!("Self::{} {{ .. }}", v.name),
            };
            match (&v.op, &v.alt, self.spec.variant_key(v)) {
                (Some(op), Some((alt, field)), _) => {
                    let _ = write!(
                        arms,
                        "Self::{} {{ {field}: Some(_), .. }} => {}, {any} => {},",
                        v.name,
                        self.op_path(&self.spec.op(alt)),
                        self.op_path(&self.spec.op(op))
                    );
                }
                (Some(op), None, _) => {
                    let _ = write!(arms, "{any} => {},", self.op_path(&self.spec.op(op)));
                }
                (None, _, Some(_)) => {
                    let (pat, recv) = match &v.payload {
                        Payload::Newtype(_) => (format!("Self::{}(v)", v.name), "v".to_string()),
                        _ => {
                            let k = v
                                .fields()
                                .iter()
                                .find(|f| self.spec.keyed(&f.ty))
                                .expect("checked: a key");
                            (
                                format!("Self::{} {{ {}, .. }}", v.name, k.name),
                                k.name.clone(),
                            )
                        }
                    };
                    let _ = write!(arms, "{pat} => {recv}.opcode(),");
                }
                (None, _, None) => unreachable!("checked: every variant has an opcode"),
            }
        }
        let _ = writeln!(
            s,
            "    /// The frame opcode.\n    pub fn opcode(&self) -> u32 {{ match self {{ {arms} }} }}\n"
        );
    }

    fn put_fn(&self, s: &mut String, e: &Enum) {
        let bulk = self.spec.named_bulk(&e.name);
        if e.variants
            .iter()
            .all(|v| v.tag.is_none() && self.bound(v).is_empty())
        {
            let _ = writeln!(
                s,
                "    /// Writes the fields (none: the opcode says it all).\n    pub(crate) fn put(&self, _w: &mut Writer) {{}}\n"
            );
            return;
        }
        let mut arms = String::new();
        for v in &e.variants {
            let mut stmts = String::new();
            if let Some(t) = v.tag {
                let _ = write!(stmts, "w.u8({t});");
            }
            let mut tail = None;
            for (ty, val, _, implied) in self.bound(v) {
                let (p, b) = exprs::put(self.spec, &ty, &val, implied);
                stmts.push_str(&p);
                tail = b.or(tail);
            }
            let tail = match (bulk, tail) {
                (true, Some(t)) => t,
                (true, None) => "&[]".into(),
                (false, _) => String::new(),
            };
            let _ = write!(arms, "{} => {{ {stmts} {tail} }}", self.pattern(v));
        }
        let ret = if bulk { " -> &'a [u8]" } else { "" };
        let what = if bulk {
            "Writes the fields; returns the bulk data that follows them."
        } else {
            "Writes the fields."
        };
        let _ = writeln!(
            s,
            "    /// {what}\n    pub(crate) fn put(&self, w: &mut Writer){ret} {{ match self {{ {arms} }} }}\n"
        );
    }

    /// The constructor of `v` from the reader (the opcode is known),
    /// followed by the enum's hand-written `check` for a `check` variant.
    fn build(&self, v: &Variant) -> String {
        let value = self.construct(v);
        if v.check {
            format!("{{ let v = {value}; v.check().map_err(|why| r.bad(why))?; v }}")
        } else {
            value
        }
    }

    fn construct(&self, v: &Variant) -> String {
        match &v.payload {
            Payload::Unit => format!("Self::{}", v.name),
            Payload::Newtype(t) => format!(
                "Self::{}({})",
                v.name,
                exprs::get(self.spec, &Ty::Named(t.clone()), None)
            ),
            Payload::Fields(fs) => {
                let inits: Vec<String> = fs
                    .iter()
                    .map(|f| {
                        let implied = v.implied(&f.name).map(|op| self.op_path(&self.spec.op(op)));
                        format!(
                            "{}: {}",
                            f.name,
                            exprs::get(self.spec, &f.ty, implied.as_deref())
                        )
                    })
                    .collect();
                format!("Self::{} {{ {} }}", v.name, inits.join(", "))
            }
        }
    }

    fn get_fn(&self, s: &mut String, e: &Enum) {
        let mut arms = String::new();
        let mut reads = false;
        for (ops, cands) in self.spec.decode_groups(e) {
            let pat: Vec<String> = ops.iter().map(|o| self.op_path(o)).collect();
            let pat = pat.join(" | ");
            let tagged = cands.len() > 1 || e.variants[cands[0]].tag.is_some();
            if tagged {
                reads = true;
                let inner: String = cands
                    .iter()
                    .map(|&i| {
                        let v = &e.variants[i];
                        format!("{} => {},", v.tag.unwrap_or(0), self.build(v))
                    })
                    .collect();
                let _ = write!(
                    arms,
                    "{pat} => match r.u8()? {{ {inner} _ => return Err(r.bad(\"unknown sub-operation\")), }},"
                );
            } else {
                let v = &e.variants[cands[0]];
                reads |= v.check || !self.bound(v).is_empty();
                let _ = write!(arms, "{pat} => {},", self.build(v));
            }
        }
        let lt = self.lt(&e.name);
        let reader = if lt.is_empty() { "'_" } else { "'a" };
        let r = if reads { "r" } else { "_r" };
        let _ = writeln!(
            s,
            "    /// Reads and validates the fields of the request with `opcode`.\n    pub(crate) fn get(opcode: u32, {r}: &mut Reader<{reader}>) -> Result<Self, ProtocolError> {{\n        Ok(match opcode {{ {arms} _ => return Err(ProtocolError::UnknownOpcode(opcode)), }})\n    }}\n"
        );
    }

    fn show_fn(&self, s: &mut String, e: &Enum) {
        if e.variants.iter().all(|v| self.bound(v).is_empty()) {
            let _ = writeln!(
                s,
                "    /// Appends the fields to a log line's argument list (none).\n    pub(crate) fn show(&self, _a: &mut Args<'_, '_>) -> fmt::Result {{ Ok(()) }}\n"
            );
            return;
        }
        let mut arms = String::new();
        for v in &e.variants {
            let shown: String = self
                .bound(v)
                .iter()
                .map(|(ty, val, name, _)| match &v.payload {
                    // A newtype's fields are the call's arguments.
                    Payload::Newtype(_) => "v.show(a)?;".to_string(),
                    _ => exprs::show(self.spec, ty, val, name),
                })
                .collect();
            let _ = write!(arms, "{} => {{ {shown} }}", self.pattern(v));
        }
        let _ = writeln!(
            s,
            "    /// Appends the fields to a log line's argument list.\n    pub(crate) fn show(&self, a: &mut Args<'_, '_>) -> fmt::Result {{ match self {{ {arms} }} Ok(()) }}\n"
        );
    }

    /// `encode`, `decode`, `name` and `opcode_name`, for the root enum.
    fn root_extras(&self, s: &mut String, root: &Enum) {
        let name = &root.name;
        let (lt, bulk) = if self.spec.named_bulk(name) {
            ("<'a>", "&'a [u8]")
        } else {
            ("", "&'static [u8]")
        };
        let put = if self.spec.named_bulk(name) {
            "let bulk = self.put(&mut w);"
        } else {
            "self.put(&mut w); let bulk = &[];"
        };
        let payload = if lt.is_empty() { "'_" } else { "'a" };
        let _ = writeln!(
            s,
            "impl{lt} {name}{lt} {{\n\
             /// Encodes the fixed part; bulk data (if any) is returned separately so\n\
             /// the transport can gather it without copying.\n\
             pub fn encode(&self) -> (Vec<u8>, {bulk}) {{ let mut w = Writer::new(); {put} (w.finish(), bulk) }}\n\n\
             /// Decodes and validates one request. Never panics.\n\
             pub fn decode(opcode: u32, payload: &{payload} [u8]) -> Result<Self, ProtocolError> {{\n\
                 let what = opcode_name(opcode).ok_or(ProtocolError::UnknownOpcode(opcode))?;\n\
                 let mut r = Reader::new(payload, what);\n\
                 let req = Self::get(opcode, &mut r)?;\n\
                 r.end()?;\n\
                 Ok(req)\n\
             }}\n\n\
             /// The API function (or control message) this request is.\n\
             pub fn name(&self) -> &'static str {{ opcode_name(self.opcode()).unwrap_or(\"?\") }}\n\
             }}\n"
        );
        let mut arms = String::new();
        for op in self.spec.type_ops(name) {
            let shown = match &op {
                Op::Api(n) => n.clone(),
                Op::Control(c) => self
                    .spec
                    .enums()
                    .flat_map(|e| &e.variants)
                    .find(|v| v.op.as_deref() == Some(c.as_str()))
                    .map_or_else(|| c.clone(), |v| v.name.clone()),
            };
            let _ = write!(arms, "{} => {shown:?},", self.op_path(&op));
        }
        let _ = writeln!(
            s,
            "/// The name of the function (or control message) of `opcode`; `None`\n\
             /// for an opcode no request uses.\n\
             pub fn opcode_name(opcode: u32) -> Option<&'static str> {{ Some(match opcode {{ {arms} _ => return None, }}) }}"
        );
    }
}
