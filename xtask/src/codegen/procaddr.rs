//! The `cuGetProcAddress` table: which exported symbol the real driver
//! answers for a (base name, CUDA version, flags) request.
//!
//! The committed data is `codegen/procaddr.tsv`. It comes from one of two
//! sources, and says which in its `@source` line:
//!
//! - a sweep of a real driver (`tests/gpu/procaddr/sweep.c`, run by the GPU
//!   check), imported with `cargo xtask procaddr import FILE`: exactly what
//!   that driver answered;
//! - until then, `cargo xtask procaddr derive`: a provisional table derived
//!   from the typedef headers. `cudaTypedefs.h` names every ABI variant of a
//!   function after the CUDA version that introduced it
//!   (`PFN_cuCtxCreate_v3020`, `PFN_cuMemcpyHtoD_v7000_ptds`), which is
//!   precisely the version cudart passes when it asks for that variant.
//!
//! `cargo xtask codegen` turns the TSV into `tf-api/src/generated/procaddr.rs`.
//!
//! TSV rows: `name <TAB> flags <TAB> from-version <TAB> answer <TAB> origin`.
//! An answer holds from its version up to the next row of the same name and
//! flags; below the first row the name is known but the version is not
//! sufficient; a name without rows is not found. Answers are an exported
//! symbol, `!version` (VERSION_NOT_SUFFICIENT) or `!notfound`
//! (SYMBOL_NOT_FOUND). Lines starting with `@` are directives, `#` comments.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// What the driver answers from a version on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Answer {
    Symbol(String),
    VersionNotSufficient,
    NotFound,
}

impl Answer {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "!version" => Ok(Answer::VersionNotSufficient),
            "!notfound" => Ok(Answer::NotFound),
            s if s.starts_with("cu")
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Ok(Answer::Symbol(s.to_string()))
            }
            other => Err(format!("bad answer `{other}`")),
        }
    }

    fn text(&self) -> &str {
        match self {
            Answer::Symbol(s) => s,
            Answer::VersionNotSufficient => "!version",
            Answer::NotFound => "!notfound",
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub name: String,
    pub flags: u8,
    pub from: i32,
    pub answer: Answer,
    /// `sweep` or `derived`.
    pub origin: String,
}

/// The parsed TSV: directives (in order) and rows (sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tsv {
    pub directives: Vec<(String, String)>,
    pub rows: Vec<Row>,
}

impl Tsv {
    pub fn directive(&self, key: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: String) {
        match self.directives.iter_mut().find(|(k, _)| k == key) {
            Some(d) => d.1 = value,
            None => self.directives.push((key.to_string(), value)),
        }
    }
}

/// The flag values a table covers: DEFAULT, LEGACY_STREAM, PER_THREAD_DEFAULT_STREAM.
pub const FLAGS: [u8; 3] = [0, 1, 2];
/// What `cuGetProcAddress_v2` returns with VERSION_NOT_SUFFICIENT /
/// SYMBOL_NOT_FOUND unless the table's `@not-found-result` says otherwise:
/// CUDA_SUCCESS, as cuda.h documents and driver 535 does (the status says why).
pub const DEFAULT_NOT_FOUND_RESULT: u32 = 0;
/// What `cuGetProcAddress` (v1, no status argument) returns then
/// (`@not-found-result-v1`): CUDA_ERROR_NOT_FOUND on driver 535.
pub const DEFAULT_NOT_FOUND_RESULT_V1: u32 = 500;
/// What a version above the driver's own gets (`@above-driver`): `answer`
/// (as at the driver's version; driver 535 does this) or `invalid-value`
/// (what cuda.h documents).
pub const DEFAULT_ABOVE_DRIVER: &str = "answer";

pub fn parse_tsv(text: &str) -> Result<Tsv, String> {
    let mut t = Tsv::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(d) = line.strip_prefix('@') {
            let (k, v) = d.split_once('\t').unwrap_or((d, ""));
            t.directives
                .push((k.trim().to_string(), v.trim().to_string()));
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [name, flags, from, answer, origin] = f[..] else {
            return Err(format!(
                "line {n}: expected 5 tab-separated fields, got {}",
                f.len()
            ));
        };
        let flags: u8 = flags
            .parse()
            .ok()
            .filter(|f| FLAGS.contains(f))
            .ok_or_else(|| format!("line {n}: bad flags `{flags}`"))?;
        let from: i32 = from
            .parse()
            .map_err(|_| format!("line {n}: bad version `{from}`"))?;
        let answer = Answer::parse(answer).map_err(|e| format!("line {n}: {e}"))?;
        if !name.starts_with("cu") {
            return Err(format!("line {n}: `{name}` is not a CUDA name"));
        }
        t.rows.push(Row {
            name: name.to_string(),
            flags,
            from,
            answer,
            origin: origin.to_string(),
        });
    }
    t.rows.sort();
    for w in t.rows.windows(2) {
        if (&w[0].name, w[0].flags, w[0].from) == (&w[1].name, w[1].flags, w[1].from) {
            return Err(format!(
                "{} flags {} has two answers from version {}",
                w[0].name, w[0].flags, w[0].from
            ));
        }
    }
    Ok(t)
}

pub fn format_tsv(t: &Tsv) -> String {
    let mut s = String::from(
        "# cuGetProcAddress table (see xtask/src/codegen/procaddr.rs).\n\
         # name\tflags\tfrom-version\tanswer\torigin\n\
         # An answer holds from its version up to the next row of the same name and\n\
         # flags; below the first row: VERSION_NOT_SUFFICIENT; a name without rows:\n\
         # SYMBOL_NOT_FOUND. !version / !notfound are those statuses within a range.\n",
    );
    for (k, v) in &t.directives {
        let _ = writeln!(s, "@{k}\t{v}");
    }
    for r in &t.rows {
        let _ = writeln!(
            s,
            "{}\t{}\t{}\t{}\t{}",
            r.name,
            r.flags,
            r.from,
            r.answer.text(),
            r.origin
        );
    }
    s
}

/// `(base, ABI version N of _vN (1 when absent), per-thread suffix)`.
fn split_symbol(name: &str) -> (&str, u32, Option<&str>) {
    let (rest, pt) = match name
        .strip_suffix("_ptds")
        .map(|r| (r, "_ptds"))
        .or_else(|| name.strip_suffix("_ptsz").map(|r| (r, "_ptsz")))
    {
        Some((r, s)) => (r, Some(s)),
        None => (name, None),
    };
    if let Some(pos) = rest.rfind("_v") {
        let digits = &rest[pos + 2..];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(v) = digits.parse() {
                return (&rest[..pos], v, pt);
            }
        }
    }
    (rest, 1, pt)
}

/// Every `PFN_<base>_v<version>[_ptds|_ptsz]` in the typedef headers:
/// base → set of (version, per-thread).
fn typedef_versions(texts: &[&str]) -> BTreeMap<String, BTreeSet<(i32, bool)>> {
    let mut out: BTreeMap<String, BTreeSet<(i32, bool)>> = BTreeMap::new();
    for text in texts {
        let mut rest = *text;
        while let Some(pos) = rest.find("PFN_") {
            let tail = &rest[pos + 4..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let ident = &tail[..end];
            rest = &tail[end..];
            let (base, pt) = match ident
                .strip_suffix("_ptds")
                .or_else(|| ident.strip_suffix("_ptsz"))
            {
                Some(b) => (b, true),
                None => (ident, false),
            };
            // Only versioned names are facts; `PFN_cuMemAlloc` alone is a
            // #define alias of one of them.
            let Some(pos) = base.rfind("_v") else {
                continue;
            };
            let Ok(version) = base[pos + 2..].parse::<i32>() else {
                continue;
            };
            if base[pos + 2..].bytes().all(|b| b.is_ascii_digit()) && base.starts_with("cu") {
                out.entry(base[..pos].to_string())
                    .or_default()
                    .insert((version, pt));
            }
        }
    }
    out
}

/// The provisional table. `names` are the exported CUDA names (our
/// libcuda's), `typedefs` the texts of the `*Typedefs.h` headers. Notes on
/// anything that did not line up are returned for the TSV's comments.
pub fn derive(typedefs: &[&str], names: &[&str]) -> (Vec<Row>, Vec<String>) {
    let pfn = typedef_versions(typedefs);
    // base → (ABI number, per-thread?) → symbol
    let mut variants: BTreeMap<&str, BTreeMap<(u32, bool), &str>> = BTreeMap::new();
    for n in names {
        let (base, abi, pt) = split_symbol(n);
        variants
            .entry(base)
            .or_default()
            .insert((abi, pt.is_some()), n);
    }
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for (base, versions) in &pfn {
        let Some(vars) = variants.get(base.as_str()) else {
            notes.push(format!(
                "{base}: in the typedef headers but not exported by us"
            ));
            continue;
        };
        // The i-th introduction version of a kind belongs to the i-th ABI
        // variant of that kind (NVIDIA numbers _v2, _v3 in the same order).
        let zip = |pt: bool| -> Vec<(i32, u32, &str)> {
            let intro: Vec<i32> = versions
                .iter()
                .filter(|(_, p)| *p == pt)
                .map(|(v, _)| *v)
                .collect();
            let syms: Vec<(u32, &str)> = vars
                .iter()
                .filter(|((_, p), _)| *p == pt)
                .map(|((abi, _), s)| (*abi, *s))
                .collect();
            intro
                .iter()
                .zip(&syms)
                .map(|(v, (abi, s))| (*v, *abi, *s))
                .collect()
        };
        let (np, pt) = (zip(false), zip(true));
        let n_np = versions.iter().filter(|(_, p)| !p).count();
        let n_pt = versions.len() - n_np;
        let exp_np = vars.keys().filter(|(_, p)| !p).count();
        let exp_pt = vars.len() - exp_np;
        if n_np != exp_np || n_pt != exp_pt {
            notes.push(format!(
                "{base}: {n_np}+{n_pt} typedef versions vs {exp_np}+{exp_pt} exported variants; matched the first ones in order"
            ));
        }
        let mut points: Vec<i32> = versions.iter().map(|(v, _)| *v).collect();
        points.dedup();
        for flags in FLAGS {
            let mut last: Option<&str> = None;
            for &v in &points {
                // The newest variant introduced at or before v: per-thread
                // lookups of a function that has per-thread variants get
                // only those (below the first one the version is not
                // sufficient), every other lookup the ordinary variants.
                // Checked against a sweep of driver 535.
                let kinds = if flags == 2 && !pt.is_empty() {
                    &pt
                } else {
                    &np
                };
                let Some((_, _, ans)) = kinds.iter().rev().find(|(iv, _, _)| *iv <= v) else {
                    continue;
                };
                let ans = *ans;
                if last != Some(ans) {
                    rows.push(Row {
                        name: base.clone(),
                        flags,
                        from: v,
                        answer: Answer::Symbol(ans.to_string()),
                        origin: "derived".into(),
                    });
                    last = Some(ans);
                }
            }
        }
    }
    rows.sort();
    (rows, notes)
}

/// The answer of `rows` (one name and flags value, sorted) at `version`.
fn answer_at(rows: &[&Row], version: i32) -> String {
    match rows.iter().rev().find(|r| r.from <= version) {
        Some(r) => r.answer.text().to_string(),
        None if rows.is_empty() => "!notfound".into(),
        None => "!version".into(),
    }
}

/// Where `rows` answer differently from a driver's sweep, at the versions
/// that driver knows (up to its own).
pub fn compare(sweep: &Tsv, rows: &[Row]) -> Result<Vec<String>, String> {
    let driver: i32 = sweep
        .directive("driver-version")
        .and_then(|v| v.parse().ok())
        .ok_or("the sweep has no @driver-version line")?;
    let group = |rows: &'_ [Row]| {
        let mut m: BTreeMap<(String, u8), Vec<Row>> = BTreeMap::new();
        for r in rows {
            m.entry((r.name.clone(), r.flags))
                .or_default()
                .push(r.clone());
        }
        m
    };
    let (a, b) = (group(&sweep.rows), group(rows));
    let keys: BTreeSet<&(String, u8)> = a
        .keys()
        .chain(
            b.iter()
                .filter(|(_, v)| v[0].from <= driver)
                .map(|(k, _)| k),
        )
        .collect();
    let mut out = Vec::new();
    for k in keys {
        let (ra, rb): (Vec<&Row>, Vec<&Row>) = (
            a.get(k).map(|v| v.iter().collect()).unwrap_or_default(),
            b.get(k).map(|v| v.iter().collect()).unwrap_or_default(),
        );
        let points: BTreeSet<i32> = ra
            .iter()
            .chain(&rb)
            .map(|r| r.from)
            .filter(|v| *v <= driver)
            .collect();
        for v in points {
            let (x, y) = (answer_at(&ra, v), answer_at(&rb, v));
            if x != y {
                out.push(format!(
                    "{} flags {} at {v}: driver {x}, table {y}",
                    k.0, k.1
                ));
                break;
            }
        }
    }
    Ok(out)
}

/// Merges a sweep into the derived rows: the sweep is authoritative up to
/// its driver's version; above it (for a worker with a newer driver) the
/// derived rows continue it: variants of swept names introduced later, and
/// names the swept driver was too old to know (all their versions above its
/// version). A swept name the driver does not answer although the headers
/// say it should stays unanswered.
pub fn merge(sweep: &Tsv, derived: &[Row]) -> Result<Tsv, String> {
    let driver: i32 = sweep
        .directive("driver-version")
        .and_then(|v| v.parse().ok())
        .ok_or("the sweep has no @driver-version line")?;
    let swept: BTreeSet<&str> = sweep.rows.iter().map(|r| r.name.as_str()).collect();
    let mut by_name: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in derived {
        by_name.entry(&r.name).or_default().push(r);
    }
    let mut out = sweep.clone();
    for r in &mut out.rows {
        r.origin = "sweep".into();
    }
    let mut kept = 0;
    for (name, rows) in by_name {
        if !swept.contains(name) {
            if rows.iter().all(|r| r.from > driver) {
                out.rows.extend(rows.into_iter().cloned());
                kept += 1;
            }
            continue;
        }
        for r in rows.into_iter().filter(|r| r.from > driver) {
            let last = out
                .rows
                .iter()
                .filter(|x| x.name == r.name && x.flags == r.flags)
                .max_by_key(|x| x.from)
                .map(|x| x.answer.clone());
            if last.as_ref() != Some(&r.answer) {
                out.rows.push(r.clone());
            }
        }
    }
    out.rows.sort();
    out.set("provisional", "no".into());
    out.set(
        "source",
        format!(
            "{}; plus {kept} names newer than that driver, derived from the typedef headers",
            sweep.directive("source").unwrap_or("a driver sweep")
        ),
    );
    Ok(out)
}

/// Rust source of `crates/tf-api/src/generated/procaddr.rs`. Every symbol
/// must be one of `names` (our exports).
pub fn emit(banner: &str, t: &Tsv, names: &BTreeSet<&str>) -> Result<String, String> {
    let mut errors = Vec::new();
    let mut entries: BTreeMap<&str, [Vec<&Row>; 3]> = BTreeMap::new();
    for r in &t.rows {
        if let Answer::Symbol(s) = &r.answer {
            if !names.contains(s.as_str()) {
                errors.push(format!("{}: answer `{s}` is not an exported name", r.name));
            }
        }
        entries.entry(&r.name).or_default()[r.flags as usize].push(r);
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    let number = |key: &str, default: u32| -> Result<u32, String> {
        match t.directive(key) {
            Some(v) => v.parse().map_err(|_| format!("bad @{key} `{v}`")),
            None => Ok(default),
        }
    };
    let not_found = number("not-found-result", DEFAULT_NOT_FOUND_RESULT)?;
    let not_found_v1 = number("not-found-result-v1", DEFAULT_NOT_FOUND_RESULT_V1)?;
    let above_invalid = match t.directive("above-driver").unwrap_or(DEFAULT_ABOVE_DRIVER) {
        "answer" => false,
        "invalid-value" => true,
        other => {
            return Err(format!(
                "bad @above-driver `{other}` (answer or invalid-value)"
            ))
        }
    };
    let provisional = t.directive("provisional") != Some("no");
    let mut s = String::from(banner);
    s.push_str(
        "//! The `cuGetProcAddress` table, from `codegen/procaddr.tsv` (see\n\
         //! `xtask/src/codegen/procaddr.rs`). Looked up with `tf_api::procaddr`.\n\n\
         use crate::cuda_fn;\nuse crate::procaddr::{Answer, ProcEntry};\n\n",
    );
    let _ = writeln!(
        s,
        "/// Where the table comes from.\npub const SOURCE: &str = {:?};",
        t.directive("source").unwrap_or("unknown")
    );
    let _ = writeln!(
        s,
        "/// True until the table comes from a sweep of a real driver.\npub const PROVISIONAL: bool = {provisional};"
    );
    let _ = writeln!(
        s,
        "/// What `cuGetProcAddress_v2` returns with VERSION_NOT_SUFFICIENT and SYMBOL_NOT_FOUND.\npub const NOT_FOUND_RESULT: u32 = {not_found};"
    );
    let _ = writeln!(
        s,
        "/// What `cuGetProcAddress` (no status argument) returns then.\npub const NOT_FOUND_RESULT_V1: u32 = {not_found_v1};"
    );
    let _ = writeln!(
        s,
        "/// A version above the driver's: `CUDA_ERROR_INVALID_VALUE` (true) or the\n/// answer at the driver's own version (false).\npub const ABOVE_DRIVER_IS_INVALID: bool = {above_invalid};\n"
    );
    let _ = writeln!(
        s,
        "/// Sorted by name (byte order); per flags value 0, 1, 2 the answers by first version.\npub static PROC_TABLE: [ProcEntry; {}] = [",
        entries.len()
    );
    for (name, by_flags) in &entries {
        let lists: Vec<String> = by_flags
            .iter()
            .map(|rows| {
                let items: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        let a = match &r.answer {
                            Answer::Symbol(sym) => format!("Answer::Found(cuda_fn::{sym})"),
                            Answer::VersionNotSufficient => "Answer::VersionNotSufficient".into(),
                            Answer::NotFound => "Answer::SymbolNotFound".into(),
                        };
                        format!("({}, {a})", r.from)
                    })
                    .collect();
                format!("&[{}]", items.join(", "))
            })
            .collect();
        let _ = writeln!(
            s,
            "    ProcEntry {{ name: {name:?}, by_flags: [{}] }},",
            lists.join(", ")
        );
    }
    s.push_str("];\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPEDEFS: &str = "\
typedef CUresult (CUDAAPI *PFN_cuMemcpyHtoD_v3020)(int);
typedef CUresult (CUDAAPI *PFN_cuMemcpyHtoD_v7000_ptds)(int);
#define PFN_cuMemcpyHtoD __API_TYPEDEF_PTDS(PFN_cuMemcpyHtoD, 3020, 7000)
    typedef CUresult (CUDAAPI *PFN_cuMemcpyHtoD_v2000)(int);
typedef CUresult (CUDAAPI *PFN_cuInit_v2000)(unsigned int Flags);
typedef CUresult (CUDAAPI *PFN_cuCtxGetDevice_v2000)(int *d);
typedef CUresult (CUDAAPI *PFN_cuCtxGetDevice_v13000)(int *d, void *c);
typedef CUresult (CUDAAPI *PFN_cuStreamGetCaptureInfo_v10010)(void);
typedef CUresult (CUDAAPI *PFN_cuStreamGetCaptureInfo_v10010_ptsz)(void);
typedef CUresult (CUDAAPI *PFN_cuStreamGetCaptureInfo_v11030)(void);
typedef CUresult (CUDAAPI *PFN_cuStreamGetCaptureInfo_v11030_ptsz)(void);
typedef CUresult (CUDAAPI *PFN_cuNewThing_v13040)(void);
";
    const NAMES: &[&str] = &[
        "cuCtxGetDevice",
        "cuCtxGetDevice_v2",
        "cuInit",
        "cuMemcpyHtoD",
        "cuMemcpyHtoD_v2",
        "cuMemcpyHtoD_v2_ptds",
        "cuNewThing",
        "cuStreamGetCaptureInfo",
        "cuStreamGetCaptureInfo_ptsz",
        "cuStreamGetCaptureInfo_v2",
        "cuStreamGetCaptureInfo_v2_ptsz",
        "cudbgApiInit",
    ];

    fn answers(rows: &[Row], name: &str, flags: u8) -> Vec<(i32, String)> {
        rows.iter()
            .filter(|r| r.name == name && r.flags == flags)
            .map(|r| (r.from, r.answer.text().to_string()))
            .collect()
    }

    #[test]
    fn split_symbols() {
        assert_eq!(split_symbol("cuMemAlloc"), ("cuMemAlloc", 1, None));
        assert_eq!(split_symbol("cuMemAlloc_v2"), ("cuMemAlloc", 2, None));
        assert_eq!(
            split_symbol("cuMemcpyHtoD_v2_ptds"),
            ("cuMemcpyHtoD", 2, Some("_ptds"))
        );
        assert_eq!(
            split_symbol("cuLaunchKernel_ptsz"),
            ("cuLaunchKernel", 1, Some("_ptsz"))
        );
        assert_eq!(split_symbol("cuGLInit_vX"), ("cuGLInit_vX", 1, None));
    }

    #[test]
    fn derived_rules() {
        let (rows, notes) = derive(&[TYPEDEFS], NAMES);
        assert!(notes.is_empty(), "{notes:?}");
        let s = |v: &[(i32, &str)]| -> Vec<(i32, String)> {
            v.iter().map(|(a, b)| (*a, b.to_string())).collect()
        };
        assert_eq!(answers(&rows, "cuInit", 0), s(&[(2000, "cuInit")]));
        let legacy = s(&[(2000, "cuMemcpyHtoD"), (3020, "cuMemcpyHtoD_v2")]);
        assert_eq!(answers(&rows, "cuMemcpyHtoD", 0), legacy);
        assert_eq!(answers(&rows, "cuMemcpyHtoD", 1), legacy);
        // Per-thread: only the per-thread variants, from their version on.
        assert_eq!(
            answers(&rows, "cuMemcpyHtoD", 2),
            s(&[(7000, "cuMemcpyHtoD_v2_ptds")])
        );
        assert_eq!(
            answers(&rows, "cuStreamGetCaptureInfo", 2),
            s(&[
                (10010, "cuStreamGetCaptureInfo_ptsz"),
                (11030, "cuStreamGetCaptureInfo_v2_ptsz")
            ])
        );
        assert_eq!(
            answers(&rows, "cuCtxGetDevice", 0),
            s(&[(2000, "cuCtxGetDevice"), (13000, "cuCtxGetDevice_v2")])
        );
        assert!(answers(&rows, "cudbgApiInit", 0).is_empty());
    }

    #[test]
    fn tsv_round_trip_and_merge() {
        let (rows, _) = derive(&[TYPEDEFS], NAMES);
        let mut t = Tsv {
            directives: vec![("provisional".into(), "yes".into())],
            rows: rows.clone(),
        };
        t.rows.sort();
        let again = parse_tsv(&format_tsv(&t)).unwrap();
        assert_eq!(again, t);

        let sweep = parse_tsv(
            "@driver-version\t13000\n@source\tsweep of 580\n\
             cuInit\t0\t2000\tcuInit\tsweep\n\
             cuInit\t0\t9000\t!notfound\tsweep\n\
             cuCtxGetDevice\t0\t2000\tcuCtxGetDevice\tsweep\n",
        )
        .unwrap();
        let m = merge(&sweep, &rows).unwrap();
        assert_eq!(m.directive("provisional"), Some("no"));
        // The sweep replaces what it answered, drops what the driver does not
        // know although it should, keeps what is newer than the driver.
        assert_eq!(
            answers(&m.rows, "cuInit", 0),
            vec![(2000, "cuInit".into()), (9000, "!notfound".into())]
        );
        assert!(answers(&m.rows, "cuMemcpyHtoD", 0).is_empty());
        assert_eq!(
            answers(&m.rows, "cuNewThing", 0),
            vec![(13040, "cuNewThing".into())]
        );
        // A variant newer than the swept driver continues its answers.
        let (rows, _) = derive(
            &["typedef int (*PFN_cuCtxGetDevice_v2000)(void);\ntypedef int (*PFN_cuCtxGetDevice_v13010)(void);\n"],
            &["cuCtxGetDevice", "cuCtxGetDevice_v2"],
        );
        let m = merge(&sweep, &rows).unwrap();
        assert_eq!(
            answers(&m.rows, "cuCtxGetDevice", 0),
            vec![
                (2000, "cuCtxGetDevice".into()),
                (13010, "cuCtxGetDevice_v2".into())
            ]
        );
        assert!(merge(&Tsv::default(), &rows).is_err());
    }

    #[test]
    fn tsv_rejects() {
        assert!(parse_tsv("cuInit\t0\t2000\tcuInit\n").is_err());
        assert!(parse_tsv("cuInit\t3\t2000\tcuInit\tx\n").is_err());
        assert!(parse_tsv("cuInit\t0\tx\tcuInit\tx\n").is_err());
        assert!(parse_tsv("cuInit\t0\t2000\t?\tx\n").is_err());
        assert!(parse_tsv("cuInit\t0\t2000\tcuInit\tx\ncuInit\t0\t2000\tcuInit\tx\n").is_err());
    }

    #[test]
    fn emit_checks_symbols() {
        let t = parse_tsv("cuInit\t0\t2000\tcuInit\tx\ncuInit\t2\t2000\t!version\tx\n").unwrap();
        let names: BTreeSet<&str> = ["cuInit"].into_iter().collect();
        let src = emit("// b\n", &t, &names).unwrap();
        assert!(src.contains("Answer::Found(cuda_fn::cuInit)"));
        assert!(src.contains("PROVISIONAL: bool = true"));
        assert!(src.contains("NOT_FOUND_RESULT: u32 = 0"));
        assert!(src.contains("NOT_FOUND_RESULT_V1: u32 = 500"));
        assert!(src.contains("ABOVE_DRIVER_IS_INVALID: bool = false"));
        assert!(emit("", &t, &BTreeSet::new()).is_err());
    }
}
