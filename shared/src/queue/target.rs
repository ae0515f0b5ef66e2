//! Where Redis is: `REDIS_URL` (and `REDIS_CA_FILE`) read once into a [`RedisTarget`] that
//! hands out a client for the current master. A plain URL names one server; a Sentinel URL
//! names Sentinels, and every [`RedisTarget::client`] asks them again, so a process that
//! reconnects after a failover reaches the promoted replica rather than the old master.
//!
//! The forms (README, settings table):
//! - `redis://[[user]:password@]host[:port][/db]`: one server (ElastiCache's primary endpoint
//!   is one: its DNS name follows a Multi-AZ failover).
//! - `rediss://…`: the same over TLS; the server's certificate is checked against
//!   `REDIS_CA_FILE` when set, the platform's roots otherwise.
//! - `redis+sentinel://[[user]:password@]h1:26379,h2:26379,h3:26379/mymaster[/db]`: the master
//!   of the Sentinel service `mymaster` (port 26379 when left out). The user and password are
//!   the master's; the Sentinels are asked without one.
//! - `rediss+sentinel://…`: Sentinels and master both over TLS (their certificates must name
//!   the addresses the Sentinels announce, often IP addresses).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError, RedisResult, TlsMode};

use crate::settings::{ExposeSecret, QueueSettings};

/// The default Sentinel port, for a Sentinel address without one.
const SENTINEL_PORT: u16 = 26379;
/// How long asking the Sentinels for the master may take: they are asked one after another,
/// and then the named master is connected to check its role.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the queue's Redis is; cheap to clone.
#[derive(Clone)]
pub struct RedisTarget {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// One server; redis-rs reconnects to the same address (re-resolving its DNS name).
    /// Boxed: a `Client` is a few hundred bytes, the other variant two words.
    Direct(Box<redis::Client>),
    /// A Sentinel service; `SentinelClient` needs `&mut` to ask, hence the lock.
    Sentinel { sentinels: Arc<tokio::sync::Mutex<SentinelClient>>, db: i64 },
}

impl RedisTarget {
    /// Reads `REDIS_URL` and `REDIS_CA_FILE` (the file is read now, so a wrong path stops the
    /// process at start).
    pub fn new(queue: &QueueSettings) -> RedisResult<Self> {
        let url = queue.redis_url.expose_secret();
        // rustls picks its crypto provider by itself only while exactly one is built in; a
        // dependency that brought in aws-lc-rs as well would make every TLS connection panic.
        // Err: one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = queue.redis_ca_file.as_deref().map(read_ca).transpose()?;
        let kind = match SentinelUrl::parse(url)? {
            Some(sentinel) => sentinel.build(ca)?,
            None => Kind::Direct(Box::new(direct(url, ca)?)),
        };
        Ok(Self { kind })
    }

    /// Whether the master is found through Sentinels (and may move).
    pub fn follows_sentinels(&self) -> bool {
        matches!(self.kind, Kind::Sentinel { .. })
    }

    /// The one server's client, when there are no Sentinels to ask.
    pub(crate) fn direct_client(&self) -> Option<&redis::Client> {
        match &self.kind {
            Kind::Direct(client) => Some(client),
            Kind::Sentinel { .. } => None,
        }
    }

    /// The database number commands run against.
    pub fn db(&self) -> i64 {
        match &self.kind {
            Kind::Direct(client) => client.get_connection_info().redis_settings().db(),
            Kind::Sentinel { db, .. } => *db,
        }
    }

    /// A client for the master as of now: the one server, or whichever server the Sentinels
    /// name (after checking it says it is a master).
    pub async fn client(&self) -> RedisResult<redis::Client> {
        match &self.kind {
            Kind::Direct(client) => Ok((**client).clone()),
            Kind::Sentinel { sentinels, .. } => {
                let mut sentinels = sentinels.lock().await;
                tokio::time::timeout(RESOLVE_TIMEOUT, sentinels.async_get_client()).await.map_err(
                    |_| {
                        RedisError::from((
                            ErrorKind::Io,
                            "no Sentinel named a reachable master in time",
                        ))
                    },
                )?
            }
        }
    }
}

fn invalid(message: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, message, detail))
}

fn read_ca(path: &Path) -> RedisResult<redis::TlsCertificates> {
    let pem = std::fs::read(path)
        .map_err(|e| invalid("REDIS_CA_FILE cannot be read", format!("{}: {e}", path.display())))?;
    Ok(redis::TlsCertificates { client_tls: None, root_cert: Some(pem) })
}

fn direct(url: &str, ca: Option<redis::TlsCertificates>) -> RedisResult<redis::Client> {
    // The URL is a secret (it may hold the password): the error says what to look for, and
    // not where, so it never shows a part of it.
    url.into_connection_info().map_err(|_| {
        invalid(
            "REDIS_URL is not a Redis URL",
            "redis://[[user]:password@]host[:port][/db] or rediss://…; a password or token \
             holding any of : / ? # [ ] @ % must have it percent-encoded (# as %23)"
                .to_owned(),
        )
    })?;
    match ca {
        None => redis::Client::open(url),
        Some(ca) if url.starts_with("rediss://") => redis::Client::build_with_tls(url, ca),
        Some(_) => Err(invalid(
            "REDIS_CA_FILE is set but REDIS_URL does not use TLS",
            "use rediss:// or rediss+sentinel://, or unset REDIS_CA_FILE".to_owned(),
        )),
    }
}

/// A `redis+sentinel://` or `rediss+sentinel://` URL, taken apart.
#[derive(Debug, PartialEq)]
struct SentinelUrl {
    tls: bool,
    /// `(host, port)` of each Sentinel.
    sentinels: Vec<(String, u16)>,
    service: String,
    db: i64,
    username: Option<String>,
    password: Option<String>,
}

impl SentinelUrl {
    /// `None` when `url` is not a Sentinel URL at all.
    fn parse(url: &str) -> RedisResult<Option<Self>> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
            (true, rest)
        } else {
            return Ok(None);
        };
        let form = "redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]";
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let sentinels = hosts
            .split(',')
            .map(|host| sentinel_address(host.trim()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("REDIS_URL names a Sentinel badly", form.to_owned()))?;
        let mut segments = path.split('/');
        let service = segments.next().unwrap_or_default().to_owned();
        if service.is_empty() {
            return Err(invalid("REDIS_URL names no Sentinel service", form.to_owned()));
        }
        let db = match segments.next() {
            None | Some("") => 0,
            Some(db) => db
                .parse()
                .map_err(|_| invalid("REDIS_URL's database is not a number", form.to_owned()))?,
        };
        if segments.any(|s| !s.is_empty()) {
            return Err(invalid("REDIS_URL has more path than service/db", form.to_owned()));
        }
        // redis-rs's own URL parser reads (and percent-decodes) the user and password.
        let (username, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => {
                let info = format!("redis://{userinfo}@localhost").into_connection_info()?;
                let settings = info.redis_settings();
                (settings.username().map(str::to_owned), settings.password().map(str::to_owned))
            }
        };
        Ok(Some(Self { tls, sentinels, service, db, username, password }))
    }

    fn build(self, ca: Option<redis::TlsCertificates>) -> RedisResult<Kind> {
        if ca.is_some() && !self.tls {
            return Err(invalid(
                "REDIS_CA_FILE is set but REDIS_URL does not use TLS",
                "use rediss+sentinel://, or unset REDIS_CA_FILE".to_owned(),
            ));
        }
        let tls = self.tls;
        let addresses = self.sentinels.into_iter().map(|(host, port)| {
            if tls {
                ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None }
            } else {
                ConnectionAddr::Tcp(host, port)
            }
        });
        let mut builder =
            SentinelClientBuilder::new(addresses, &self.service, SentinelServerType::Master)?
                .set_client_to_redis_db(self.db);
        if let Some(username) = &self.username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password);
        }
        if tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(ca) = ca {
                builder = builder
                    .set_client_to_redis_certificates(ca.clone())
                    .set_client_to_sentinel_certificates(ca);
            }
        }
        Ok(Kind::Sentinel {
            sentinels: Arc::new(tokio::sync::Mutex::new(builder.build()?)),
            db: self.db,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn sentinel_address(text: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => SENTINEL_PORT,
            None => return None,
        };
        (host, port)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (text, SENTINEL_PORT),
        }
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> SentinelUrl {
        SentinelUrl::parse(url).unwrap().unwrap()
    }

    #[test]
    fn a_sentinel_url_names_every_sentinel_and_the_service() {
        let url = parse("redis+sentinel://h1:26379,h2:26380,h3/mymaster");
        assert!(!url.tls);
        assert_eq!(
            url.sentinels,
            [("h1".into(), 26379), ("h2".into(), 26380), ("h3".into(), SENTINEL_PORT)]
        );
        assert_eq!((url.service.as_str(), url.db), ("mymaster", 0));
        assert_eq!((url.username, url.password), (None, None));
    }

    #[test]
    fn a_sentinel_url_may_carry_a_db_a_password_and_tls() {
        let url = parse("rediss+sentinel://app:p%40ss@[::1]:26379,10.0.0.2/cache/3");
        assert!(url.tls);
        assert_eq!(url.sentinels, [("::1".into(), 26379), ("10.0.0.2".into(), SENTINEL_PORT)]);
        assert_eq!((url.service.as_str(), url.db), ("cache", 3));
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("p@ss"), "percent-decoded");
        let url = parse("redis+sentinel://:secret@h1/mymaster/");
        assert_eq!((url.username, url.password.as_deref()), (None, Some("secret")));
    }

    #[test]
    fn other_urls_are_not_sentinel_urls() {
        assert_eq!(SentinelUrl::parse("redis://h1:6379/0").unwrap(), None);
        assert_eq!(SentinelUrl::parse("rediss://h1:6379").unwrap(), None);
    }

    #[test]
    fn a_bad_sentinel_url_says_what_is_wrong() {
        for (url, says) in [
            ("redis+sentinel://h1:26379", "no Sentinel service"),
            ("redis+sentinel://h1:26379/", "no Sentinel service"),
            ("redis+sentinel://h1:port/mymaster", "names a Sentinel badly"),
            ("redis+sentinel://h1,,h2/mymaster", "names a Sentinel badly"),
            ("redis+sentinel://h1/mymaster/zero", "not a number"),
            ("redis+sentinel://h1/mymaster/0/x", "more path"),
        ] {
            let error = SentinelUrl::parse(url).unwrap_err().to_string();
            assert!(error.contains(says), "{url}: {error}");
        }
    }

    #[test]
    fn a_ca_file_needs_a_tls_url() {
        let ca = Some(redis::TlsCertificates { client_tls: None, root_cert: Some(Vec::new()) });
        let error = direct("redis://127.0.0.1:6379", ca.clone()).unwrap_err().to_string();
        assert!(error.contains("REDIS_CA_FILE"), "{error}");
        let error = parse("redis+sentinel://h1/m").build(ca).err().unwrap().to_string();
        assert!(error.contains("REDIS_CA_FILE"), "{error}");
    }
}
