//! Connection-info strings: where the client finds its worker.
//!
//! Two forms, fields separated by `+`:
//!
//! * `native+HOST+PORT+ID`: TCP to a `tensor-fusion-worker`. HOST is a
//!   hostname, an IPv4 address or an IPv6 address (with or without
//!   brackets: IPv6 uses `:`, never `+`, so it needs no quoting).
//! * `shmem+PATH+SIZE_MB+ID`: shared memory, e.g. an ivshmem BAR such as
//!   `/sys/devices/pci0000:00/0000:00:04.0/resource2`, or a POSIX
//!   shared-memory object `/dev/shm/NAME`; a bare `/NAME` means
//!   `/dev/shm/NAME` (see [`shm_file_path`]).
//!
//! ID is the connection id/version: `0` in the deployment guide, opaque text
//! such as `worker-7d9f-12345` when the Kubernetes operator writes it. The
//! string is split on its first three `+` only, so ID may itself contain
//! `+`; it must be non-empty and a single line. The protocol is matched
//! case-insensitively and surrounding whitespace (the trailing newline of an
//! HTTP answer) is ignored.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::error::{InfoOrigin, InfoProblem, SettingsError};

/// Where POSIX shared-memory objects live on Linux.
const DEV_SHM: &str = "/dev/shm";

/// Largest SIZE_MB whose size in bytes still fits a `u64`.
const MAX_SIZE_MB: u64 = u64::MAX >> 20;

/// Longest DNS name (RFC 1035), not counting a trailing dot.
const MAX_HOSTNAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// The worker's host in a `native+` connection info.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, kept exactly as written.
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host {
    /// The host as it goes into a URL or a `ToSocketAddrs` string: IPv6 in
    /// brackets.
    pub fn to_url_host(&self) -> String {
        match self {
            Host::V6(a) => format!("[{a}]"),
            other => other.to_string(),
        }
    }

    fn parse(h: &str) -> Result<Host, &'static str> {
        if h.is_empty() {
            return Err("empty");
        }
        if let Some(inner) = h.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or("'[' without a closing ']'")?;
            return inner
                .parse()
                .map(Host::V6)
                .map_err(|_| "not an IPv6 address inside [...]");
        }
        if h.contains(':') {
            // Only IPv6 has ':'; `host:port` is a common mistake.
            return h
                .parse()
                .map(Host::V6)
                .map_err(|_| "has ':' but is not an IPv6 address; PORT is its own field");
        }
        if let Ok(a) = h.parse() {
            return Ok(Host::V4(a));
        }
        validate_hostname(h)?;
        Ok(Host::Name(h.to_owned()))
    }
}

/// Displays without brackets: that is the form the operator writes, and
/// fields are separated by `+`, so IPv6 needs no brackets.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => a.fmt(f),
            Host::V6(a) => a.fmt(f),
        }
    }
}

/// RFC 1123 hostname, leniently allowing `_` (seen in internal DNS) and one
/// trailing dot (fully qualified names).
fn validate_hostname(h: &str) -> Result<(), &'static str> {
    let name = h.strip_suffix('.').unwrap_or(h);
    if name.len() > MAX_HOSTNAME_LEN {
        return Err("longer than 253 characters");
    }
    let mut all_numeric = true;
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label (\"..\" or a leading dot)");
        }
        if label.len() > MAX_LABEL_LEN {
            return Err("has a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(
                "expected a hostname of letters, digits, '-' and '.', an IPv4 or an IPv6 address",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a hostname label cannot start or end with '-'");
        }
        all_numeric &= label.bytes().all(|b| b.is_ascii_digit());
    }
    if all_numeric {
        // e.g. 192.168.1.300 or 10.0.0: a typo'd address, not a name.
        return Err("looks like an IPv4 address but is not a valid one");
    }
    Ok(())
}

/// A parsed `native+...` or `shmem+...` connection info.
///
/// `Display` writes the canonical form (lowercase protocol, IPv6 without
/// brackets), which parses back to an equal value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConnectionInfo {
    /// TCP to a worker.
    Native { host: Host, port: u16, id: String },
    /// Shared memory of `size_mb` MiB at `path` (see [`shm_file_path`]).
    Shmem {
        path: PathBuf,
        size_mb: u64,
        id: String,
    },
}

impl ConnectionInfo {
    /// Parses `s`, naming `origin` in errors (`FromStr` names
    /// `TENSOR_FUSION_OPERATOR_CONNECTION_INFO`).
    pub fn parse_from(s: &str, origin: InfoOrigin) -> Result<Self, SettingsError> {
        let s = s.trim();
        let fail = |problem| SettingsError::BadConnectionInfo {
            origin: origin.clone(),
            value: s.to_owned(),
            problem,
        };
        if s.is_empty() {
            return Err(fail(InfoProblem::Empty));
        }
        // The first three '+' separate fields; the ID may contain '+'.
        let fields: Vec<&str> = s.splitn(4, '+').collect();
        let protocol = if fields[0].eq_ignore_ascii_case("native") {
            "native"
        } else if fields[0].eq_ignore_ascii_case("shmem") {
            "shmem"
        } else {
            return Err(fail(InfoProblem::UnknownProtocol(fields[0].to_owned())));
        };
        let [_, a, b, id] = fields[..] else {
            return Err(fail(InfoProblem::MissingFields {
                protocol,
                found: fields.len(),
            }));
        };
        let id = parse_id(id).map_err(fail)?;
        if protocol == "native" {
            let host = Host::parse(a).map_err(|why| {
                fail(InfoProblem::BadHost {
                    host: a.to_owned(),
                    why,
                })
            })?;
            let port = match b.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(fail(InfoProblem::BadPort(b.to_owned()))),
            };
            Ok(ConnectionInfo::Native { host, port, id })
        } else {
            validate_shm_path(a).map_err(|why| {
                fail(InfoProblem::BadPath {
                    path: a.to_owned(),
                    why,
                })
            })?;
            let size_mb = match b.parse::<u64>() {
                Ok(n) if (1..=MAX_SIZE_MB).contains(&n) => n,
                _ => return Err(fail(InfoProblem::BadSize(b.to_owned()))),
            };
            Ok(ConnectionInfo::Shmem {
                path: PathBuf::from(a),
                size_mb,
                id,
            })
        }
    }

    /// The connection id/version (last field).
    pub fn id(&self) -> &str {
        match self {
            ConnectionInfo::Native { id, .. } | ConnectionInfo::Shmem { id, .. } => id,
        }
    }

    /// `host:port` (IPv6 bracketed) for `TcpStream::connect`; `None` for
    /// shared memory.
    pub fn socket_address(&self) -> Option<String> {
        match self {
            ConnectionInfo::Native { host, port, .. } => {
                Some(format!("{}:{port}", host.to_url_host()))
            }
            ConnectionInfo::Shmem { .. } => None,
        }
    }

    /// The file to map for `shmem+` (bare `/NAME` becomes `/dev/shm/NAME`);
    /// `None` for TCP.
    pub fn shm_file_path(&self) -> Option<PathBuf> {
        match self {
            ConnectionInfo::Shmem { path, .. } => Some(shm_file_path(path)),
            ConnectionInfo::Native { .. } => None,
        }
    }

    /// Shared-memory size in bytes; `None` for TCP. Cannot overflow: parsing
    /// bounds SIZE_MB.
    pub fn size_bytes(&self) -> Option<u64> {
        match self {
            ConnectionInfo::Shmem { size_mb, .. } => size_mb.checked_mul(1 << 20),
            ConnectionInfo::Native { .. } => None,
        }
    }
}

impl FromStr for ConnectionInfo {
    type Err = SettingsError;

    /// Errors name `TENSOR_FUSION_OPERATOR_CONNECTION_INFO`; use
    /// [`ConnectionInfo::parse_from`] for other sources.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnectionInfo::parse_from(s, InfoOrigin::default())
    }
}

impl fmt::Display for ConnectionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionInfo::Native { host, port, id } => write!(f, "native+{host}+{port}+{id}"),
            ConnectionInfo::Shmem { path, size_mb, id } => {
                write!(f, "shmem+{}+{size_mb}+{id}", path.display())
            }
        }
    }
}

fn parse_id(id: &str) -> Result<String, InfoProblem> {
    if id.is_empty() {
        return Err(InfoProblem::EmptyId);
    }
    if id.chars().any(char::is_control) {
        return Err(InfoProblem::ControlInId);
    }
    Ok(id.to_owned())
}

fn validate_shm_path(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("empty");
    }
    if !p.starts_with('/') {
        return Err(
            "must be absolute, e.g. /dev/shm/NAME, /NAME or an ivshmem BAR \
                    /sys/devices/.../resource2",
        );
    }
    if p.ends_with('/') {
        return Err("names a directory, not a file");
    }
    if p.contains('\0') {
        return Err("contains a NUL byte");
    }
    Ok(())
}

/// Maps a shared-memory name to the file to open, the same rule as the
/// worker's `-m` option: a name without a directory part (`/my_shm` or
/// `my_shm`) is a POSIX shared-memory object, i.e. `/dev/shm/my_shm` on
/// Linux; any other path (`/dev/shm/x`, an ivshmem BAR under `/sys`) is used
/// as given.
pub fn shm_file_path(path: &Path) -> PathBuf {
    let mut components = path.components();
    let first = components.next();
    let second = components.next();
    let rest = components.next();
    match (first, second, rest) {
        (Some(Component::RootDir), Some(Component::Normal(name)), None)
        | (Some(Component::Normal(name)), None, None) => Path::new(DEV_SHM).join(name),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::TENSOR_FUSION_OPERATOR_CONNECTION_INFO as VAR;

    fn parse(s: &str) -> ConnectionInfo {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn problem(s: &str) -> InfoProblem {
        match s.parse::<ConnectionInfo>() {
            Err(SettingsError::BadConnectionInfo { problem, .. }) => problem,
            other => panic!("{s:?} should be refused, got {other:?}"),
        }
    }

    fn native(host: Host, port: u16, id: &str) -> ConnectionInfo {
        ConnectionInfo::Native {
            host,
            port,
            id: id.into(),
        }
    }

    #[test]
    fn native_ipv4_from_the_deployment_guide() {
        let info = parse("native+192.168.1.100+12345+0");
        assert_eq!(
            info,
            native(Host::V4(Ipv4Addr::new(192, 168, 1, 100)), 12345, "0")
        );
        assert_eq!(info.to_string(), "native+192.168.1.100+12345+0");
        assert_eq!(info.socket_address().unwrap(), "192.168.1.100:12345");
        assert_eq!(info.id(), "0");
        assert_eq!(info.shm_file_path(), None);
        assert_eq!(info.size_bytes(), None);
    }

    #[test]
    fn native_hostname_and_kubernetes_id() {
        let info = parse("native+worker-0.tf.svc.cluster.local.+42000+tf-worker-abc-12345");
        assert_eq!(
            info,
            native(
                Host::Name("worker-0.tf.svc.cluster.local.".into()),
                42000,
                "tf-worker-abc-12345"
            )
        );
        assert_eq!(
            info.socket_address().unwrap(),
            "worker-0.tf.svc.cluster.local.:42000"
        );
    }

    #[test]
    fn id_may_contain_plus_and_spaces() {
        let info = parse("native+h+1+a+b c+d");
        assert_eq!(info.id(), "a+b c+d");
        assert_eq!(info.to_string(), "native+h+1+a+b c+d");
    }

    #[test]
    fn ipv6_with_and_without_brackets() {
        let v6: Ipv6Addr = "fe80::1".parse().unwrap();
        let bare = parse("native+fe80::1+9000+0");
        let bracketed = parse("native+[fe80::1]+9000+0");
        assert_eq!(bare, native(Host::V6(v6), 9000, "0"));
        assert_eq!(bare, bracketed);
        assert_eq!(bare.to_string(), "native+fe80::1+9000+0");
        assert_eq!(bare.socket_address().unwrap(), "[fe80::1]:9000");
        assert_eq!(parse("native+::1+1+x").to_string(), "native+::1+1+x");
    }

    #[test]
    fn protocol_is_case_insensitive_and_whitespace_is_trimmed() {
        let info = parse("  NATIVE+10.0.0.1+80+7\r\n");
        assert_eq!(info.to_string(), "native+10.0.0.1+80+7");
        let info = parse("\tShMem+/my_shm+64+0\n");
        assert_eq!(info.to_string(), "shmem+/my_shm+64+0");
    }

    #[test]
    fn shmem_forms_and_dev_shm_mapping() {
        let info = parse("shmem+/my_shm+256+0");
        assert_eq!(
            info,
            ConnectionInfo::Shmem {
                path: "/my_shm".into(),
                size_mb: 256,
                id: "0".into()
            }
        );
        assert_eq!(info.shm_file_path().unwrap(), Path::new("/dev/shm/my_shm"));
        assert_eq!(info.size_bytes(), Some(256 << 20));
        assert_eq!(info.socket_address(), None);

        let info = parse("shmem+/dev/shm/tf_7+1+v3");
        assert_eq!(info.shm_file_path().unwrap(), Path::new("/dev/shm/tf_7"));

        let bar = "/sys/devices/pci0000:00/0000:00:04.0/resource2";
        let info = parse(&format!("shmem+{bar}+1024+0"));
        assert_eq!(info.shm_file_path().unwrap(), Path::new(bar));
        assert_eq!(info.to_string(), format!("shmem+{bar}+1024+0"));
    }

    #[test]
    fn shm_file_path_rule() {
        assert_eq!(shm_file_path(Path::new("/x")), Path::new("/dev/shm/x"));
        assert_eq!(shm_file_path(Path::new("x")), Path::new("/dev/shm/x"));
        assert_eq!(shm_file_path(Path::new("/a/b")), Path::new("/a/b"));
        assert_eq!(shm_file_path(Path::new("a/b")), Path::new("a/b"));
        assert_eq!(shm_file_path(Path::new("/")), Path::new("/"));
    }

    #[test]
    fn unknown_protocol_message_matches_the_documented_text() {
        let err = "tcp+1.2.3.4+80+0".parse::<ConnectionInfo>().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "unknown protocol \"tcp\" in {VAR}=\"tcp+1.2.3.4+80+0\"; \
                 expected native+HOST+PORT+ID or shmem+PATH+SIZE_MB+ID"
            )
        );
        assert_eq!(
            problem("192.168.1.1:8080"),
            InfoProblem::UnknownProtocol("192.168.1.1:8080".into())
        );
        assert_eq!(problem("+h+1+0"), InfoProblem::UnknownProtocol("".into()));
    }

    #[test]
    fn empty_and_missing_fields() {
        assert_eq!(problem(""), InfoProblem::Empty);
        assert_eq!(problem(" \n "), InfoProblem::Empty);
        assert_eq!(
            problem("native"),
            InfoProblem::MissingFields {
                protocol: "native",
                found: 1
            }
        );
        // What older operators wrote: no ID.
        assert_eq!(
            problem("native+10.0.0.1+8080"),
            InfoProblem::MissingFields {
                protocol: "native",
                found: 3
            }
        );
        let err = "shmem+/x+1".parse::<ConnectionInfo>().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("missing fields: shmem needs 4 '+'-separated fields (shmem+PATH+SIZE_MB+ID), found 3"),
            "{err}"
        );
    }

    #[test]
    fn bad_ports() {
        for port in ["0", "65536", "-1", "http", "", " 80", "8o"] {
            assert_eq!(
                problem(&format!("native+h+{port}+0")),
                InfoProblem::BadPort(port.into()),
                "port {port:?}"
            );
        }
        assert_eq!(
            parse("native+h+65535+0").socket_address().unwrap(),
            "h:65535"
        );
        let msg = "native+h+0+0"
            .parse::<ConnectionInfo>()
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("bad port \"0\" (expected an integer in 1..=65535) in "),
            "{msg}"
        );
    }

    #[test]
    fn bad_hosts() {
        let bad = [
            "",
            "[fe80::1",
            "[not-v6]",
            "10.0.0.1:80",
            "fe80:::1::2",
            "bad host",
            "-lead",
            "trail-",
            "a..b",
            ".a",
            "192.168.1.300",
            "10.0.0",
            "ümlaut",
        ];
        for host in bad {
            match problem(&format!("native+{host}+80+0")) {
                InfoProblem::BadHost { host: h, .. } => assert_eq!(h, host),
                other => panic!("{host:?}: {other:?}"),
            }
        }
        let long_label = "a".repeat(64);
        assert!(matches!(
            problem(&format!("native+{long_label}+80+0")),
            InfoProblem::BadHost { .. }
        ));
        let long_name = ["a"; 130].join(".");
        assert!(matches!(
            problem(&format!("native+{long_name}+80+0")),
            InfoProblem::BadHost { .. }
        ));
        // Underscores occur in internal DNS; accepted on purpose.
        assert!(matches!(
            parse("native+my_host+1+0"),
            ConnectionInfo::Native { .. }
        ));
    }

    #[test]
    fn bad_paths_and_sizes() {
        for path in ["", "my_shm", "dev/shm/x", "/", "/dev/shm/"] {
            match problem(&format!("shmem+{path}+64+0")) {
                InfoProblem::BadPath { path: p, .. } => assert_eq!(p, path),
                other => panic!("{path:?}: {other:?}"),
            }
        }
        let too_big = (MAX_SIZE_MB + 1).to_string();
        for size in ["0", "-1", "1.5", "64M", "", too_big.as_str()] {
            assert_eq!(
                problem(&format!("shmem+/x+{size}+0")),
                InfoProblem::BadSize(size.into()),
                "size {size:?}"
            );
        }
        let max = parse(&format!("shmem+/x+{MAX_SIZE_MB}+0"));
        assert_eq!(max.size_bytes(), Some(MAX_SIZE_MB << 20));
    }

    #[test]
    fn bad_ids() {
        assert_eq!(problem("native+h+1+"), InfoProblem::EmptyId);
        assert_eq!(
            problem("native+h+1+0\nnative+h+2+0"),
            InfoProblem::ControlInId
        );
        assert_eq!(problem("shmem+/x+1+a\u{7}"), InfoProblem::ControlInId);
    }

    #[test]
    fn url_origin_is_named_in_errors() {
        let err = ConnectionInfo::parse_from("oops\n", InfoOrigin::Url("http://op/conn".into()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown protocol \"oops\" in the answer \"oops\" from GET http://op/conn; \
             expected native+HOST+PORT+ID or shmem+PATH+SIZE_MB+ID"
        );
    }
}
