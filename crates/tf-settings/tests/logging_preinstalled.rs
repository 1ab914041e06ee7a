//! `logging::init` when the host application installed a subscriber first:
//! no panic, no error. Its own test binary (process) because it sets the
//! process-wide subscriber.

use tf_settings::logging::{init, init_with, LogLevel, LogSettings};

#[test]
fn an_existing_global_subscriber_is_kept() {
    let theirs = tracing_subscriber::fmt().with_test_writer().finish();
    tracing::subscriber::set_global_default(theirs).unwrap();

    let settings = LogSettings {
        enabled: true,
        level: LogLevel::Trace,
        path: None,
    };
    init_with("tf-test", &settings).unwrap();
    init_with("tf-test", &settings).unwrap();
    // `init` reads the real environment; the test runner does not set the
    // TF_ variables, and a valid value would be fine too.
    if std::env::var_os("TF_LOG_LEVEL").is_none() && std::env::var_os("TF_ENABLE_LOG").is_none() {
        init("tf-test").unwrap();
    }
    tracing::info!("still logging through the application's subscriber");
}
