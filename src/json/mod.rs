//! JSON in and out of the hot path: [`parse`] finds the `name` of a request body,
//! [`escape`] writes strings into response bodies.

pub mod escape;
pub mod parse;

pub use escape::{max_escaped_len, write_escaped};
pub use parse::{name_of, JsonError, NameField};
