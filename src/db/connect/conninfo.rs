//! Connection strings, taken apart the way tokio-postgres reads them: a `postgres://` URL or
//! `key=value` conninfo. The parameters tokio-postgres does not know (libpq's TLS modes and
//! files, `passfile`) are taken out for [`super::resolve`]; the rest goes to
//! `tokio_postgres::Config`. The same tokenizer removes passwords for [`redact`], so a quoted
//! password with spaces is removed whole.

use percent_encoding::percent_decode_str;

/// Parameters handled by this crate rather than by tokio-postgres.
const OURS: [&str; 5] = ["sslmode", "sslrootcert", "sslcert", "sslkey", "passfile"];

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
    let (hosts, path) = url.hosts_and_path.split_at(
        url.hosts_and_path
            .find('/')
            .unwrap_or(url.hosts_and_path.len()),
    );
    let chunks: Vec<&str> = hosts.split(',').collect();
    let ports: Vec<&str> = ports.split(',').map(str::trim).collect();
    let has_port = |c: &str| match c.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => c.contains(':'),
    };
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
fn quote(v: &str) -> String {
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
