//! Logging setup shared by the worker binary and the client library.
//!
//! | variable        | default  | meaning |
//! |-----------------|----------|---------|
//! | `TF_ENABLE_LOG` | disabled | `1/true/yes/on` enable, `0/false/no/off/""` disable |
//! | `TF_LOG_LEVEL`  | `info`   | `trace/debug/info/warn/error`, case-insensitive |
//! | `TF_LOG_PATH`   | stdout   | file to append to (created if missing) |
//!
//! **Disabled is not silent:** with logging disabled, `error` events still go
//! to stderr (whatever `TF_LOG_LEVEL`/`TF_LOG_PATH` say), so a user whose
//! CUDA calls fail still sees why without knowing about `TF_ENABLE_LOG`.
//!
//! Every line starts with `COMPONENT[PID] `: the client library logs from
//! inside someone else's process, and several processes may append to the
//! same `TF_LOG_PATH`.
//!
//! [`init`] installs a global `tracing` subscriber at most once. It never
//! panics: if the host application already installed one, that one is kept
//! and `init` still returns `Ok`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

use crate::env::{non_empty, process_env, TF_ENABLE_LOG, TF_LOG_LEVEL, TF_LOG_PATH};
use crate::error::SettingsError;

/// The verbosity selected by `TF_LOG_LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Lowercase name, as accepted by `TF_LOG_LEVEL`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// The most verbose `tracing` level let through.
    pub fn to_level_filter(self) -> LevelFilter {
        match self {
            LogLevel::Trace => LevelFilter::TRACE,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = SettingsError;

    /// Case-insensitive; surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => {
                return Err(SettingsError::InvalidLogLevel {
                    var: TF_LOG_LEVEL,
                    value: s.to_owned(),
                })
            }
        })
    }
}

/// What `TF_ENABLE_LOG`, `TF_LOG_LEVEL` and `TF_LOG_PATH` ask for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogSettings {
    /// `TF_ENABLE_LOG`; when false only `error` events are written, to
    /// stderr.
    pub enabled: bool,
    /// `TF_LOG_LEVEL` (default info).
    pub level: LogLevel,
    /// `TF_LOG_PATH`; `None` means stdout.
    pub path: Option<PathBuf>,
}

impl LogSettings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_env_map(&process_env)
    }

    /// Reads through `lookup` (tests pass a map instead of mutating the
    /// process environment). All three variables are validated even when
    /// logging is disabled, so a typo surfaces before someone relies on it.
    pub fn from_env_map(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let enabled = parse_bool(lookup, TF_ENABLE_LOG)?.unwrap_or(false);
        let level = match non_empty(lookup, TF_LOG_LEVEL) {
            Some(v) => v.parse()?,
            None => LogLevel::default(),
        };
        let path = non_empty(lookup, TF_LOG_PATH).map(PathBuf::from);
        Ok(LogSettings {
            enabled,
            level,
            path,
        })
    }
}

/// `Some(true)` for `1/true/yes/on`, `Some(false)` for `0/false/no/off` or
/// an empty value, `None` when unset.
pub(crate) fn parse_bool(
    lookup: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<bool>, SettingsError> {
    let Some(raw) = lookup(var) else {
        return Ok(None);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" | "" => Ok(Some(false)),
        _ => Err(SettingsError::InvalidBool { var, value: raw }),
    }
}

/// Whether this crate's subscriber (or a foreign one it deferred to) is in
/// place. A mutex rather than a `Once` so that a failed attempt (e.g. an
/// unopenable `TF_LOG_PATH`) can be retried after fixing the settings.
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// Reads the logging variables from the process environment and installs
/// the global subscriber for `component` (e.g. `"tensor-fusion-worker"`).
///
/// Settings are validated on every call; installation happens once and
/// later calls are no-ops. If another global subscriber already exists
/// (the host application has its own), it is kept and this returns `Ok`.
pub fn init(component: &str) -> Result<(), SettingsError> {
    init_with(component, &LogSettings::from_env()?)
}

/// [`init`], with `stdout` standing for the standard output (when
/// `TF_LOG_PATH` is empty): a worker's session process keeps its original
/// standard output there, descriptor 1 being its client's (device printf).
pub fn init_with_stdout(component: &str, stdout: File) -> Result<(), SettingsError> {
    install(component, &LogSettings::from_env()?, Some(stdout))
}

/// [`init`] with explicit settings.
pub fn init_with(component: &str, settings: &LogSettings) -> Result<(), SettingsError> {
    install(component, settings, None)
}

fn install(
    component: &str,
    settings: &LogSettings,
    stdout: Option<File>,
) -> Result<(), SettingsError> {
    // A panic while holding the lock cannot leave the bool half-written.
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if *installed {
        return Ok(());
    }
    let dispatch = build(component, settings, stdout)?;
    // Fails only when a global subscriber exists already; the application's
    // own choice wins, and that is not an error for us.
    let _ = tracing::dispatcher::set_global_default(dispatch);
    *installed = true;
    Ok(())
}

/// Where lines go and how verbose they are.
#[derive(Debug)]
enum Target {
    Stdout,
    Stderr,
    File(File),
    /// The standard output, kept on another descriptor.
    StdoutFile(File),
}

/// Resolves the settings into a target and a level; opens the log file.
fn target(settings: &LogSettings) -> Result<(Target, LevelFilter), SettingsError> {
    if !settings.enabled {
        return Ok((Target::Stderr, LevelFilter::ERROR));
    }
    let level = settings.level.to_level_filter();
    let Some(path) = &settings.path else {
        return Ok((Target::Stdout, level));
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| SettingsError::LogFile {
            var: TF_LOG_PATH,
            path: path.clone(),
            source,
        })?;
    Ok((Target::File(file), level))
}

fn build(
    component: &str,
    settings: &LogSettings,
    stdout: Option<File>,
) -> Result<tracing::Dispatch, SettingsError> {
    let (target, level) = target(settings)?;
    let target = match (target, stdout) {
        (Target::Stdout, Some(file)) => Target::StdoutFile(file),
        (t, _) => t,
    };
    // Colours only for a terminal, and never in files (escape codes make
    // them unreadable with less/grep); NO_COLOR is the common opt-out.
    let colour_ok = process_env("NO_COLOR").is_none_or(|v| v.is_empty());
    let (writer, ansi) = match target {
        Target::Stdout => (
            BoxMakeWriter::new(io::stdout),
            colour_ok && io::stdout().is_terminal(),
        ),
        Target::Stderr => (
            BoxMakeWriter::new(io::stderr),
            colour_ok && io::stderr().is_terminal(),
        ),
        Target::File(file) => (BoxMakeWriter::new(Mutex::new(file)), false),
        Target::StdoutFile(file) => {
            let ansi = colour_ok && file.is_terminal();
            (BoxMakeWriter::new(Mutex::new(file)), ansi)
        }
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_max_level(level)
        .event_format(Prefixed {
            prefix: format!("{component}[{}] ", std::process::id()),
            inner: format::Format::default(),
        })
        .finish();
    Ok(tracing::Dispatch::new(subscriber))
}

/// Puts `COMPONENT[PID] ` before the standard line, so lines from the
/// client inside an application and from the worker can be told apart.
struct Prefixed<E> {
    prefix: String,
    inner: E,
}

impl<S, N, E> FormatEvent<S, N> for Prefixed<E>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        fmt::Write::write_str(&mut writer, &self.prefix)?;
        self.inner.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<LogSettings, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogSettings::from_env_map(&|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_disabled_info_stdout() {
        assert_eq!(
            settings(&[]).unwrap(),
            LogSettings {
                enabled: false,
                level: LogLevel::Info,
                path: None
            }
        );
    }

    #[test]
    fn enable_spellings() {
        for v in ["1", "true", "TRUE", "yes", "On", " on\n"] {
            assert!(settings(&[(TF_ENABLE_LOG, v)]).unwrap().enabled, "{v:?}");
        }
        for v in ["0", "false", "No", "OFF", "", "  "] {
            assert!(!settings(&[(TF_ENABLE_LOG, v)]).unwrap().enabled, "{v:?}");
        }
    }

    #[test]
    fn bad_enable_value_names_the_accepted_values() {
        let err = settings(&[(TF_ENABLE_LOG, "maybe")]).unwrap_err();
        assert!(matches!(
            &err,
            SettingsError::InvalidBool { var: TF_ENABLE_LOG, value } if value == "maybe"
        ));
        assert_eq!(
            err.to_string(),
            "invalid TF_ENABLE_LOG=\"maybe\": expected 1, true, yes or on to enable, \
             or 0, false, no, off or an empty value to disable"
        );
    }

    #[test]
    fn levels_are_case_insensitive() {
        let cases = [
            ("trace", LogLevel::Trace),
            ("DEBUG", LogLevel::Debug),
            ("Info", LogLevel::Info),
            ("warn", LogLevel::Warn),
            (" error ", LogLevel::Error),
            ("", LogLevel::Info),
        ];
        for (v, want) in cases {
            assert_eq!(settings(&[(TF_LOG_LEVEL, v)]).unwrap().level, want, "{v:?}");
        }
        for l in [LogLevel::Trace, LogLevel::Warn] {
            assert_eq!(l.as_str().parse::<LogLevel>().unwrap(), l);
            assert_eq!(l.to_string(), l.as_str());
        }
    }

    #[test]
    fn bad_level_is_refused() {
        for v in ["verbose", "warning", "5"] {
            let err = settings(&[(TF_LOG_LEVEL, v)]).unwrap_err();
            assert!(
                matches!(&err, SettingsError::InvalidLogLevel { var: TF_LOG_LEVEL, value } if value == v),
                "{err:?}"
            );
            assert!(err.to_string().contains("trace, debug, info, warn, error"));
        }
        // Validated even while logging is disabled.
        assert!(settings(&[(TF_ENABLE_LOG, "0"), (TF_LOG_LEVEL, "loud")]).is_err());
    }

    #[test]
    fn path_empty_means_stdout() {
        assert_eq!(settings(&[(TF_LOG_PATH, "")]).unwrap().path, None);
        assert_eq!(
            settings(&[(TF_LOG_PATH, "/tmp/tf.log")]).unwrap().path,
            Some(PathBuf::from("/tmp/tf.log"))
        );
    }

    #[test]
    fn disabled_sends_only_errors_to_stderr() {
        let s = LogSettings {
            enabled: false,
            level: LogLevel::Trace,
            path: Some("/nonexistent-dir/never-opened.log".into()),
        };
        let (t, level) = target(&s).unwrap();
        assert!(matches!(t, Target::Stderr));
        assert_eq!(level, LevelFilter::ERROR);
    }

    #[test]
    fn enabled_targets() {
        let s = LogSettings {
            enabled: true,
            level: LogLevel::Debug,
            path: None,
        };
        let (t, level) = target(&s).unwrap();
        assert!(matches!(t, Target::Stdout));
        assert_eq!(level, LevelFilter::DEBUG);
    }

    #[test]
    fn unopenable_log_file_is_an_error_naming_the_variable() {
        let s = LogSettings {
            enabled: true,
            level: LogLevel::Info,
            path: Some("/nonexistent-dir/tf.log".into()),
        };
        let err = target(&s).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot open TF_LOG_PATH=\"/nonexistent-dir/tf.log\" for appending: "),
            "{msg}"
        );
        assert!(msg.ends_with("leave it empty to log to stdout"), "{msg}");
    }
}
