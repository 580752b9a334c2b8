//! Configuration errors as operators read them: one line that names the
//! variable, the flag and the value, instead of clap's several lines of usage.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;

use super::Config;

/// A configuration error ready to be printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", one_line(.0))]
    Clap(clap::Error),
    #[error("{0}")]
    Invalid(String),
}

impl ConfigError {
    /// `--help` and `--version` come through clap's error path but are not errors.
    pub(super) fn is_display(&self) -> bool {
        matches!(
            self,
            Self::Clap(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        )
    }
}

pub(super) fn exit_on_error(e: &ConfigError) -> ! {
    if let (true, ConfigError::Clap(e)) = (e.is_display(), e) {
        // Help and version go to stdout with exit 0.
        let _ = e.print();
        std::process::exit(0);
    }
    eprintln!("greeting-service: {e}");
    std::process::exit(2);
}

/// clap's message is several lines with usage hints; operators get one line that
/// names the variable, the flag and the value, built from the error's kind and
/// context (not from its text).
fn one_line(e: &clap::Error) -> String {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    let args = context(ContextKind::InvalidArg);
    let named: Vec<String> = args.iter().map(|a| setting_name(a)).collect();
    match e.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let value = context(ContextKind::InvalidValue).join(" ");
            let reason = match std::error::Error::source(e) {
                Some(source) => source.to_string(),
                None => format!(
                    "expected one of: {}",
                    context(ContextKind::ValidValue).join(", ")
                ),
            };
            format!("invalid value {value:?} for {}: {reason}", named.join(", "))
        }
        ErrorKind::MissingRequiredArgument => {
            format!("{} must be set as well", named.join(" and "))
        }
        kind => {
            let what = kind.as_str().unwrap_or("invalid configuration");
            match named.is_empty() {
                true => what.to_owned(),
                false => format!("{what}: {}", named.join(", ")),
            }
        }
    }
}

/// `--port <PORT>` becomes `PORT (--port)`, from the argument's own definition.
fn setting_name(arg: &str) -> String {
    let flag = arg.split_whitespace().next().unwrap_or(arg);
    let env = Config::command()
        .get_arguments()
        .find(|a| a.get_long().is_some_and(|l| flag == format!("--{l}")))
        .and_then(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned());
    match env {
        Some(env) => format!("{env} ({flag})"),
        None => flag.to_owned(),
    }
}
