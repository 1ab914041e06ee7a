//! The API model: header prototypes merged with the reference export lists,
//! and the `codegen/remoted.txt` annotations validated against it.

use super::parse::{FnDecl, ParamDecl};
use std::collections::{BTreeMap, BTreeSet};

/// Which library an entry point belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Cuda,
    Nvml,
}

impl Api {
    /// Whether `name` is an entry point of this API (`cuX...` / `nvmlX...`).
    /// Requiring an upper-case letter after the prefix keeps libc's `cuserid`
    /// and friends out of the CUDA table.
    pub fn owns(self, name: &str) -> bool {
        let rest = match self {
            Api::Cuda => name.strip_prefix("cu"),
            Api::Nvml => name.strip_prefix("nvml"),
        };
        rest.and_then(|r| r.chars().next())
            .is_some_and(|c| c.is_ascii_uppercase())
    }

    /// Whether an export-list entry belongs to this API: any `cu*` / `nvml*`
    /// symbol, including the debugger interface (`cudbgApiInit`, ...).
    pub fn lists(self, name: &str) -> bool {
        match self {
            Api::Cuda => name.starts_with("cu"),
            Api::Nvml => name.starts_with("nvml"),
        }
    }

    /// Prefix of the generated items: `CUDA_COUNT`, `cuda_fn`, `cuda_index`.
    pub fn upper(self) -> &'static str {
        match self {
            Api::Cuda => "CUDA",
            Api::Nvml => "NVML",
        }
    }

    pub fn lower(self) -> &'static str {
        match self {
            Api::Cuda => "cuda",
            Api::Nvml => "nvml",
        }
    }

    /// The variant name of `tf_api::Api`.
    pub fn variant(self) -> &'static str {
        match self {
            Api::Cuda => "Cuda",
            Api::Nvml => "Nvml",
        }
    }
}

/// One exported entry point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// Empty when the name is only known from an export list.
    pub ret: String,
    pub params: Vec<ParamDecl>,
    pub in_header: bool,
}

/// All entry points of one API, sorted by name (byte order, as `str::cmp`,
/// so the generated tables can be binary-searched).
#[derive(Debug)]
pub struct Table {
    pub api: Api,
    pub functions: Vec<Function>,
}

impl Table {
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.iter().map(|f| f.name.as_str())
    }

    pub fn find(&self, name: &str) -> Option<&Function> {
        self.functions
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.functions[i])
    }

    /// FNV-1a 64 over every name followed by a NUL byte, in table order.
    /// Must match `tf_api::api_hash`.
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for name in self.names() {
            for b in name.bytes().chain([0]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }
}

fn type_signature(f: &FnDecl) -> (String, Vec<&str>) {
    (
        f.ret.clone(),
        f.params.iter().map(|p| p.ty.as_str()).collect(),
    )
}

/// Merges header prototypes with reference export lists (`(label, text)`;
/// one symbol per line, `#` comments allowed).
pub fn merge(
    api: Api,
    header: Vec<FnDecl>,
    references: &[(String, String)],
) -> Result<Table, String> {
    let mut by_name: BTreeMap<String, Function> = BTreeMap::new();
    let mut first_decl: BTreeMap<String, FnDecl> = BTreeMap::new();
    for decl in header {
        if !api.owns(&decl.name) {
            continue;
        }
        if let Some(prev) = first_decl.get(&decl.name) {
            // Headers repeat some prototypes; harmless unless they disagree.
            if type_signature(prev) != type_signature(&decl) {
                return Err(format!(
                    "{} is declared twice with different types: {:?} vs {:?}",
                    decl.name,
                    type_signature(prev),
                    type_signature(&decl)
                ));
            }
            continue;
        }
        by_name.insert(
            decl.name.clone(),
            Function {
                name: decl.name.clone(),
                ret: decl.ret.clone(),
                params: decl.params.clone(),
                in_header: true,
            },
        );
        first_decl.insert(decl.name.clone(), decl);
    }
    let mut seen_in_lists = BTreeSet::new();
    for (label, text) in references {
        for (lineno, line) in text.lines().enumerate() {
            let name = line.trim();
            if name.is_empty() || name.starts_with('#') {
                continue;
            }
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "{label}:{}: `{name}` is not a symbol name",
                    lineno + 1
                ));
            }
            if !api.lists(name) {
                return Err(format!(
                    "{label}:{}: `{name}` is not a {} symbol",
                    lineno + 1,
                    api.lower()
                ));
            }
            seen_in_lists.insert(name.to_string());
            by_name.entry(name.to_string()).or_insert_with(|| Function {
                name: name.to_string(),
                ret: String::new(),
                params: Vec::new(),
                in_header: false,
            });
        }
    }
    if by_name.is_empty() {
        return Err(format!("no {} functions found", api.lower()));
    }
    Ok(Table {
        api,
        functions: by_name.into_values().collect(),
    })
}

/// How a remoted call is executed (mirrors `tf_api::CallClass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Local,
    Enqueue,
    Sync,
}

impl Class {
    pub fn variant(self) -> &'static str {
        match self {
            Class::Local => "Local",
            Class::Enqueue => "Enqueue",
            Class::Sync => "Sync",
        }
    }
}

/// One line of `codegen/remoted.txt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remoted {
    pub name: String,
    pub api: Api,
    pub class: Class,
    pub opcode: u32,
}

/// Parses and validates the annotation file. Format, one entry per line:
///
/// ```text
/// # comment
/// <function-name> <local|enqueue|sync> <opcode>
/// retired <opcode>        # an opcode that was used once and must never return
/// ```
///
/// Every problem is reported (one message per line), not just the first.
/// The result is sorted by opcode.
pub fn parse_remoted(text: &str, cuda: &Table, nvml: &Table) -> Result<Vec<Remoted>, Vec<String>> {
    let mut errors = Vec::new();
    let mut entries: Vec<Remoted> = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut opcodes: BTreeMap<u32, (usize, String)> = BTreeMap::new();
    let mut claim = |op: u32, line: usize, what: String, errors: &mut Vec<String>| {
        if let Some((prev, prev_what)) = opcodes.get(&op) {
            errors.push(format!(
                "line {line}: opcode {op} already used by {prev_what} on line {prev}"
            ));
        } else {
            opcodes.insert(op, (line, what));
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let fields: Vec<&str> = content.split_whitespace().collect();
        if let ["retired", op] = fields[..] {
            match op.parse::<u32>() {
                Ok(op) => claim(op, line, "a retired entry".into(), &mut errors),
                Err(_) => errors.push(format!("line {line}: bad opcode `{op}`")),
            }
            continue;
        }
        let [name, class, op] = fields[..] else {
            errors.push(format!(
                "line {line}: expected `<name> <local|enqueue|sync> <opcode>`, got `{content}`"
            ));
            continue;
        };
        let class = match class {
            "local" => Class::Local,
            "enqueue" => Class::Enqueue,
            "sync" => Class::Sync,
            other => {
                errors.push(format!(
                    "line {line}: unknown class `{other}` (local, enqueue or sync)"
                ));
                continue;
            }
        };
        let Ok(opcode) = op.parse::<u32>() else {
            errors.push(format!("line {line}: bad opcode `{op}`"));
            continue;
        };
        let api = if Api::Cuda.owns(name) {
            Api::Cuda
        } else if Api::Nvml.owns(name) {
            Api::Nvml
        } else {
            errors.push(format!(
                "line {line}: `{name}` is neither a cu* nor an nvml* name"
            ));
            continue;
        };
        let table = if api == Api::Cuda { cuda } else { nvml };
        match table.find(name) {
            None => {
                errors.push(format!(
                    "line {line}: unknown function `{name}` (not in the headers or export lists)"
                ));
                continue;
            }
            Some(f) if !f.in_header => {
                // Without a prototype there is nothing to marshal.
                errors.push(format!(
                    "line {line}: `{name}` has no prototype in the headers and cannot be remoted"
                ));
                continue;
            }
            Some(_) => {}
        }
        if let Some(prev) = names.insert(name.to_string(), line) {
            errors.push(format!(
                "line {line}: `{name}` already listed on line {prev}"
            ));
            continue;
        }
        claim(opcode, line, format!("`{name}`"), &mut errors);
        entries.push(Remoted {
            name: name.to_string(),
            api,
            class,
            opcode,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    entries.sort_by_key(|e| e.opcode);
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(name: &str, ret: &str, params: &[(&str, &str)]) -> FnDecl {
        FnDecl {
            name: name.into(),
            ret: ret.into(),
            params: params
                .iter()
                .map(|(t, n)| ParamDecl {
                    ty: (*t).into(),
                    name: (*n).into(),
                })
                .collect(),
        }
    }

    fn tables() -> (Table, Table) {
        let cuda = merge(
            Api::Cuda,
            vec![
                decl("cuInit", "CUresult", &[("unsigned int", "Flags")]),
                decl("cuB", "CUresult", &[]),
            ],
            &[("list".into(), "cuInit\ncuGLInit\n".into())],
        )
        .unwrap();
        let nvml = merge(
            Api::Nvml,
            vec![decl("nvmlInit_v2", "nvmlReturn_t", &[])],
            &[],
        )
        .unwrap();
        (cuda, nvml)
    }

    #[test]
    fn merge_sorts_and_marks_headerless() {
        let (cuda, _) = tables();
        let names: Vec<_> = cuda.names().collect();
        assert_eq!(names, ["cuB", "cuGLInit", "cuInit"]);
        assert!(!cuda.find("cuGLInit").unwrap().in_header);
        assert!(cuda.find("cuInit").unwrap().in_header);
    }

    #[test]
    fn merge_filters_and_checks_duplicates() {
        let t = merge(
            Api::Cuda,
            vec![decl("cuserid", "char *", &[]), decl("cuX", "CUresult", &[])],
            &[],
        )
        .unwrap();
        assert_eq!(t.names().collect::<Vec<_>>(), ["cuX"]);
        let same = vec![
            decl("cuX", "CUresult", &[("int", "a")]),
            decl("cuX", "CUresult", &[("int", "b")]),
        ];
        assert!(merge(Api::Cuda, same, &[]).is_ok());
        let differ = vec![
            decl("cuX", "CUresult", &[("int", "a")]),
            decl("cuX", "CUresult", &[("long", "a")]),
        ];
        assert!(merge(Api::Cuda, differ, &[]).is_err());
        assert!(merge(Api::Cuda, vec![], &[("l".into(), "nvmlInit\n".into())]).is_err());
        let t = merge(Api::Cuda, vec![], &[("l".into(), "cudbgApiInit\n".into())]).unwrap();
        assert!(!t.functions[0].in_header);
    }

    #[test]
    fn hash_is_fnv1a_over_nul_terminated_names() {
        let t = Table {
            api: Api::Cuda,
            functions: vec![],
        };
        assert_eq!(t.hash(), 0xcbf2_9ce4_8422_2325);
        let (a, _) = tables();
        let (b, _) = tables();
        assert_eq!(a.hash(), b.hash());
    }

    #[test]
    fn remoted_valid() {
        let (cuda, nvml) = tables();
        let r = parse_remoted(
            "# c\nnvmlInit_v2 sync 3000\ncuInit sync 1000 # x\nretired 1001\n",
            &cuda,
            &nvml,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].name.as_str(), r[0].api, r[0].class, r[0].opcode),
            ("cuInit", Api::Cuda, Class::Sync, 1000)
        );
        assert_eq!(r[1].api, Api::Nvml);
    }

    #[test]
    fn remoted_rejects() {
        let (cuda, nvml) = tables();
        let err = |s: &str| parse_remoted(s, &cuda, &nvml).unwrap_err();
        assert!(err("cuInit sync 1\ncuInit local 2\n")[0].contains("already listed"));
        assert!(err("cuInit sync 1\ncuB local 1\n")[0].contains("already used"));
        assert!(err("retired 7\ncuB local 7\n")[0].contains("retired"));
        assert!(err("cuNope sync 1\n")[0].contains("unknown function"));
        assert!(err("cuGLInit sync 1\n")[0].contains("no prototype"));
        assert!(err("cuInit fast 1\n")[0].contains("unknown class"));
        assert!(err("cuInit sync x\n")[0].contains("bad opcode"));
        assert!(err("cuInit sync\n")[0].contains("expected"));
        assert!(err("printf sync 1\n")[0].contains("neither"));
        assert_eq!(err("cuNope sync 1\ncuNope2 sync 2\n").len(), 2);
    }
}
