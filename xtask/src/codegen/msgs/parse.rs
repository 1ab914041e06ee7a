//! The parser of `codegen/messages.txt` (the format is described at the top
//! of that file). It only builds the model; `model::check` validates it.

use super::model::{Const, Enum, Field, Item, Payload, Scalar, Spec, Struct, Ty, Variant};

/// One non-empty line: its number, whether it is indented, and its text
/// without the comment.
struct Line<'t> {
    no: usize,
    indented: bool,
    text: &'t str,
}

/// Parses the whole file; every error is reported with its line number.
pub fn parse(text: &str) -> Result<Spec, Vec<String>> {
    let mut spec = Spec::default();
    let mut errors = Vec::new();
    let mut docs: Vec<String> = Vec::new();
    let mut module: Option<String> = None;
    let lines = text.lines().enumerate().filter_map(|(i, raw)| {
        let trimmed = raw.trim();
        // Doc lines keep any `#` they contain.
        let text = if trimmed.starts_with("///") {
            trimmed
        } else {
            raw.split('#').next().unwrap_or("").trim()
        };
        (!text.is_empty()).then(|| Line {
            no: i + 1,
            indented: raw.starts_with([' ', '\t']),
            text,
        })
    });
    for line in lines {
        let no = line.no;
        if let Some(doc) = line.text.strip_prefix("///") {
            docs.push(doc.strip_prefix(' ').unwrap_or(doc).to_string());
            continue;
        }
        let mut fail = |e: String| errors.push(format!("line {no}: {e}"));
        if line.indented {
            let r = match spec.items.last_mut() {
                Some(Item::Struct(s)) if s.module == module.clone().unwrap_or_default() => {
                    field_line(line.text, std::mem::take(&mut docs), no).map(|f| s.fields.push(f))
                }
                Some(Item::Enum(e)) if e.module == module.clone().unwrap_or_default() => {
                    variant_line(line.text, std::mem::take(&mut docs), no)
                        .map(|v| e.variants.push(v))
                }
                _ => Err("an indented line outside a struct or enum".into()),
            };
            if let Err(e) = r {
                fail(e);
            }
            continue;
        }
        let words: Vec<&str> = line.text.split_whitespace().collect();
        let item_docs = std::mem::take(&mut docs);
        let in_module = |what: &str| {
            module
                .clone()
                .ok_or_else(|| format!("`{what}` before any `module` line"))
        };
        let undocumented = matches!(words[..], ["control" | "module", ..]);
        if undocumented && !item_docs.is_empty() {
            fail("`///` documents a struct, enum, const, field or variant".into());
            continue;
        }
        let r: Result<(), String> = match words[..] {
            ["control", name, number] => match number.parse::<u32>() {
                Ok(v) => {
                    spec.controls.push((name.to_string(), v, no));
                    Ok(())
                }
                Err(_) => Err(format!("bad control opcode `{number}`")),
            },
            ["module", name] => {
                if spec.modules.iter().any(|m| m == name) {
                    Err(format!("module `{name}` declared twice"))
                } else {
                    spec.modules.push(name.to_string());
                    module = Some(name.to_string());
                    Ok(())
                }
            }
            ["const", name, ref expr @ ..] if !expr.is_empty() => {
                in_module("const").map(|module| {
                    spec.items.push(Item::Const(Const {
                        name: name.to_string(),
                        expr: expr.join(" "),
                        docs: item_docs,
                        module,
                    }))
                })
            }
            ["struct", name, ref flags @ ..] => in_module("struct").and_then(|module| {
                let mut s = Struct {
                    name: name.to_string(),
                    docs: item_docs,
                    derives: Vec::new(),
                    check: false,
                    fields: Vec::new(),
                    module,
                    line: no,
                };
                for f in flags {
                    match (*f, f.strip_prefix('+')) {
                        (_, Some(d)) => s.derives.push(d.to_string()),
                        ("check", None) => s.check = true,
                        _ => return Err(format!("unknown struct flag `{f}`")),
                    }
                }
                spec.items.push(Item::Struct(s));
                Ok(())
            }),
            ["enum", name, ref flags @ ..] => in_module("enum").and_then(|module| {
                let mut e = Enum {
                    name: name.to_string(),
                    docs: item_docs,
                    derives: Vec::new(),
                    calls: None,
                    root: false,
                    variants: Vec::new(),
                    module,
                    line: no,
                };
                for f in flags {
                    match (*f, f.strip_prefix('+'), f.strip_prefix("calls=")) {
                        (_, Some(d), _) => e.derives.push(d.to_string()),
                        (_, _, Some(t)) => e.calls = Some(t.to_string()),
                        ("root", ..) => e.root = true,
                        _ => return Err(format!("unknown enum flag `{f}`")),
                    }
                }
                spec.items.push(Item::Enum(e));
                Ok(())
            }),
            _ => Err(format!("cannot parse `{}`", line.text)),
        };
        if let Err(e) = r {
            fail(e);
        }
    }
    if !docs.is_empty() {
        errors.push("documentation at the end of the file documents nothing".into());
    }
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

/// Splits on whitespace outside brackets, then joins `name:` with the type
/// after it, so `vec(Opt, MAX)` and `guid: [u8; 16]` stay one token.
fn tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            _ => {}
        }
        if c.is_whitespace() && depth == 0 {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    let mut joined: Vec<String> = Vec::new();
    for t in out {
        match joined.last_mut() {
            Some(prev) if prev.ends_with(':') => prev.push_str(&t),
            _ => joined.push(t),
        }
    }
    joined
}

fn field_line(text: &str, docs: Vec<String>, line: usize) -> Result<Field, String> {
    match &tokens(text)[..] {
        [one] => field(one, docs, line),
        _ => Err(format!("expected `name: type`, got `{text}`")),
    }
}

fn field(token: &str, docs: Vec<String>, line: usize) -> Result<Field, String> {
    let (name, ty) = token
        .split_once(':')
        .ok_or_else(|| format!("expected `name:type`, got `{token}`"))?;
    Ok(Field {
        name: name.to_string(),
        ty: ty_of(ty)?,
        docs,
        line,
    })
}

fn variant_line(text: &str, docs: Vec<String>, line: usize) -> Result<Variant, String> {
    let toks = tokens(text);
    let (head, rest) = toks.split_first().ok_or("empty variant")?;
    let (head, newtype) = match head.split_once('(') {
        Some((h, t)) => {
            let t = t
                .strip_suffix(')')
                .ok_or_else(|| format!("bad variant `{head}`"))?;
            (h, Some(t.to_string()))
        }
        None => (head.as_str(), None),
    };
    let (name, method) = match head.split_once('=') {
        Some((n, m)) => (n, Some(m.to_string())),
        None => (head, None),
    };
    let mut v = Variant {
        name: name.to_string(),
        method,
        docs,
        payload: match newtype {
            Some(t) => Payload::Newtype(t),
            None => Payload::Unit,
        },
        op: None,
        alt: None,
        tag: None,
        check: false,
        line,
    };
    for t in rest {
        if let Some(op) = t.strip_prefix('@') {
            match op.split_once('?') {
                Some((alt, field)) if v.op.is_some() && v.alt.is_none() => {
                    v.alt = Some((alt.to_string(), field.to_string()));
                }
                None if v.op.is_none() => v.op = Some(op.to_string()),
                _ => {
                    return Err(format!(
                        "unexpected opcode `{t}` (one `@op`, then at most one `@alt?field`)"
                    ))
                }
            }
        } else if let Some(n) = t.strip_prefix("tag=") {
            let n = n.parse::<u8>().map_err(|_| format!("bad tag `{t}`"))?;
            v.tag = Some(n);
        } else if t == "check" && !v.check {
            v.check = true;
        } else if t.contains(':') {
            let f = field(t, Vec::new(), line)?;
            match &mut v.payload {
                Payload::Unit => v.payload = Payload::Fields(vec![f]),
                Payload::Fields(fs) => fs.push(f),
                Payload::Newtype(_) => return Err("a `Variant(Type)` has no named fields".into()),
            }
        } else {
            return Err(format!(
                "cannot parse `{t}` (`@op`, `tag=N`, `check` or `name:type`)"
            ));
        }
    }
    Ok(v)
}

/// A type of the wire grammar.
pub fn ty_of(text: &str) -> Result<Ty, String> {
    let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let inner = |prefix: &str| {
        t.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
            .map(str::to_string)
    };
    if let Some(s) = Scalar::parse(&t) {
        return Ok(Ty::Scalar(s));
    }
    if t == "bytes" {
        return Ok(Ty::Bytes(None));
    }
    if let Some(max) = inner("bytes(") {
        return Ok(Ty::Bytes(Some(max)));
    }
    if let Some(max) = inner("str(") {
        return Ok(Ty::Str(max));
    }
    if let Some(body) = inner("opt(") {
        return Ok(Ty::Opt(Box::new(ty_of(&body)?)));
    }
    if let Some(body) = inner("vec(") {
        let (item, max) = body
            .rsplit_once(',')
            .ok_or_else(|| format!("`{text}`: expected vec(T, MAX)"))?;
        return Ok(Ty::Vec(Box::new(ty_of(item)?), max.to_string()));
    }
    if let Some(body) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let (item, n) = body
            .split_once(';')
            .ok_or_else(|| format!("`{text}`: expected [T; N]"))?;
        let item =
            Scalar::parse(item).ok_or_else(|| format!("`{text}`: arrays hold integers or bool"))?;
        return Ok(Ty::Array(item, n.to_string()));
    }
    if t.starts_with(|c: char| c.is_ascii_uppercase())
        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Ok(Ty::Named(t));
    }
    Err(format!("unknown type `{text}`"))
}
