//! `logging::init_with` writing to a file. Its own test binary (process),
//! because it installs the process-wide subscriber.

use std::path::PathBuf;

use tf_settings::logging::{init_with, LogLevel, LogSettings};
use tf_settings::SettingsError;

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tf-settings-logging-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One test function: the steps depend on the order of installation.
#[test]
fn file_logging_is_installed_once() {
    let dir = scratch_dir();

    // An unopenable file is an error and installs nothing, so a retry with
    // a fixed path still works.
    let bad = LogSettings {
        enabled: true,
        level: LogLevel::Info,
        path: Some(dir.join("missing-subdir").join("tf.log")),
    };
    let err = init_with("tf-test", &bad).unwrap_err();
    assert!(matches!(err, SettingsError::LogFile { .. }), "{err:?}");

    let log = dir.join("tf.log");
    std::fs::write(&log, "existing line\n").unwrap();
    let good = LogSettings {
        enabled: true,
        level: LogLevel::Debug,
        path: Some(log.clone()),
    };
    init_with("tf-test", &good).unwrap();

    // Second call: a no-op, even with other settings; nothing is created.
    let other = dir.join("other.log");
    let again = LogSettings {
        path: Some(other.clone()),
        ..good.clone()
    };
    init_with("tf-test", &again).unwrap();
    assert!(!other.exists());

    tracing::debug!(answer = 42, "debug line");
    tracing::trace!("trace line is below the level");

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("existing line\n"), "appends: {text}");
    let prefix = format!("tf-test[{}] ", std::process::id());
    let line = text
        .lines()
        .find(|l| l.contains("debug line"))
        .unwrap_or_else(|| panic!("no debug line in {text:?}"));
    assert!(line.starts_with(&prefix), "{line}");
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("answer=42"), "{line}");
    assert!(
        !text.contains('\u{1b}'),
        "no ANSI escapes in files: {text:?}"
    );
    assert!(!text.contains("trace line"));

    std::fs::remove_dir_all(&dir).unwrap();
}
