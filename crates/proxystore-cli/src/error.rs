//! The one error type of the binary: a line for stderr and an exit code.

use proxystore::Error;

/// A failure to report: one line on stderr and an exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let code = if matches!(e, Error::InvalidKey { .. }) {
            2
        } else {
            1
        };
        CliError::new(code, e.to_string())
    }
}
