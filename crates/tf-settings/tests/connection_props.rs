//! Property tests: canonical connection infos survive `Display` → `FromStr`,
//! and no input makes the parser panic.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use proptest::prelude::*;
use tf_settings::{ConnectionInfo, Host};

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        any::<u32>().prop_map(|a| Host::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| Host::V6(Ipv6Addr::from(a))),
        // Labels start with a letter so a name never reads as an address.
        "[a-z][a-z0-9-]{0,20}[a-z0-9](\\.[a-z][a-z0-9_-]{0,10}[a-z0-9]){0,3}\\.?"
            .prop_map(Host::Name),
    ]
}

/// Non-empty, single line, no surrounding whitespace; may contain `+`.
fn id() -> impl Strategy<Value = String> {
    "[^\\s\\p{C}]([^\\p{C}]{0,15}[^\\s\\p{C}])?"
}

fn info() -> impl Strategy<Value = ConnectionInfo> {
    prop_oneof![
        (host(), 1..=u16::MAX, id()).prop_map(|(host, port, id)| ConnectionInfo::Native {
            host,
            port,
            id
        }),
        ("(/[a-zA-Z0-9._:-]{1,12}){1,5}", 1..=(u64::MAX >> 20), id()).prop_map(
            |(path, size_mb, id)| ConnectionInfo::Shmem {
                path: PathBuf::from(path),
                size_mb,
                id
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn display_parses_back(x in info()) {
        let text = x.to_string();
        let back: ConnectionInfo = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&back, &x);
        // A URL answer usually ends with a newline.
        let back: ConnectionInfo = format!(" {text}\r\n").parse().unwrap();
        prop_assert_eq!(back, x);
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = s.parse::<ConnectionInfo>();
    }

    #[test]
    fn near_miss_strings_never_panic(
        s in "(native|shmem|NATIVE|ShMem|tcp)?(\\+[\\[\\]:/0-9a-f.+ \n-]{0,12}){0,5}"
    ) {
        if let Ok(x) = s.parse::<ConnectionInfo>() {
            // Whatever is accepted is canonicalised stably.
            prop_assert_eq!(x.to_string().parse::<ConnectionInfo>().unwrap(), x);
        }
    }
}
