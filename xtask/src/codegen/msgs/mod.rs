//! The wire messages and the worker's dispatch, from `codegen/messages.txt`
//! (its header describes the format).

mod calls;
mod exprs;
mod model;
mod parse;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

/// Where the protocol modules go; `<module>.rs` each.
const PROTOCOL_DIR: &str = "crates/tf-protocol/src/generated";
/// The worker's traits and `route`.
pub const CALLS: &str = "crates/tf-worker-core/src/generated/calls.rs";

/// Parses and validates `text` against the remoted opcode names; returns
/// `(path, source)` for every generated file.
pub fn generate(
    banner: &str,
    text: &str,
    remoted: &BTreeSet<String>,
) -> Result<Vec<(String, String)>, Vec<String>> {
    let spec = parse::parse(text)?;
    model::check(&spec, remoted)?;
    let mut out: Vec<(String, String)> = spec
        .modules
        .iter()
        .map(|m| {
            (
                format!("{PROTOCOL_DIR}/{m}.rs"),
                wire::module(banner, &spec, m),
            )
        })
        .collect();
    out.push((CALLS.to_string(), calls::calls(banner, &spec)));
    Ok(out)
}
