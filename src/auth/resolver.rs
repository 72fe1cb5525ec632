//! The DNS resolver the checks ask: the servers `MAIL_LASER_DMARC_DNS_SERVERS`
//! names (UDP, then TCP for a truncated answer), or the system's.

use std::time::Duration;

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::system_conf::read_system_conf;

use super::{AuthError, AuthSettings};

/// A single query never waits less than this, whatever the deadline.
const MIN_QUERY_TIMEOUT: Duration = Duration::from_millis(500);

pub(super) fn build(settings: &AuthSettings) -> Result<MessageAuthenticator, AuthError> {
    let (config, mut options) = if settings.dns_servers.is_empty() {
        read_system_conf().map_err(AuthError::SystemResolver)?
    } else {
        let servers = settings
            .dns_servers
            .iter()
            .map(|server| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut connection| {
                        connection.port = server.port();
                        connection
                    })
                    .collect();
                NameServerConfig::new(server.ip(), true, connections)
            })
            .collect();
        (
            ResolverConfig::from_name_servers(servers),
            ResolverOpts::default(),
        )
    };
    // Two tries of a lost UDP packet fit in the message's one deadline,
    // which bounds everything anyway (check.rs).
    options.timeout = (settings.dns_timeout / 2).max(MIN_QUERY_TIMEOUT);
    options.attempts = 2;
    // Mail domains are never in /etc/hosts; the answer must be the DNS's.
    options.use_hosts_file = ResolveHosts::Never;
    MessageAuthenticator::new(config, options).map_err(AuthError::Resolver)
}
