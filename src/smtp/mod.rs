//! The SMTP side: bytes → frames (codec) → dialogue (session) → connection
//! and accept loop.

pub mod codec;
pub mod command;
pub mod connection;
pub mod reply;
pub mod server;
pub mod session;
mod transport;
