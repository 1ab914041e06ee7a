//! A small parser for function declarations in preprocessed C headers.
//!
//! It does not understand C; it understands exactly enough to pull
//! `ret name(params);` prototypes out of `cc -E -P` output: top-level
//! declarations are split at `;`, bodies in braces are skipped, GNU
//! attributes / `__asm__` labels / `restrict` are dropped, and everything that
//! is not a plain prototype (typedefs, variables, functions returning function
//! pointers) is ignored. The caller filters the result by name prefix, so
//! oddities in system headers do not matter as long as splitting stays in sync,
//! which only needs balanced brackets.

use std::fmt;

/// One function prototype as written in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FnDecl {
    pub name: String,
    pub ret: String,
    pub params: Vec<ParamDecl>,
}

/// One parameter: its type with the name removed (`const char *`,
/// `void (*)(void *)`, `int[3]`) and its name (`argN` when unnamed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamDecl {
    pub ty: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// Punctuation, numbers and string/char literals, kept as their text.
    Other(String),
    /// A skipped `{ ... }` group.
    Braces,
}

impl Tok {
    fn is(&self, s: &str) -> bool {
        match self {
            Tok::Ident(t) | Tok::Other(t) => t == s,
            Tok::Braces => false,
        }
    }
    fn text(&self) -> &str {
        match self {
            Tok::Ident(t) | Tok::Other(t) => t,
            Tok::Braces => "{}",
        }
    }
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Error with enough context to find the offending text.
#[derive(Debug)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn tokenize(src: &str) -> Result<Vec<Tok>, ParseError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line_start = true;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line_start = true;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // Preprocessor leftovers (`#pragma`, line markers): skip the line.
        if c == b'#' && line_start {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        line_start = false;
        if src[i..].starts_with("//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if src[i..].starts_with("/*") {
            let end = src[i + 2..]
                .find("*/")
                .ok_or_else(|| ParseError("unterminated comment".into()))?;
            i += end + 4;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(src[s..i].to_string()));
            continue;
        }
        if c.is_ascii_digit() {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            out.push(Tok::Other(src[s..i].to_string()));
            continue;
        }
        if c == b'"' || c == b'\'' {
            let s = i;
            i += 1;
            while i < b.len() && b[i] != c {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            if i > b.len() {
                return Err(ParseError("unterminated literal".into()));
            }
            out.push(Tok::Other(src[s..i].to_string()));
            continue;
        }
        if src[i..].starts_with("...") {
            out.push(Tok::Other("...".into()));
            i += 3;
            continue;
        }
        // Single-character punctuation is all the declarations need; multi-char
        // operators only occur inside skipped initialisers and attributes.
        let ch = src[i..].chars().next().expect("in bounds");
        out.push(Tok::Other(ch.to_string()));
        i += ch.len_utf8();
    }
    Ok(out)
}

/// Splits the token stream into top-level declarations (without the `;`),
/// replacing brace groups by [`Tok::Braces`] and dropping function definitions.
fn split_declarations(toks: Vec<Tok>) -> Result<Vec<Vec<Tok>>, ParseError> {
    let mut decls = Vec::new();
    let mut cur: Vec<Tok> = Vec::new();
    let mut depth = 0usize; // ( and [ nesting
    let mut it = toks.into_iter();
    while let Some(t) = it.next() {
        match t.text() {
            "(" | "[" => depth += 1,
            ")" | "]" => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| ParseError(format!("unbalanced `{t}` after {}", show(&cur))))?
            }
            "{" => {
                let mut braces = 1usize;
                for t in it.by_ref() {
                    match t.text() {
                        "{" => braces += 1,
                        "}" => {
                            braces -= 1;
                            if braces == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if braces != 0 {
                    return Err(ParseError("unbalanced `{`".into()));
                }
                // `) {` at top level is a function definition (a static inline
                // helper in a system header): it has no `;`, so end it here.
                if depth == 0 && cur.last().is_some_and(|l| l.is(")")) {
                    cur.clear();
                } else {
                    cur.push(Tok::Braces);
                }
                continue;
            }
            ";" if depth == 0 => {
                decls.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(t);
    }
    if depth != 0 {
        return Err(ParseError("unbalanced brackets at end of input".into()));
    }
    Ok(decls)
}

fn show(toks: &[Tok]) -> String {
    let tail = &toks[toks.len().saturating_sub(12)..];
    tail.iter().map(Tok::text).collect::<Vec<_>>().join(" ")
}

/// Index of the token closing the bracket opened at `open`.
fn matching(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.text() {
            "(" | "[" => depth += 1,
            ")" | "]" => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Keywords that carry no ABI information and are dropped outright.
const NOISE: &[&str] = &[
    "extern",
    "__extension__",
    "__inline",
    "__inline__",
    "inline",
    "restrict",
    "__restrict",
    "__restrict__",
];

/// Keywords introducing a parenthesised group that is dropped with its group.
const GROUPED_NOISE: &[&str] = &[
    "__attribute__",
    "__attribute",
    "__declspec",
    "__asm__",
    "__asm",
    "asm",
];

fn strip_noise(toks: &[Tok]) -> Vec<Tok> {
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if NOISE.iter().any(|n| t.is(n)) {
            i += 1;
            continue;
        }
        if GROUPED_NOISE.iter().any(|n| t.is(n)) && toks.get(i + 1).is_some_and(|n| n.is("(")) {
            // Declarations are balanced (split_declarations checked), so a
            // match always exists.
            i = matching(toks, i + 1).map_or(toks.len(), |e| e + 1);
            continue;
        }
        out.push(t.clone());
        i += 1;
    }
    out
}

/// C type keywords: an identifier from this set is never a parameter name.
const TYPE_WORDS: &[&str] = &[
    "void", "char", "short", "int", "long", "float", "double", "signed", "unsigned", "_Bool",
    "const", "volatile", "struct", "union", "enum",
];

fn is_type_word(s: &str) -> bool {
    TYPE_WORDS.contains(&s)
}

/// Renders type tokens in the canonical spelling used in the generated
/// tables: `const char *`, `void **`, `char *const`, `int[3]`,
/// `void (*)(void *, int)`.
fn render(toks: &[Tok]) -> String {
    let mut s = String::new();
    let mut prev: Option<&str> = None;
    for t in toks {
        let t = t.text();
        if let Some(p) = prev {
            let glue = matches!(t, "," | ")" | "]" | "[")
                || matches!(p, "(" | "[")
                || (p == "*"
                    && (t == "*" || t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')))
                || (p == ")" && t == "(");
            if !glue {
                s.push(' ');
            }
        }
        s.push_str(t);
        prev = Some(t);
    }
    s
}

fn split_commas(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        match t.text() {
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            "," if depth == 0 => {
                parts.push(&toks[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    parts
}

fn parse_param(toks: &[Tok], index: usize) -> Result<ParamDecl, String> {
    let unnamed = || format!("arg{index}");
    if toks.is_empty() {
        return Err("empty parameter".into());
    }
    if toks.len() == 1 && toks[0].is("...") {
        return Ok(ParamDecl {
            ty: "...".into(),
            name: String::new(),
        });
    }
    // Function pointer: `ret (*name)(args)` or `ret (*)(args)`. The name is the
    // last identifier inside the first parenthesised group that starts with `*`.
    if let Some(open) = toks.iter().position(|t| t.is("(")) {
        if toks.get(open + 1).is_some_and(|t| t.is("*")) {
            let close = matching(toks, open).ok_or("unbalanced parameter")?;
            let mut ty = toks.to_vec();
            let inner = &toks[open + 1..close];
            if let Some(Tok::Ident(name)) = inner.last() {
                if !is_type_word(name) {
                    ty.remove(close - 1);
                    return Ok(ParamDecl {
                        ty: render(&ty),
                        name: name.clone(),
                    });
                }
            }
            return Ok(ParamDecl {
                ty: render(&ty),
                name: unnamed(),
            });
        }
        return Err(format!("unsupported parameter `{}`", render(toks)));
    }
    // Array: `type name[N]...` (possibly several dimensions).
    let (core, dims) = match toks.iter().position(|t| t.is("[")) {
        Some(p) => (&toks[..p], &toks[p..]),
        None => (toks, &toks[toks.len()..]),
    };
    match core.last() {
        Some(Tok::Ident(last)) if core.len() > 1 && !is_type_word(last) => {
            let mut ty = core[..core.len() - 1].to_vec();
            ty.extend_from_slice(dims);
            Ok(ParamDecl {
                ty: render(&ty),
                name: last.clone(),
            })
        }
        _ => Ok(ParamDecl {
            ty: render(toks),
            name: unnamed(),
        }),
    }
}

/// Parses one declaration; `None` when it is not a plain function prototype.
fn parse_decl(decl: &[Tok]) -> Result<Option<FnDecl>, String> {
    if decl.first().is_some_and(|t| t.is("typedef")) || decl.contains(&Tok::Braces) {
        return Ok(None);
    }
    let toks = strip_noise(decl);
    let Some(open) = toks.iter().position(|t| t.is("(")) else {
        return Ok(None);
    };
    let name = match open.checked_sub(1).map(|i| &toks[i]) {
        Some(Tok::Ident(n)) if !is_type_word(n) => n.clone(),
        // `int (*fp)(void)` variables and the like.
        _ => return Ok(None),
    };
    let close = matching(&toks, open).ok_or("unbalanced parameter list")?;
    if close + 1 != toks.len() {
        // Something after the parameter list that is not an attribute: a
        // function returning a function pointer, or not a function at all.
        return Ok(None);
    }
    let ret_toks: Vec<Tok> = toks[..open - 1]
        .iter()
        .filter(|t| !t.is("static"))
        .cloned()
        .collect();
    if ret_toks.is_empty()
        || ret_toks
            .iter()
            .any(|t| !matches!(t, Tok::Ident(_)) && !t.is("*"))
    {
        return Ok(None);
    }
    let inner = &toks[open + 1..close];
    let params = if inner.is_empty() || (inner.len() == 1 && inner[0].is("void")) {
        Vec::new()
    } else {
        split_commas(inner)
            .into_iter()
            .enumerate()
            .map(|(i, p)| parse_param(p, i))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{name}: {e}"))?
    };
    Ok(Some(FnDecl {
        name,
        ret: render(&ret_toks),
        params,
    }))
}

/// Extracts every function prototype whose name satisfies `keep`, in header
/// order. Unparseable declarations of kept names are errors: a silently
/// missing signature would only show up much later as a wrong ABI.
pub fn parse_functions(src: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<FnDecl>, ParseError> {
    let decls = split_declarations(tokenize(src)?)?;
    let mut out = Vec::new();
    for d in &decls {
        match parse_decl(d) {
            Ok(Some(f)) if keep(&f.name) => out.push(f),
            Ok(_) => {}
            Err(e) => {
                let relevant = d.iter().any(|t| matches!(t, Tok::Ident(n) if keep(n)));
                if relevant {
                    return Err(ParseError(format!("{e} in `{}`", render(d))));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> FnDecl {
        let mut v = parse_functions(src, |_| true).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    fn p(ty: &str, name: &str) -> ParamDecl {
        ParamDecl {
            ty: ty.into(),
            name: name.into(),
        }
    }

    #[test]
    fn void_params_and_plain_types() {
        let f = one("CUresult cuInit(unsigned int Flags);");
        assert_eq!(f.ret, "CUresult");
        assert_eq!(f.params, vec![p("unsigned int", "Flags")]);
        assert!(one("nvmlReturn_t nvmlInit_v2(void);").params.is_empty());
        assert!(one("int f();").params.is_empty());
    }

    #[test]
    fn const_char_pointers() {
        let f = one("CUresult cuGetErrorString(CUresult error, const char **pStr);");
        assert_eq!(
            f.params,
            vec![p("CUresult", "error"), p("const char **", "pStr")]
        );
        let f = one("const char* nvmlErrorString(nvmlReturn_t result);");
        assert_eq!(f.ret, "const char *");
        let f = one("CUresult cuModuleLoad(CUmodule *module, const char * const fname);");
        assert_eq!(f.params[1], p("const char *const", "fname"));
    }

    #[test]
    fn function_pointer_params() {
        let f = one("int on_exit(void (*__func)(int __status, void *__arg), void *__arg);");
        assert_eq!(
            f.params[0],
            p("void (*)(int __status, void *__arg)", "__func")
        );
        assert_eq!(f.params[1], p("void *", "__arg"));
        let f = one("CUresult cuX(void (*)(void *), int n);");
        assert_eq!(f.params[0], p("void (*)(void *)", "arg0"));
        let f = one("CUresult cuY(CUresult (*const cb)(CUstream, void *));");
        assert_eq!(f.params[0], p("CUresult (*const)(CUstream, void *)", "cb"));
    }

    #[test]
    fn arrays() {
        let f = one("CUresult cuA(unsigned int dims[3], char name[16][2], int v[]);");
        assert_eq!(
            f.params,
            vec![
                p("unsigned int[3]", "dims"),
                p("char[16][2]", "name"),
                p("int[]", "v")
            ]
        );
    }

    #[test]
    fn unnamed_params() {
        let f = one("nvmlReturn_t nvmlF(nvmlDevice_t, unsigned int, char *);");
        assert_eq!(
            f.params,
            vec![
                p("nvmlDevice_t", "arg0"),
                p("unsigned int", "arg1"),
                p("char *", "arg2")
            ]
        );
    }

    #[test]
    fn attributes_restrict_and_asm_are_dropped() {
        let f = one(
            "extern long strtol (const char *__restrict __nptr, char **__restrict __endptr, int __base) \
             __asm__ (\"\" \"__isoc23_strtol\") __attribute__ ((__nothrow__ , __leaf__)) __attribute__ ((__nonnull__ (1)));",
        );
        assert_eq!(f.name, "strtol");
        assert_eq!(f.ret, "long");
        assert_eq!(f.params[0], p("const char *", "__nptr"));
        let f = one("__attribute__((deprecated)) CUresult __attribute__((x)) cuOld(int a);");
        assert_eq!((f.name.as_str(), f.ret.as_str()), ("cuOld", "CUresult"));
    }

    #[test]
    fn non_prototypes_are_ignored() {
        let src = "\
            typedef int (*fp)(int);\n\
            typedef struct CUstream_st *CUstream;\n\
            struct S { int a; int (*b)(void); };\n\
            typedef enum { A = 1, B = (1 << 2) } E;\n\
            int (*var)(void);\n\
            void (*signal(int sig, void (*func)(int)))(int);\n\
            static __inline unsigned short bswap(unsigned short x) { return (x >> 8) | (x << 8); }\n\
            int x = 3;\n\
            # 1 \"line marker\"\n\
            /* comment */ CUresult cuReal(int a); // trailing\n";
        let v = parse_functions(src, |_| true).unwrap();
        assert_eq!(
            v.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["cuReal"]
        );
    }

    #[test]
    fn filter_and_error_reporting() {
        let v =
            parse_functions("int a(void); CUresult cuB(void);", |n| n.starts_with("cu")).unwrap();
        assert_eq!(v.len(), 1);
        assert!(parse_functions("CUresult cuBad(int a(b));", |n| n.starts_with("cu")).is_err());
        assert!(
            parse_functions("int f(int a(b)); CUresult cuOk(void);", |n| n
                .starts_with("cu"))
            .is_ok()
        );
    }

    #[test]
    fn variadic() {
        let f = one("int printf(const char *fmt, ...);");
        assert_eq!(f.params[1], p("...", ""));
    }
}
