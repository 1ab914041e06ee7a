//! `crates/tf-worker-core/src/generated/calls.rs`: one trait per request
//! domain (a method per variant, taking its fields) and `route`, which
//! hands a decoded request to its method.

use super::model::{Enum, Payload, Spec, Ty};
use std::fmt::Write as _;

/// The type as the worker names it (`tf_protocol::exec_msgs::Load<'_>`).
fn ty(spec: &Spec, t: &Ty) -> String {
    match t {
        Ty::Scalar(s) => s.rust().into(),
        Ty::Str(_) => "String".into(),
        Ty::Bytes(_) => "&[u8]".into(),
        Ty::Vec(t, _) => format!("Vec<{}>", ty(spec, t)),
        Ty::Opt(t) => format!("Option<{}>", ty(spec, t)),
        Ty::Array(s, n) => {
            let n = match spec.module_of(n) {
                Some(m) => format!("tf_protocol::{m}::{n}"),
                None => n.clone(),
            };
            format!("[{}; {n}]", s.rust())
        }
        Ty::Named(n) => named(spec, n),
    }
}

fn named(spec: &Spec, n: &str) -> String {
    let m = spec.module_of(n).unwrap_or_default();
    let lt = if spec.named_bulk(n) { "<'_>" } else { "" };
    format!("tf_protocol::{m}::{n}{lt}")
}

/// Whether variant `i` of `e` is a sub-domain (routed, not a method).
fn sub_domain<'s>(spec: &'s Spec, e: &Enum, i: usize) -> Option<&'s Enum> {
    match &e.variants[i].payload {
        Payload::Newtype(t) => spec.find_enum(t).filter(|d| d.calls.is_some()),
        _ => None,
    }
}

pub fn calls(banner: &str, spec: &Spec) -> String {
    let root = spec.root();
    let domains = spec.domains(root);
    let mut s = String::from(banner);
    s.push_str(
        "//! The worker's side of every request: one trait per request domain of\n\
         //! `codegen/messages.txt`, each implemented for `Session` by the domain's\n\
         //! module, and [`route`], which calls the method of a decoded request.\n\n\
         use crate::session::Outcome;\n",
    );
    for d in &domains {
        let _ = writeln!(s, "use tf_protocol::{}::{};", d.module, d.name);
    }
    s.push('\n');
    for d in &domains {
        let calls = d.calls.as_deref().expect("domains have calls=");
        let _ = writeln!(
            s,
            "/// The requests of `tf_protocol::{}::{}`.\npub(crate) trait {calls} {{",
            d.module, d.name
        );
        for (i, v) in d.variants.iter().enumerate() {
            if sub_domain(spec, d, i).is_some() {
                continue;
            }
            let names: Vec<String> = spec
                .variant_ops(v)
                .iter()
                .map(|op| match op {
                    super::model::Op::Api(n) => format!("`{n}`"),
                    super::model::Op::Control(_) => format!("`{}`", v.name),
                })
                .collect();
            let mut params = String::new();
            match &v.payload {
                Payload::Unit => {}
                Payload::Newtype(t) => {
                    let _ = write!(params, ", {}: {}", super::model::snake(t), named(spec, t));
                }
                Payload::Fields(fs) => {
                    for f in fs {
                        let _ = write!(params, ", {}: {}", f.name, ty(spec, &f.ty));
                    }
                }
            }
            // A long list (one opcode per value of a keyed type) is cut.
            let names = match &names[..] {
                [a, b, c, _, rest @ ..] => format!("{a}, {b}, {c} and {} more", rest.len() + 1),
                all => all.join(", "),
            };
            let _ = writeln!(
                s,
                "    /// {names}\n    fn {}(&mut self{params}) -> Outcome;",
                v.method()
            );
        }
        s.push_str("}\n\n");
    }
    for (n, d) in domains.iter().enumerate() {
        let fname = if n == 0 {
            "route".to_string()
        } else {
            format!("route_{}", super::model::snake(&d.name))
        };
        let calls = d.calls.as_deref().unwrap_or_default();
        // A domain's own trait and those of the domains under it.
        let bound: Vec<&str> = spec
            .domains(d)
            .iter()
            .filter_map(|d| d.calls.as_deref())
            .collect();
        let bound = bound.join(" + ");
        let mut arms = String::new();
        for (i, v) in d.variants.iter().enumerate() {
            let path = format!("{}::{}", d.name, v.name);
            if let Some(sub) = sub_domain(spec, d, i) {
                let _ = write!(
                    arms,
                    "{path}(r) => route_{}(s, r),",
                    super::model::snake(&sub.name)
                );
                continue;
            }
            let m = v.method();
            let _ = match &v.payload {
                Payload::Unit => write!(arms, "{path} => {calls}::{m}(s),"),
                Payload::Newtype(_) => write!(arms, "{path}(v) => {calls}::{m}(s, v),"),
                Payload::Fields(fs) => {
                    let names: Vec<&str> = fs.iter().map(|f| f.name.as_str()).collect();
                    write!(
                        arms,
                        "{path} {{ {} }} => {calls}::{m}(s, {}),",
                        names.join(", "),
                        names.join(", ")
                    )
                }
            };
        }
        let lt = if spec.named_bulk(&d.name) { "<'_>" } else { "" };
        let doc = if n == 0 {
            "/// Calls the method of a decoded request."
        } else {
            "/// Calls the method of a request of this domain."
        };
        let vis = if n == 0 { "pub(crate) " } else { "" };
        let _ = writeln!(
            s,
            "{doc}\n{vis}fn {fname}<S: {bound}>(s: &mut S, req: {}{lt}) -> Outcome {{ match req {{ {arms} }} }}\n",
            d.name
        );
    }
    s
}
