//! certs-tool as a library: dev CAs, serving certificates, rotation (with CA-rotation overlap),
//! inspection and checks. The `certs-tool` binary is a thin shell over [`cli::run`]; the edge's
//! tests can use the same functions (for example [`layout::read_cert_set`] to read a
//! certificate directory consistently, or [`issue::issue`] to mint fixtures).
//!
//! Module map, in the order a certificate travels:
//! [`san`] parses names, [`keys`] makes keys, [`ca`] owns the CA directory, [`issue`] signs
//! leaves, [`rotate`] re-issues them, [`layout`] + [`atomic_write`] publish them, [`pem`] +
//! [`certinfo`] read them back, [`verify`] checks them with BoringSSL, [`inspect`] and
//! [`check`] report, [`cli`] wires it to the command line.

pub mod atomic_write;
pub mod ca;
pub mod certinfo;
pub mod check;
pub mod cli;
pub mod error;
pub mod inspect;
pub mod issue;
pub mod keys;
pub mod layout;
pub mod pem;
pub mod rotate;
pub mod san;
pub mod verify;

#[cfg(test)]
mod test_support;

pub use error::{CertsError, Result};
