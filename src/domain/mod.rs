//! The domain: the greeting ([`greet`]: parse, validate, render) and how a failure
//! is told to the client ([`problem`]: RFC 9457 problem details).

pub mod greet;
pub mod problem;
