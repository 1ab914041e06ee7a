//! `cargo xtask codegen [--check]`: regenerates the API tables, the remoting
//! annotations, the teleport stubs and the client libraries' export tables
//! from the NVIDIA headers (fetched by `scripts/fetch-headers.sh`), the
//! reference export lists and `codegen/remoted.txt`; and the wire messages
//! and the worker's dispatch from `codegen/messages.txt` (see `msgs`).

mod emit;
mod model;
mod msgs;
mod parse;
mod procaddr;

use crate::{sha256, Fail};
use model::{Api, Table};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CUDA_REFS: [&str; 2] = [
    "codegen/reference/libcuda-550.163.01.exports.txt",
    "codegen/reference/libcuda-580.159.04.exports.txt",
];
const NVML_REFS: [&str; 2] = [
    "codegen/reference/libnvidia-ml-550.163.01.exports.txt",
    "codegen/reference/libnvidia-ml-580.159.04.exports.txt",
];
const REMOTED: &str = "codegen/remoted.txt";
/// The wire messages and the worker's dispatch (see `msgs`).
const MESSAGES: &str = "codegen/messages.txt";
/// The cuGetProcAddress table data (see `procaddr`).
const PROCADDR: &str = "codegen/procaddr.tsv";
/// Headers whose `PFN_<name>_v<version>` typedefs give the provisional table.
const TYPEDEF_HEADERS: [&str; 5] = [
    "cudaTypedefs.h",
    "cudaGLTypedefs.h",
    "cudaEGLTypedefs.h",
    "cudaVDPAUTypedefs.h",
    "cudaProfilerTypedefs.h",
];
const INCLUDE: &str = ".headers/include";

/// A text input with its repository-relative path and digest.
struct Input {
    path: String,
    text: String,
}

impl Input {
    fn read(root: &Path, path: &str) -> Result<Self, Fail> {
        let text = std::fs::read_to_string(root.join(path))
            .map_err(|e| Fail(format!("cannot read {path}: {e}")))?;
        Ok(Self {
            path: path.to_string(),
            text,
        })
    }

    fn stamp(&self) -> (String, String) {
        (self.path.clone(), sha256::hex(self.text.as_bytes()))
    }
}

/// Runs the C preprocessor over `header` with `defines`, returning its output.
fn preprocess(root: &Path, header: &str, defines: &[&str]) -> Result<String, Fail> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let include = root.join(INCLUDE);
    let mut cmd = Command::new(&cc);
    cmd.arg("-E")
        .arg("-P")
        .args(defines.iter().map(|d| format!("-D{d}")));
    cmd.arg(format!("-I{}", include.display()))
        .arg(include.join(header));
    let out = cmd
        .output()
        .map_err(|e| Fail(format!("cannot run the C compiler `{cc}` (set CC): {e}")))?;
    if !out.status.success() {
        return Err(Fail(format!(
            "`{cc} -E` on {header} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8(out.stdout).map_err(|_| Fail(format!("preprocessed {header} is not UTF-8")))
}

fn build_table(
    root: &Path,
    api: Api,
    header: &Input,
    defines: &[&str],
    refs: &[Input],
) -> Result<Table, Fail> {
    let file = Path::new(&header.path)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    let src = preprocess(root, file, defines)?;
    let decls = parse::parse_functions(&src, |n| api.owns(n))
        .map_err(|e| Fail(format!("{}: {e}", header.path)))?;
    let refs: Vec<(String, String)> = refs
        .iter()
        .map(|r| (r.path.clone(), r.text.clone()))
        .collect();
    model::merge(api, decls, &refs).map_err(Fail)
}

/// Formats Rust source with the toolchain's rustfmt, so generated files are
/// stable under `cargo fmt` and `--check` compares like with like.
fn rustfmt(root: &Path, src: &str) -> Result<String, Fail> {
    let rustfmt = std::env::var("RUSTFMT").unwrap_or_else(|_| "rustfmt".to_string());
    let mut child = Command::new(&rustfmt)
        .args(["--edition", "2021", "--emit", "stdout"])
        .current_dir(root) // so that a rustfmt.toml of the workspace applies
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Fail(format!(
                "cannot run `{rustfmt}` (rustup component add rustfmt): {e}"
            ))
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = src.to_string();
    // Write from a thread: rustfmt may fill its stdout pipe before reading all
    // of a large input.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| Fail(format!("rustfmt: {e}")))?;
    writer
        .join()
        .expect("writer thread")
        .map_err(|e| Fail(format!("rustfmt stdin: {e}")))?;
    if !out.status.success() {
        return Err(Fail(format!(
            "rustfmt rejected generated code:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8(out.stdout).map_err(|_| Fail("rustfmt output is not UTF-8".into()))
}

/// Entry point of `cargo xtask codegen [--check]`.
pub fn run(root: &Path, args: &[String]) -> Result<(), Fail> {
    let check = match args {
        [] => false,
        [a] if a == "--check" => true,
        _ => return Err(Fail("usage: cargo xtask codegen [--check]".into())),
    };
    if !root.join(INCLUDE).join("cuda.h").is_file() || !root.join(INCLUDE).join("nvml.h").is_file()
    {
        return Err(Fail(format!(
            "{INCLUDE}/cuda.h or nvml.h missing: run scripts/fetch-headers.sh first"
        )));
    }
    let cuda_h = Input::read(root, &format!("{INCLUDE}/cuda.h"))?;
    let nvml_h = Input::read(root, &format!("{INCLUDE}/nvml.h"))?;
    let cuda_refs = CUDA_REFS
        .iter()
        .map(|p| Input::read(root, p))
        .collect::<Result<Vec<_>, _>>()?;
    let nvml_refs = NVML_REFS
        .iter()
        .map(|p| Input::read(root, p))
        .collect::<Result<Vec<_>, _>>()?;
    let remoted_txt = Input::read(root, REMOTED)?;
    let messages_txt = Input::read(root, MESSAGES)?;
    let procaddr_tsv = Input::read(root, PROCADDR).map_err(|Fail(e)| {
        Fail(format!(
            "{e}: run `cargo xtask procaddr derive` to create it"
        ))
    })?;

    // __CUDA_API_VERSION_INTERNAL keeps cuda.h from #defining the legacy names
    // to their _v2/_ptds successors, so every ABI name gets its own prototype.
    // NVML_NO_UNVERSIONED_FUNC_DEFS does the same for nvml.h.
    let cuda = build_table(
        root,
        Api::Cuda,
        &cuda_h,
        &["__CUDA_API_VERSION_INTERNAL"],
        &cuda_refs,
    )?;
    let nvml = build_table(
        root,
        Api::Nvml,
        &nvml_h,
        &["NVML_NO_UNVERSIONED_FUNC_DEFS"],
        &nvml_refs,
    )?;
    let remoted = model::parse_remoted(&remoted_txt.text, &cuda, &nvml)
        .map_err(|errs| Fail(format!("{REMOTED}:\n  {}", errs.join("\n  "))))?;

    let stamps =
        |inputs: &[&Input]| emit::banner(&inputs.iter().map(|i| i.stamp()).collect::<Vec<_>>());
    let cuda_inputs: Vec<&Input> = std::iter::once(&cuda_h).chain(&cuda_refs).collect();
    let nvml_inputs: Vec<&Input> = std::iter::once(&nvml_h).chain(&nvml_refs).collect();
    let both: Vec<&Input> = cuda_inputs.iter().chain(&nvml_inputs).copied().collect();

    let mut outputs: Vec<(String, String)> = vec![
        (
            "crates/tf-api/src/generated/cuda.rs",
            emit::api_table(&stamps(&cuda_inputs), &cuda),
        ),
        (
            "crates/tf-api/src/generated/nvml.rs",
            emit::api_table(&stamps(&nvml_inputs), &nvml),
        ),
        (
            "crates/tf-api/src/generated/remoted.rs",
            emit::remoted(&stamps(&[&remoted_txt]), &remoted),
        ),
        (
            "crates/teleport/src/generated/stubs.rs",
            emit::stubs(&stamps(&both), &cuda, &nvml),
        ),
        (
            "crates/tf-libcuda/src/generated/exports.rs",
            emit::exports(&stamps(&cuda_inputs), &cuda),
        ),
        (
            "crates/tf-libnvml/src/generated/exports.rs",
            emit::exports(&stamps(&nvml_inputs), &nvml),
        ),
        (
            "crates/tf-api/src/generated/procaddr.rs",
            procaddr_source(&stamps(&[&procaddr_tsv]), &procaddr_tsv, &cuda)?,
        ),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_string(), s))
    .collect();
    let remoted_names = remoted.iter().map(|r| r.name.clone()).collect();
    let messages = msgs::generate(
        &stamps(&[&messages_txt, &remoted_txt]),
        &messages_txt.text,
        &remoted_names,
    )
    .map_err(|errs| Fail(format!("{MESSAGES}:\n  {}", errs.join("\n  "))))?;
    outputs.extend(messages);

    let mut stale = Vec::new();
    for (path, src) in &outputs {
        let formatted = rustfmt(root, src)?;
        let target: PathBuf = root.join(path);
        let current = std::fs::read_to_string(&target).ok();
        if current.as_deref() == Some(formatted.as_str()) {
            continue;
        }
        if check {
            stale.push(path);
        } else {
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Fail(format!("cannot create {}: {e}", dir.display())))?;
            }
            std::fs::write(&target, formatted)
                .map_err(|e| Fail(format!("cannot write {path}: {e}")))?;
            eprintln!("codegen: wrote {path}");
        }
    }
    eprintln!(
        "codegen: {} CUDA names ({} with prototypes), {} NVML names ({} with prototypes), {} remoted",
        cuda.functions.len(),
        cuda.functions.iter().filter(|f| f.in_header).count(),
        nvml.functions.len(),
        nvml.functions.iter().filter(|f| f.in_header).count(),
        remoted.len()
    );
    if !stale.is_empty() {
        for path in &stale {
            eprintln!("codegen --check: {path} is stale");
        }
        return Err(Fail(
            "generated files are out of date: run `cargo xtask codegen`".into(),
        ));
    }
    Ok(())
}

/// The generated cuGetProcAddress table from `codegen/procaddr.tsv`.
fn procaddr_source(banner: &str, tsv: &Input, cuda: &Table) -> Result<String, Fail> {
    let t = procaddr::parse_tsv(&tsv.text).map_err(|e| Fail(format!("{PROCADDR}: {e}")))?;
    let names = cuda.names().collect();
    procaddr::emit(banner, &t, &names).map_err(|e| Fail(format!("{PROCADDR}:\n{e}")))
}

/// `cargo xtask procaddr derive | import SWEEP.tsv`: (re)writes
/// `codegen/procaddr.tsv`, from the typedef headers (provisional) or from a
/// sweep of a real driver (`scripts/gpu/20-procaddr.sh` produces it). Run
/// `cargo xtask codegen` afterwards.
pub fn procaddr_task(root: &Path, args: &[String]) -> Result<(), Fail> {
    const USAGE: &str = "usage: cargo xtask procaddr derive | import SWEEP.tsv";
    let cuda_h = Input::read(root, &format!("{INCLUDE}/cuda.h"))
        .map_err(|Fail(e)| Fail(format!("{e}: run scripts/fetch-headers.sh first")))?;
    let cuda_refs = CUDA_REFS
        .iter()
        .map(|p| Input::read(root, p))
        .collect::<Result<Vec<_>, _>>()?;
    let cuda = build_table(
        root,
        Api::Cuda,
        &cuda_h,
        &["__CUDA_API_VERSION_INTERNAL"],
        &cuda_refs,
    )?;
    let typedefs = TYPEDEF_HEADERS
        .iter()
        .map(|h| Input::read(root, &format!("{INCLUDE}/{h}")))
        .collect::<Result<Vec<_>, _>>()?;
    let texts: Vec<&str> = typedefs.iter().map(|i| i.text.as_str()).collect();
    let names: Vec<&str> = cuda.names().collect();
    let (rows, notes) = procaddr::derive(&texts, &names);
    for n in &notes {
        eprintln!("procaddr: note: {n}");
    }
    let version = cuda_h
        .text
        .lines()
        .find_map(|l| l.trim().strip_prefix("#define CUDA_VERSION "))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    // Sweeps of real drivers on record check the derivation's rules.
    let mut checked = Vec::new();
    let reference = root.join("codegen/reference");
    let mut sweeps: Vec<_> = std::fs::read_dir(&reference)
        .map_err(|e| Fail(format!("cannot list {}: {e}", reference.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("procaddr-sweep-") && n.ends_with(".tsv"))
        })
        .collect();
    sweeps.sort();
    for path in &sweeps {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| Fail(format!("{shown}: {e}")))?;
        let sweep = procaddr::parse_tsv(&text).map_err(|e| Fail(format!("{shown}: {e}")))?;
        let diffs = procaddr::compare(&sweep, &rows).map_err(|e| Fail(format!("{shown}: {e}")))?;
        if matches!(args, [a] if a == "derive") && !diffs.is_empty() {
            return Err(Fail(format!(
                "the derived table disagrees with {shown}:\n  {}",
                diffs.join("\n  ")
            )));
        }
        for d in &diffs {
            eprintln!("procaddr: the derivation differs from {shown}: {d}");
        }
        checked.push(
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string(),
        );
    }
    let out = match args {
        [a] if a == "derive" => procaddr::Tsv {
            directives: vec![
                (
                    "source".into(),
                    format!(
                        "provisional: derived from the PFN typedefs of the CUDA {version} headers; agrees with {}",
                        if checked.is_empty() { "no driver sweep yet".to_string() } else { checked.join(", ") }
                    ),
                ),
                ("provisional".into(), "yes".into()),
                ("driver-version".into(), version),
                (
                    "not-found-result".into(),
                    procaddr::DEFAULT_NOT_FOUND_RESULT.to_string(),
                ),
                (
                    "not-found-result-v1".into(),
                    procaddr::DEFAULT_NOT_FOUND_RESULT_V1.to_string(),
                ),
                ("above-driver".into(), procaddr::DEFAULT_ABOVE_DRIVER.into()),
            ],
            rows,
        },
        [a, file] if a == "import" => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Fail(format!("cannot read {file}: {e}")))?;
            let sweep = procaddr::parse_tsv(&text).map_err(|e| Fail(format!("{file}: {e}")))?;
            procaddr::merge(&sweep, &rows).map_err(|e| Fail(format!("{file}: {e}")))?
        }
        _ => return Err(Fail(USAGE.into())),
    };
    let names_set = cuda.names().collect();
    procaddr::emit("", &out, &names_set).map_err(|e| Fail(format!("the new table:\n{e}")))?;
    std::fs::write(root.join(PROCADDR), procaddr::format_tsv(&out))
        .map_err(|e| Fail(format!("cannot write {PROCADDR}: {e}")))?;
    eprintln!(
        "procaddr: wrote {PROCADDR} ({} rows); now run `cargo xtask codegen`",
        out.rows.len()
    );
    Ok(())
}
