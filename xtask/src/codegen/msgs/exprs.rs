//! Per wire type: the statements that write a value, the expression that
//! reads one (bounded and validated), and the statements that show it in a
//! log line. The item emitter (`wire`) strings these together.

use super::model::{Scalar, Spec, Ty};

/// How generated code reaches a value: a reference bound by a `match`
/// (`ctx` is `&u64`) or a place (`self.ctx`).
#[derive(Clone, Debug)]
pub enum V {
    Ref(String),
    Place(String),
}

impl V {
    pub fn field(name: &str) -> Self {
        V::Place(format!("self.{name}"))
    }

    /// The value itself (fields are `Copy` where this is used).
    fn val(&self) -> String {
        match self {
            V::Ref(n) => format!("*{n}"),
            V::Place(p) => p.clone(),
        }
    }

    /// A reference to it.
    fn r(&self) -> String {
        match self {
            V::Ref(n) => n.clone(),
            V::Place(p) => format!("&{p}"),
        }
    }

    /// A method receiver.
    fn m(&self) -> String {
        match self {
            V::Ref(n) | V::Place(n) => n.clone(),
        }
    }
}

/// Writes `v`; returns the statements and, for bulk data, the expression
/// that is handed back to the caller instead of being copied.
/// `implied`: an `@alt?field` option, present on the wire only with `alt`.
pub fn put(spec: &Spec, ty: &Ty, v: &V, implied: bool) -> (String, Option<String>) {
    let item = |ty: &Ty| put(spec, ty, &V::Ref("x".into()), false).0;
    match ty {
        Ty::Scalar(s) => (format!("w.{}({});", s.rust(), v.val()), None),
        Ty::Str(_) => (format!("w.str({});", v.r()), None),
        Ty::Bytes(_) => (format!("w.u32({}.len() as u32);", v.m()), Some(v.m())),
        Ty::Vec(t, _) => (
            format!(
                "w.u32({}.len() as u32); for x in {} {{ {} }}",
                v.m(),
                v.r(),
                item(t)
            ),
            None,
        ),
        Ty::Opt(t) if implied => (
            format!("if let Some(x) = {} {{ {} }}", v.r(), item(t)),
            None,
        ),
        Ty::Opt(t) => (
            format!(
                "match {} {{ Some(x) => {{ w.u8(1); {} }} None => {{ w.u8(0); }} }}",
                v.r(),
                item(t)
            ),
            None,
        ),
        Ty::Array(Scalar::U8, _) => (format!("w.raw({});", v.r()), None),
        Ty::Array(s, _) => (
            format!("for x in {} {{ w.{}(*x); }}", v.r(), s.rust()),
            None,
        ),
        Ty::Named(n) if spec.named_bulk(n) => (String::new(), Some(format!("{}.put(w)", v.m()))),
        Ty::Named(_) => (format!("{}.put(w);", v.m()), None),
    }
}

/// Reads a value of `ty` from `r`. `implied`: the `op::` path of an
/// `@alt?field` option (present only when the frame has that opcode).
pub fn get(spec: &Spec, ty: &Ty, implied: Option<&str>) -> String {
    match ty {
        Ty::Scalar(s) => format!("r.{}()?", s.read()),
        Ty::Str(max) => format!("r.str({max})?.to_owned()"),
        Ty::Bytes(max) => format!("r.bulk({})?", max.as_deref().unwrap_or("usize::MAX")),
        Ty::Vec(t, max) => format!("r.vec({max}, {})?", item(spec, t)),
        Ty::Opt(t) => match implied {
            Some(op) => format!(
                "if opcode == {op} {{ Some({}) }} else {{ None }}",
                get(spec, t, None)
            ),
            None => format!(
                "if r.presence()? {{ Some({}) }} else {{ None }}",
                get(spec, t, None)
            ),
        },
        Ty::Array(Scalar::U8, n) => format!("r.fixed::<{n}>()?"),
        Ty::Array(s, _) => format!("r.items(Reader::{})?", s.read()),
        Ty::Named(n) if spec.keyed(ty) => format!("{n}::get(opcode, r)?"),
        Ty::Named(n) => format!("{n}::get(r)?"),
    }
}

/// The function that reads one item of a `vec` (scalars and plain structs).
fn item(spec: &Spec, ty: &Ty) -> String {
    match ty {
        Ty::Scalar(s) => format!("Reader::{}", s.read()),
        Ty::Named(n) if !spec.keyed(ty) => format!("{n}::get"),
        other => unreachable!("checked: {other:?} is not an item type"),
    }
}

/// Shows `v` as `name=value` in an argument list (`a`, a `show::Args`):
/// handles and flags in hex, bulk data as its length, the fields of a
/// value that chooses the opcode inline (the call's name already says
/// which one it is).
pub fn show(spec: &Spec, ty: &Ty, v: &V, name: &str) -> String {
    let list = |t: &Ty| match t {
        Ty::Scalar(s) if s.hex() => "crate::show::hex",
        _ => "crate::show::dec",
    };
    match ty {
        Ty::Scalar(s) if s.hex() => format!("a.hex({name:?}, {})?;", v.val()),
        Ty::Scalar(_) => format!("a.dec({name:?}, {})?;", v.val()),
        Ty::Str(_) => format!("a.text({name:?}, {})?;", v.r()),
        Ty::Bytes(_) => format!("a.bulk({name:?}, {}.len())?;", v.m()),
        Ty::Vec(t, _) => format!("a.list({name:?}, &{}[..], {})?;", v.m(), list(t)),
        Ty::Opt(t) => format!(
            "if let Some(x) = {} {{ {} }}",
            v.r(),
            show(spec, t, &V::Ref("x".into()), name)
        ),
        Ty::Array(Scalar::U8, _) => format!("a.raw({name:?}, {})?;", v.r()),
        Ty::Array(s, _) => format!(
            "a.list({name:?}, &{}[..], {})?;",
            v.m(),
            list(&Ty::Scalar(*s))
        ),
        Ty::Named(_) if spec.keyed(ty) => format!("{}.show(a)?;", v.m()),
        // A `Copy` struct field is passed by value (clippy: needless borrow).
        Ty::Named(n) if matches!(v, V::Place(_)) && spec.is_copy(n) => {
            format!("a.dec({name:?}, {})?;", v.val())
        }
        Ty::Named(_) => format!("a.dec({name:?}, {})?;", v.r()),
    }
}
