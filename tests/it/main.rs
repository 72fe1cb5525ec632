//! MailLaser's integration tests, in one binary: each module is one family
//! (`cargo test --test it -- spool::` runs one). They drive a real server on
//! loopback ports, the `mail-laser` binary, and real clients and servers
//! (Postfix, swaks, smtplib, Prometheus, moto, dnsmasq, Django with
//! django-anymail; Python, Node.js and Java run the signature examples). A
//! test whose external tool is missing prints one `skipped:` line and
//! passes, unless
//! `MAIL_LASER_REQUIRE_TOOLS=1` is set (`scripts/test` installs the tools).

#[macro_use]
mod common;

mod access;
mod architecture;
mod attachments;
mod authentication;
mod binary;
mod chunking;
mod clients;
mod deploy_configs;
mod dialogue;
mod formats;
mod http;
mod memory;
mod pace;
mod policy;
mod postfix;
mod prometheus;
mod properties;
mod python_smtplib;
mod routes;
mod routes_live;
mod schema;
mod shared_queue;
mod signing_examples;
mod spool;
mod spool_cli;
mod spool_stores;
mod store;
mod swaks;
mod traces;
mod webhook;
