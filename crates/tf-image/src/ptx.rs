//! Kernel signatures and global variables read from PTX text.
//!
//! The layout of a kernel's parameter buffer is what the driver reports with
//! `cuFuncGetParamInfo`: each parameter at the next offset aligned to its
//! alignment (`.align N` when given, else the element size). The test
//! worker, which has no driver, answers from here; the parser is
//! best-effort and never fails, it skips what it does not understand.

/// One kernel parameter: where it lies in the parameter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    pub offset: u32,
    pub size: u32,
}

/// A kernel (`.entry`) and its parameters in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub params: Vec<Param>,
}

/// A module-scope `.global` variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub name: String,
    pub size: u64,
}

/// What a PTX module declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Module {
    pub entries: Vec<Entry>,
    pub globals: Vec<Global>,
}

impl Module {
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }
    pub fn global(&self, name: &str) -> Option<&Global> {
        self.globals.iter().find(|g| g.name == name)
    }
}

/// Bytes of one element of a PTX fundamental type.
fn type_size(t: &str) -> Option<u32> {
    Some(match t {
        ".b8" | ".u8" | ".s8" => 1,
        ".b16" | ".u16" | ".s16" | ".f16" | ".bf16" => 2,
        ".b32" | ".u32" | ".s32" | ".f32" | ".f16x2" | ".bf16x2" => 4,
        ".b64" | ".u64" | ".s64" | ".f64" => 8,
        ".b128" => 16,
        _ => return None,
    })
}

/// Splits PTX into tokens, dropping comments. Punctuation is one token each.
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
        } else if b"(),[];{}=<>".contains(&c) {
            out.push(&text[i..i + 1]);
            i += 1;
        } else {
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !b"(),[];{}=<>".contains(&b[i]) {
                if b[i..].starts_with(b"//") || b[i..].starts_with(b"/*") {
                    break;
                }
                i += 1;
            }
            out.push(&text[start..i]);
        }
    }
    out
}

/// `[N]` suffixes multiply; a missing count (`[]`) gives 0.
fn array_count(t: &[&str], i: &mut usize) -> u64 {
    let mut count = 1u64;
    while t.get(*i) == Some(&"[") {
        let n = t.get(*i + 1).and_then(|s| s.parse::<u64>().ok());
        count = count.saturating_mul(n.unwrap_or(0));
        *i += if n.is_some() { 3 } else { 2 };
    }
    count
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a.max(1)) * a.max(1)
}

/// One `.param` declaration starting at `t[*i]` (just after `.param`).
fn param(t: &[&str], i: &mut usize, offset: &mut u64) -> Option<Param> {
    let mut align = None;
    let mut size = None;
    let mut after_ptr = false;
    while let Some(tok) = t.get(*i) {
        match *tok {
            "," | ")" => break,
            ".ptr" => after_ptr = true,
            ".align" => {
                let n = t.get(*i + 1).and_then(|s| s.parse::<u64>().ok());
                // `.ptr .global .align N` is the pointee's alignment.
                if !after_ptr {
                    align = n;
                }
                *i += 1;
            }
            s if type_size(s).is_some() && size.is_none() => size = type_size(s),
            s if !s.starts_with('.') && size.is_some() => {
                *i += 1;
                let elem = size? as u64;
                let bytes = elem.saturating_mul(array_count(t, i));
                let a = align.unwrap_or(elem);
                let off = align_up(*offset, a);
                *offset = off + bytes;
                return Some(Param {
                    offset: u32::try_from(off).ok()?,
                    size: u32::try_from(bytes).ok()?,
                });
            }
            _ => {}
        }
        *i += 1;
    }
    None
}

/// Reads every `.entry` and module-scope `.global` of `text`.
pub fn parse(text: &str) -> Module {
    let t = tokens(text);
    let mut m = Module::default();
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        match t[i] {
            "{" => depth += 1,
            "}" => depth = depth.saturating_sub(1),
            ".entry" if depth == 0 => {
                let Some(name) = t.get(i + 1) else { break };
                i += 2;
                let mut params = Vec::new();
                if t.get(i) == Some(&"(") {
                    let mut offset = 0u64;
                    while i < t.len() && t[i] != ")" {
                        if t[i] == ".param" {
                            i += 1;
                            if let Some(p) = param(&t, &mut i, &mut offset) {
                                params.push(p);
                            }
                            continue;
                        }
                        i += 1;
                    }
                }
                m.entries.push(Entry {
                    name: (*name).to_string(),
                    params,
                });
                continue;
            }
            ".global" if depth == 0 => {
                i += 1;
                let mut elem = None;
                while let Some(tok) = t.get(i) {
                    if *tok == ";" || *tok == "=" {
                        break;
                    }
                    if *tok == ".align" {
                        i += 2;
                        continue;
                    }
                    if let Some(s) = type_size(tok) {
                        elem = Some(s as u64);
                    } else if !tok.starts_with('.') {
                        if let Some(e) = elem {
                            let name = (*tok).to_string();
                            i += 1;
                            let size = e.saturating_mul(array_count(&t, &mut i));
                            if size > 0 {
                                m.globals.push(Global { name, size });
                            }
                        }
                        break;
                    }
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    m
}
