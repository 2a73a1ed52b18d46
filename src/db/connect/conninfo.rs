//! Connection strings, taken apart the way tokio-postgres reads them: a `postgres://` URL or
//! `key=value` conninfo. The parameters tokio-postgres does not know (libpq's TLS modes and
//! files, `passfile`, `service`) are taken out for [`super::resolve`]; the rest goes to
//! `tokio_postgres::Config`. A service's settings are added with [`with_settings`], for the
//! keys [`given_keys`] says the string leaves unset. The same tokenizer removes passwords for [`redact`], so a quoted
//! password with spaces is removed whole.

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Parameters handled by this crate rather than by tokio-postgres.
pub const OURS: [&str; 6] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "passfile",
    "service",
];

/// A connection string split in two.
#[derive(Debug, Default)]
pub struct Split {
    /// The string without [`OURS`], for `tokio_postgres::Config::from_str`.
    pub rest: String,
    /// Our parameters, decoded, in order of appearance.
    pub ours: Vec<(String, String)>,
}

impl Split {
    /// The last value given for `key`, as libpq takes it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.ours
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `conn`. Errors never quote the string, which may hold a password.
pub fn split(conn: &str) -> Result<Split, String> {
    match Url::parse(conn) {
        Some(url) => {
            let mut out = Split::default();
            let mut kept = Vec::new();
            for param in url.params() {
                let (key, value) = param.split_once('=').ok_or("unterminated parameter")?;
                let key = decode(key)?;
                if OURS.contains(&key.as_str()) {
                    out.ours.push((key, decode(value)?));
                } else {
                    kept.push(param);
                }
            }
            out.rest = url.with_params(url.userinfo, &kept);
            Ok(out)
        }
        None => {
            let mut out = Split::default();
            let mut kept = Vec::new();
            for (key, value) in pairs(conn)? {
                if OURS.contains(&key) {
                    out.ours.push((key.to_string(), value));
                } else {
                    kept.push(format!("{key}={}", quote(&value)));
                }
            }
            out.rest = kept.join(" ");
            Ok(out)
        }
    }
}

/// `conn` with `ports` (PGPORT: one port, or one per host) given to the hosts of a
/// `postgres://` URL that names no port, as libpq does; tokio-postgres would give them 5432.
/// Anything else is returned as it is.
pub fn with_default_ports(conn: &str, ports: &str) -> String {
    let Some(url) = Url::parse(conn) else {
        return conn.to_string();
    };
    let (hosts, path) = url.split_hosts();
    let chunks: Vec<&str> = hosts.split(',').collect();
    let ports: Vec<&str> = ports.split(',').map(str::trim).collect();
    let port_param = url
        .params()
        .any(|p| p.split_once('=').is_some_and(|(k, _)| k == "port"));
    if hosts.is_empty()
        || port_param
        || chunks.iter().any(|c| has_port(c))
        || !(ports.len() == 1 || ports.len() == chunks.len())
    {
        return conn.to_string();
    }
    let hosts: Vec<String> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c}:{}", ports[i.min(ports.len() - 1)]))
        .collect();
    let params: Vec<&str> = url.params().collect();
    Url {
        hosts_and_path: &format!("{}{path}", hosts.join(",")),
        ..url
    }
    .with_params(url.userinfo, &params)
}

/// The parameters `conn` sets, as libpq counts them: every `key=value` of a conninfo string
/// or of a URL's query, and in a URL `user` and `password` for a non-empty user name and
/// password, `host` for any host, `port` for any host's port, `dbname` for a non-empty path.
/// Errors never quote the string.
pub fn given_keys(conn: &str) -> Result<Vec<String>, String> {
    let Some(url) = Url::parse(conn) else {
        return Ok(pairs(conn)?
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect());
    };
    let mut keys = Vec::new();
    if let Some(info) = url.userinfo {
        let (user, password) = info.split_once(':').unwrap_or((info, ""));
        if !user.is_empty() {
            keys.push("user".to_string());
        }
        if !password.is_empty() {
            keys.push("password".to_string());
        }
    }
    let (hosts, path) = url.split_hosts();
    if !hosts.is_empty() {
        keys.push("host".to_string());
    }
    if hosts.split(',').any(has_port) {
        keys.push("port".to_string());
    }
    if path.len() > 1 {
        keys.push("dbname".to_string());
    }
    for param in url.params() {
        let key = param.split_once('=').map_or(param, |(k, _)| k);
        keys.push(decode(key)?);
    }
    Ok(keys)
}

/// `conn` with `settings` added, for keys it does not set ([`given_keys`]): to a conninfo
/// string as `key=value` pairs, to a URL as query parameters, except that a `port` goes to
/// the URL's hosts when it has some (tokio-postgres gives a host without one 5432).
pub fn with_settings(conn: &str, settings: &[(&str, &str)]) -> String {
    let Some(url) = Url::parse(conn) else {
        let mut out = conn.trim().to_string();
        for (key, value) in settings {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("{key}={}", quote(value)));
        }
        return out;
    };
    let mut out = conn.to_string();
    let mut added = Vec::new();
    for &(key, value) in settings {
        if key == "port" && !url.split_hosts().0.is_empty() {
            let ported = with_default_ports(&out, value);
            if ported != out {
                out = ported;
                continue;
            }
        }
        let encode = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        added.push(format!("{}={}", encode(key), encode(value)));
    }
    if !added.is_empty() {
        let url = Url::parse(&out).expect("still a URL");
        let mut params: Vec<&str> = url.params().collect();
        params.extend(added.iter().map(String::as_str));
        out = url.with_params(url.userinfo, &params);
    }
    out
}

/// Whether a host of a URL (`h`, `h:5`, `[::1]`, `[::1]:5`) names a port.
fn has_port(chunk: &str) -> bool {
    match chunk.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => chunk.contains(':'),
    }
}

/// A connection string with its password removed, for anything that is stored or shown:
/// `postgres://u:pw@h/db` → `postgres://u@h/db`, `host=h password='p w'` → `host=h`.
/// A string that does not parse is replaced whole: it may hold a password anywhere.
pub fn redact(conn: &str) -> String {
    const UNPARSABLE: &str = "(unparsable connection string)";
    match Url::parse(conn) {
        Some(url) => {
            let user = url
                .userinfo
                .map(|u| u.split_once(':').map_or(u, |(u, _)| u));
            let kept: Vec<&str> = url
                .params()
                .filter(|p| {
                    let key = p.split_once('=').map_or(*p, |(k, _)| k);
                    decode(key).map_or(true, |k| k != "password")
                })
                .collect();
            url.with_params(user, &kept)
        }
        None => match pairs(conn) {
            Ok(pairs) => pairs
                .iter()
                .filter(|(k, _)| *k != "password")
                .map(|(k, v)| format!("{k}={}", quote(v)))
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => UNPARSABLE.into(),
        },
    }
}

/// A `postgres://` URL cut where tokio-postgres cuts it: the user info runs to the first `@`,
/// the parameters start at the first `?` after it.
struct Url<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    hosts_and_path: &'a str,
    query: Option<&'a str>,
}

impl<'a> Url<'a> {
    fn parse(conn: &'a str) -> Option<Url<'a>> {
        let scheme = ["postgres://", "postgresql://"]
            .into_iter()
            .find(|p| conn.starts_with(p))?;
        let rest = &conn[scheme.len()..];
        let (userinfo, rest) = match rest.split_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (hosts_and_path, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        Some(Url {
            scheme,
            userinfo,
            hosts_and_path,
            query,
        })
    }

    /// The hosts (up to the first `/`) and the path (from it, `/` included).
    fn split_hosts(&self) -> (&'a str, &'a str) {
        let at = self
            .hosts_and_path
            .find('/')
            .unwrap_or(self.hosts_and_path.len());
        self.hosts_and_path.split_at(at)
    }

    fn params(&self) -> impl Iterator<Item = &'a str> {
        self.query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
    }

    fn with_params(&self, userinfo: Option<&str>, params: &[&str]) -> String {
        let mut out = self.scheme.to_string();
        if let Some(u) = userinfo {
            out.push_str(u);
            out.push('@');
        }
        out.push_str(self.hosts_and_path);
        if !params.is_empty() {
            out.push('?');
            out.push_str(&params.join("&"));
        }
        out
    }
}

fn decode(s: &str) -> Result<String, String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "a parameter is not valid UTF-8 after percent-decoding".into())
}

/// `key=value` pairs with tokio-postgres's (and libpq's) rules: blanks around `=`, values
/// bare or in single quotes, `\` escaping the next character.
fn pairs(conn: &str) -> Result<Vec<(&str, String)>, String> {
    let mut out = Vec::new();
    let mut rest = conn.trim_start();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let key = &rest[..end];
        rest = rest[end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("expected `=` after `{key}`"))?
            .trim_start();
        let (value, after) = value(rest).ok_or_else(|| format!("bad value for `{key}`"))?;
        if key.is_empty() {
            return Err("a parameter without a name".into());
        }
        out.push((key, value));
        rest = after.trim_start();
    }
    Ok(out)
}

/// One value at the start of `s`, and what follows it.
fn value(s: &str) -> Option<(String, &str)> {
    let quoted = s.starts_with('\'');
    let mut out = String::new();
    let mut chars = s.char_indices().skip(usize::from(quoted));
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.extend(chars.next().map(|(_, c)| c)),
            '\'' if quoted => return Some((out, &s[i + 1..])),
            c if c.is_whitespace() && !quoted => return Some((out, &s[i..])),
            c => out.push(c),
        }
    }
    (!quoted && !out.is_empty()).then_some((out, ""))
}

/// A conninfo value, quoted when it must be.
pub fn quote(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_of_ours_are_taken_out_and_decoded() {
        let s = split(
            "postgres://u:p%40ss@h:5/db?sslmode=verify-full&application_name=x\
             &sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(s.rest, "postgres://u:p%40ss@h:5/db?application_name=x");
        assert_eq!(s.get("sslmode"), Some("verify-full"));
        assert_eq!(s.get("sslrootcert"), Some("/tmp/ca.pem"));
        assert_eq!(s.get("sslkey"), None);
        let bare = split("postgresql://h/db?sslmode=require").unwrap();
        assert_eq!(bare.rest, "postgresql://h/db");
    }

    #[test]
    fn conninfo_parameters_of_ours_are_taken_out_and_the_rest_requoted() {
        let s = split("host=h  sslmode = 'verify-ca' password='a b\\'c' sslcert=/x\\ y").unwrap();
        assert_eq!(s.rest, "host=h password='a b\\'c'");
        assert_eq!(s.get("sslmode"), Some("verify-ca"));
        assert_eq!(s.get("sslcert"), Some("/x y"));
        assert!(split("host=h sslmode").is_err());
        assert!(split("host='h").is_err());
        let err = split("password=sekrit host").unwrap_err();
        assert!(!err.contains("sekrit"), "{err}");
    }

    #[test]
    fn pgport_reaches_url_hosts_that_name_no_port() {
        let d = |url| with_default_ports(url, "6543");
        assert_eq!(d("postgres://u:p@h/db?x=1"), "postgres://u:p@h:6543/db?x=1");
        assert_eq!(
            d("postgres://h1,[::1]/db"),
            "postgres://h1:6543,[::1]:6543/db"
        );
        assert_eq!(
            with_default_ports("postgres://a,b", "1,2"),
            "postgres://a:1,b:2"
        );
        for kept in [
            "postgres://h:5/db",
            "postgres://[::1]:5/db",
            "postgres:///db",
            "postgres://h/db?port=7",
            "host=h",
        ] {
            assert_eq!(d(kept), kept);
        }
        assert_eq!(
            with_default_ports("postgres://a,b", "1,2,3"),
            "postgres://a,b"
        );
    }

    #[test]
    fn given_keys_count_what_a_url_sets_in_its_parts_as_libpq_does() {
        let keys = |conn| given_keys(conn).unwrap();
        assert_eq!(
            keys("host=h  dbname = 'd b' service=s"),
            ["host", "dbname", "service"]
        );
        assert_eq!(
            keys("postgres://u:pw@h:5/db?service=s&sslmode=disable"),
            [
                "user", "password", "host", "port", "dbname", "service", "sslmode"
            ]
        );
        assert_eq!(keys("postgres://h,[::1]/db"), ["host", "dbname"]);
        assert_eq!(keys("postgres://h,[::1]:7"), ["host", "port"]);
        // An empty user, password or path sets nothing.
        assert_eq!(keys("postgresql://:@/?ser%76ice=s"), ["service"]);
        assert_eq!(keys("postgres://"), Vec::<String>::new());
        assert_eq!(keys(""), Vec::<String>::new());
        let err = given_keys("password=sekrit host").unwrap_err();
        assert!(!err.contains("sekrit"), "{err}");
    }

    #[test]
    fn settings_are_added_as_pairs_or_url_parameters() {
        let add = [("dbname", "d b"), ("port", "6000"), ("host", "/run/pg")];
        assert_eq!(
            with_settings("user=u ", &add),
            "user=u dbname='d b' port=6000 host=/run/pg"
        );
        assert_eq!(with_settings("", &add[..1]), "dbname='d b'");
        assert_eq!(
            with_settings("postgres:///?service=s", &add),
            "postgres:///?service=s&dbname=d%20b&port=6000&host=%2Frun%2Fpg"
        );
        // A URL's hosts take the port, as PGPORT's.
        assert_eq!(
            with_settings("postgres://u@h1,h2/db", &[("port", "6000"), ("user", "x")]),
            "postgres://u@h1:6000,h2:6000/db?user=x"
        );
        assert_eq!(
            with_settings("postgres://a,b/db?x=1", &[("port", "1,2")]),
            "postgres://a:1,b:2/db?x=1"
        );
    }

    #[test]
    fn redact_removes_passwords_from_urls_and_conninfo() {
        assert_eq!(
            redact("postgres://u:pw@h:5/db?sslmode=disable"),
            "postgres://u@h:5/db?sslmode=disable"
        );
        assert_eq!(redact("postgres://u@h/db?password=pw"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://h/db?pass%77ord=pw&sslmode=disable"),
            "postgres://h/db?sslmode=disable"
        );
        assert_eq!(redact("postgres://u:p/w?x@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgresql:///db"), "postgresql:///db");
        assert_eq!(redact("host=h password=pw dbname=d"), "host=h dbname=d");
        assert_eq!(
            redact("host=h password = 'p w' dbname=d"),
            "host=h dbname=d"
        );
        assert_eq!(
            redact("host=h password='unterminated"),
            "(unparsable connection string)"
        );
    }
}
