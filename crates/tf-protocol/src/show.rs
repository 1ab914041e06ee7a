//! Argument lists for log lines, as the generated `Display` of a request
//! writes them: `cuMemAlloc_v2(ctx=0x7c7c000000000001, size=4096)`.
//! Handles and flags in hex, bulk data as its length, long text and long
//! lists cut short: a debug log must stay readable and cheap.

use std::fmt;

/// Longest text shown (kernel names can be 64 KiB of mangled C++).
const MAX_TEXT: usize = 120;
/// Most list items shown.
const MAX_ITEMS: usize = 8;

/// A `name=value, name=value` list being written to a formatter.
pub struct Args<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    first: bool,
}

/// `name(args)`.
pub fn call(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    args: impl FnOnce(&mut Args<'_, '_>) -> fmt::Result,
) -> fmt::Result {
    f.write_str(name)?;
    f.write_str("(")?;
    args(&mut Args { f, first: true })?;
    f.write_str(")")
}

/// `{args}`, for a struct inside an argument.
pub fn braces(
    f: &mut fmt::Formatter<'_>,
    args: impl FnOnce(&mut Args<'_, '_>) -> fmt::Result,
) -> fmt::Result {
    f.write_str("{")?;
    args(&mut Args { f, first: true })?;
    f.write_str("}")
}

impl Args<'_, '_> {
    fn name(&mut self, name: &str) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.f.write_str(", ")?;
        }
        self.f.write_str(name)?;
        self.f.write_str("=")
    }

    pub fn dec(&mut self, name: &str, v: impl fmt::Display) -> fmt::Result {
        self.name(name)?;
        write!(self.f, "{v}")
    }

    pub fn hex(&mut self, name: &str, v: impl fmt::LowerHex) -> fmt::Result {
        self.name(name)?;
        write!(self.f, "{v:#x}")
    }

    /// Quoted, cut at [`MAX_TEXT`] bytes.
    pub fn text(&mut self, name: &str, v: &str) -> fmt::Result {
        self.name(name)?;
        match v.char_indices().nth(MAX_TEXT) {
            Some((cut, _)) => write!(self.f, "{:?}… ({} bytes)", &v[..cut], v.len()),
            None => write!(self.f, "{v:?}"),
        }
    }

    /// Bulk data: only its length.
    pub fn bulk(&mut self, name: &str, len: usize) -> fmt::Result {
        self.name(name)?;
        write!(self.f, "<{len} bytes>")
    }

    /// A fixed-size byte array (a GUID, a launch attribute value) in hex.
    pub fn raw(&mut self, name: &str, v: &[u8]) -> fmt::Result {
        self.name(name)?;
        self.f.write_str("0x")?;
        v.iter().try_for_each(|b| write!(self.f, "{b:02x}"))
    }

    /// `[a, b, …]`: at most [`MAX_ITEMS`] items, then the count.
    pub fn list<T>(
        &mut self,
        name: &str,
        items: &[T],
        item: fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result,
    ) -> fmt::Result {
        self.name(name)?;
        self.f.write_str("[")?;
        for (i, x) in items.iter().take(MAX_ITEMS).enumerate() {
            if i > 0 {
                self.f.write_str(", ")?;
            }
            item(x, self.f)?;
        }
        if items.len() > MAX_ITEMS {
            write!(self.f, ", … {} items", items.len())?;
        }
        self.f.write_str("]")
    }
}

/// A list item in decimal (or a struct's `{fields}`).
pub fn dec<T: fmt::Display>(v: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{v}")
}

/// A list item in hex.
pub fn hex<T: fmt::LowerHex>(v: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{v:#x}")
}

#[cfg(test)]
mod tests {
    use crate::exec_msgs::{ExecRequest, LaunchAttr, Shape};
    use crate::Request;

    #[test]
    fn requests_show_as_calls() {
        let r = Request::MemAlloc {
            ctx: 0x7c7c_0000_0000_0001,
            size: 4096,
        };
        assert_eq!(
            r.to_string(),
            "cuMemAlloc_v2(ctx=0x7c7c000000000001, size=4096)"
        );
        let data = [0u8; 100];
        let r = Request::MemcpyHtoD {
            ctx: 1,
            stream: Some(2),
            dst: 0x10,
            data: &data,
        };
        assert_eq!(
            r.to_string(),
            "cuMemcpyHtoDAsync_v2(ctx=0x1, stream=0x2, dst=0x10, data=<100 bytes>)"
        );
        assert_eq!(Request::Ping.to_string(), "Ping()");
        let name = "k".repeat(500);
        let r = Request::Exec(ExecRequest::ModuleGetFunction { module: 3, name });
        let s = r.to_string();
        assert!(
            s.starts_with("cuModuleGetFunction(module=0x3, name=\"kkk"),
            "{s}"
        );
        assert!(s.ends_with("… (500 bytes))"), "{s}");
    }

    #[test]
    fn structs_and_lists_show_inline() {
        let shape = Shape {
            grid: [1, 2, 3],
            attrs: vec![
                LaunchAttr {
                    id: 7,
                    value: [0xab; 64],
                };
                10
            ],
            ..Shape::default()
        };
        let s = shape.to_string();
        assert!(s.starts_with("{grid=[1, 2, 3], block=[0, 0, 0], shared_mem=0, stream=0x0, attrs=[{id=7, value=0xabab"), "{s}");
        assert!(s.ends_with(", … 10 items]}"), "{s}");
    }
}
