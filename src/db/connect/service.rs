//! The connection service file (`pg_service.conf`), read as libpq reads it
//! (`parseServiceInfo` and `parseServiceFile` in libpq's `fe-connect.c`):
//!
//! - the per-user file is `PGSERVICEFILE`, else `~/.pg_service.conf` if it exists; the
//!   system-wide file is `pg_service.conf` in `PGSYSCONFDIR`, else in Debian's sysconfdir
//!   (`/etc/postgresql-common`), if it exists. The user file is read first; the system file
//!   only when the user file has no such service;
//! - `[name]` starts a section; `key=value` lines set a connection parameter; blank lines and
//!   `#` comments are skipped; white space at the start and end of a line is ignored, and
//!   nothing else is: the key is all before the first `=`, the value all after it, quotes
//!   included;
//! - only the lines of the service's own section are checked (libpq reads no further than its
//!   end): there, a line without `=`, or whose key is not one of libpq's keywords, is a
//!   syntax error, and a `service` key is refused as nested; any line up to there that fills
//!   libpq's 1024-byte line buffer (1023 bytes or more, its newline included) is too long;
//! - the first value of a key in the section is the one that counts (libpq never replaces a
//!   value it has).
//!
//! Errors are libpq's, without its trailing newline. They name files, lines and keys, never a
//! value: a value may be a password.

use std::path::{Path, PathBuf};

/// libpq's compiled-in sysconfdir on Debian (`pg_config --sysconfdir`), where the system-wide
/// file is looked for when `PGSYSCONFDIR` is not set.
pub const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// libpq reads a line with `fgets` into 1024 bytes and refuses one that fills the buffer.
const LINE_BUFFER: usize = 1024;

/// libpq's connection keywords (PostgreSQL 15, and those 16 and 17 added), the keys a service
/// may set. `service` is one too, refused inside a service as nested. Which of them this tool
/// supports is for [`super::resolve`] to say, as it does for a connection string.
const KEYWORDS: [&str; 41] = [
    "service",
    "user",
    "password",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "dbname",
    "host",
    "hostaddr",
    "port",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "sslmode",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "replication",
    "target_session_attrs",
    // PostgreSQL 16 and 17.
    "require_auth",
    "load_balance_hosts",
    "sslcertmode",
    "gssdelegation",
    "sslnegotiation",
];

/// One `key=value` line of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: String,
    /// Its line number in the file, from 1.
    pub line: usize,
}

/// A service found: the file it is in and its settings, each key once.
#[derive(Debug)]
pub struct Service {
    pub file: PathBuf,
    pub settings: Vec<Setting>,
}

impl Service {
    /// `service file "FILE", line N`, for a message about one of its settings.
    pub fn place(&self, setting: &Setting) -> String {
        format!(
            "service file \"{}\", line {}",
            self.file.display(),
            setting.line
        )
    }
}

/// Finds the service `name` where libpq looks for it, reading the variables (`PGSERVICEFILE`,
/// `HOME`, `PGSYSCONFDIR`) through `env`. A service defined in neither file is an error.
pub fn lookup(name: &str, env: &impl Fn(&str) -> Option<String>) -> Result<Service, String> {
    // PGSERVICEFILE must exist (libpq: "service file … not found"); ~/.pg_service.conf may not.
    let user_file = match env("PGSERVICEFILE") {
        Some(file) => Some(PathBuf::from(file)),
        None => env("HOME")
            .map(|home| Path::new(&home).join(".pg_service.conf"))
            .filter(|file| file.exists()),
    };
    if let Some(file) = user_file
        && let Some(settings) = read(&file, name)?
    {
        return Ok(Service { file, settings });
    }
    let dir = env("PGSYSCONFDIR").unwrap_or_else(|| DEFAULT_SYSCONFDIR.into());
    let file = Path::new(&dir).join("pg_service.conf");
    if file.exists()
        && let Some(settings) = read(&file, name)?
    {
        return Ok(Service { file, settings });
    }
    Err(format!("definition of service \"{name}\" not found"))
}

/// The settings of the service `name` in `file`, or `None` if the file has no such section.
fn read(file: &Path, name: &str) -> Result<Option<Vec<Setting>>, String> {
    let text = std::fs::read(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("service file \"{}\" not found", file.display())
        }
        _ => format!("cannot read service file \"{}\": {e}", file.display()),
    })?;
    parse(&text, name, &file.display().to_string())
}

/// The settings of the service `name` in `text`, the contents of the file named `file`.
pub fn parse(text: &[u8], name: &str, file: &str) -> Result<Option<Vec<Setting>>, String> {
    let syntax_error =
        |line: usize| format!("syntax error in service file \"{file}\", line {line}");
    let mut found = false;
    let mut settings: Vec<Setting> = Vec::new();
    let mut rest = text;
    let mut number = 0;
    while !rest.is_empty() {
        number += 1;
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (raw, after) = rest.split_at(end);
        rest = after;
        if raw.len() >= LINE_BUFFER - 1 {
            return Err(format!("line {number} too long in service file \"{file}\""));
        }
        let line = trim(raw);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        if line[0] == b'[' {
            if found {
                break;
            }
            // As libpq compares: the name, then `]` (whatever follows it).
            found =
                line[1..].starts_with(name.as_bytes()) && line.get(name.len() + 1) == Some(&b']');
            continue;
        }
        if !found {
            continue;
        }
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            return Err(syntax_error(number));
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        if key == b"service" {
            return Err(format!(
                "nested service specifications not supported in service file \"{file}\", \
                 line {number}"
            ));
        }
        let Some(key) = std::str::from_utf8(key)
            .ok()
            .filter(|key| KEYWORDS.contains(key))
        else {
            return Err(syntax_error(number));
        };
        let value = std::str::from_utf8(value).map_err(|_| {
            format!("service file \"{file}\", line {number}: the value of {key} is not UTF-8")
        })?;
        if settings.iter().all(|s| s.key != key) {
            settings.push(Setting {
                key: key.to_string(),
                value: value.to_string(),
                line: number,
            });
        }
    }
    Ok(found.then_some(settings))
}

/// `line` without the white space (C's `isspace`) at its start and end.
fn trim(line: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = line.iter().position(|b| !space(b)).unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |i| i + 1);
    &line[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const FILE: &str = "/etc/svc.conf";

    fn settings(text: &str, name: &str) -> Option<Vec<(String, String, usize)>> {
        parse(text.as_bytes(), name, FILE)
            .unwrap()
            .map(|s| s.into_iter().map(|s| (s.key, s.value, s.line)).collect())
    }

    fn error(text: &str, name: &str) -> String {
        parse(text.as_bytes(), name, FILE).unwrap_err()
    }

    fn owned(pairs: &[(&str, &str, usize)]) -> Option<Vec<(String, String, usize)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v, n)| (k.to_string(), v.to_string(), *n))
                .collect(),
        )
    }

    #[test]
    fn sections_keys_comments_and_blank_lines_as_libpq_reads_them() {
        let text = "# a comment\n\
                    \n\
                    [other]\n\
                    host=elsewhere\n\
                    [mydb]\n\
                    \x20 host=somehost \r\n\
                    \tport=5433\n\
                    # user=commented\n\
                    \n\
                    user=admin\n\
                    password='a b' # not a comment\n\
                    dbname=\n\
                    [after]\n\
                    host=later\n";
        assert_eq!(
            settings(text, "mydb"),
            owned(&[
                ("host", "somehost", 6),
                ("port", "5433", 7),
                ("user", "admin", 10),
                // No quoting and no comments after a value: all after `=` is the value.
                ("password", "'a b' # not a comment", 11),
                ("dbname", "", 12),
            ])
        );
        assert_eq!(settings(text, "other"), owned(&[("host", "elsewhere", 4)]));
        assert_eq!(settings(text, "none"), None);
        assert_eq!(settings(text, "my"), None);
        assert_eq!(settings("[empty]\n[x]\nhost=h", "empty"), Some(vec![]));
        // The last line needs no newline; the first value of a key counts, and the first
        // section of the name (libpq stops at the end of the section it read).
        assert_eq!(
            settings("[s]\nport=1\nport=2\n[s]\nport=3", "s"),
            owned(&[("port", "1", 2)])
        );
    }

    #[test]
    fn a_bad_line_in_the_service_is_a_syntax_error_naming_file_and_line() {
        let syntax = |line: usize| format!("syntax error in service file \"{FILE}\", line {line}");
        assert_eq!(error("[s]\nhost=h\nnonsense\n", "s"), syntax(3));
        // The key is all before `=`: blanks around it make an unknown keyword.
        assert_eq!(error("\n[s]\nhost = h\n", "s"), syntax(3));
        assert_eq!(error("[s]\nhots=h\n", "s"), syntax(2));
        assert_eq!(error("[s]\n=h\n", "s"), syntax(2));
        // Lines outside the service's section are not read (nor are they in libpq).
        assert_eq!(
            settings("nonsense\n[t]\nbad line\n[s]\nhost=h\n[u]\nworse", "s"),
            owned(&[("host", "h", 5)])
        );
        assert_eq!(
            error("[s]\nhost=h\nservice=other\n", "s"),
            format!(
                "nested service specifications not supported in service file \"{FILE}\", line 3"
            )
        );
        let long = format!("# {}\n[s]\nhost=h\n", "x".repeat(1020));
        assert_eq!(
            error(&long, "s"),
            format!("line 1 too long in service file \"{FILE}\"")
        );
        let fits = format!("# {}\n[s]\nhost=h\n", "x".repeat(1019));
        assert_eq!(settings(&fits, "s"), owned(&[("host", "h", 3)]));
    }

    #[test]
    fn errors_never_carry_a_value() {
        for text in [
            "[s]\npassword=hunter2\nbad\n",
            "[s]\npassword=hunter2\nservice=hunter2\n",
            "[s]\npasswort=hunter2\n",
        ] {
            let err = error(text, "s");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = parse(b"[s]\npassword=hunter2\xff\n", "s", FILE).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    fn env_of(pairs: Vec<(&str, String)>) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        move |k| map.get(k).cloned()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("service_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        dir
    }

    fn hosts(service: &Service) -> Vec<&str> {
        service
            .settings
            .iter()
            .filter(|s| s.key == "host")
            .map(|s| s.value.as_str())
            .collect()
    }

    #[test]
    fn the_user_file_is_searched_first_then_the_system_file() {
        let dir = scratch("lookup");
        let home = dir.join("home");
        let etc = dir.join("etc");
        let user_file = dir.join("user.conf");
        std::fs::write(&user_file, "[both]\nhost=user\n[user]\nhost=u\n").unwrap();
        // Were the system file read for `both`, its syntax error would show.
        std::fs::write(
            etc.join("pg_service.conf"),
            "[both]\nhost=system\nbroken\n[system]\nhost=s\n",
        )
        .unwrap();
        std::fs::write(home.join(".pg_service.conf"), "[both]\nhost=home\n").unwrap();
        let path = |p: &Path| p.to_str().unwrap().to_string();
        let env = env_of(vec![
            ("PGSERVICEFILE", path(&user_file)),
            ("HOME", path(&home)),
            ("PGSYSCONFDIR", path(&etc)),
        ]);
        let found = lookup("both", &env).unwrap();
        assert_eq!(
            (found.file.as_path(), hosts(&found)),
            (user_file.as_path(), vec!["user"])
        );
        assert_eq!(
            found.place(&found.settings[0]),
            format!("service file \"{}\", line 2", user_file.display())
        );
        let found = lookup("system", &env).unwrap();
        assert_eq!(found.file, etc.join("pg_service.conf"));
        assert_eq!(hosts(&found), ["s"]);
        assert_eq!(
            lookup("nope", &env).unwrap_err(),
            "definition of service \"nope\" not found"
        );

        // Without PGSERVICEFILE, ~/.pg_service.conf is the user file.
        let env = env_of(vec![("HOME", path(&home)), ("PGSYSCONFDIR", path(&etc))]);
        assert_eq!(hosts(&lookup("both", &env).unwrap()), ["home"]);
        assert_eq!(hosts(&lookup("system", &env).unwrap()), ["s"]);
        // … when it exists; a PGSERVICEFILE that does not is an error, as in libpq.
        let env = env_of(vec![
            ("HOME", path(&dir.join("nohome"))),
            ("PGSYSCONFDIR", path(&etc)),
        ]);
        assert_eq!(hosts(&lookup("system", &env).unwrap()), ["s"]);
        let missing = dir.join("missing.conf");
        let env = env_of(vec![
            ("PGSERVICEFILE", path(&missing)),
            ("PGSYSCONFDIR", path(&etc)),
        ]);
        assert_eq!(
            lookup("system", &env).unwrap_err(),
            format!("service file \"{}\" not found", missing.display())
        );
        // A syntax error in the service's section of the file read is an error.
        let env = env_of(vec![("HOME", path(&dir)), ("PGSYSCONFDIR", path(&etc))]);
        assert_eq!(
            lookup("both", &env).unwrap_err(),
            format!(
                "syntax error in service file \"{}\", line 3",
                etc.join("pg_service.conf").display()
            )
        );
        // A system directory without the file: not found.
        let env = env_of(vec![("PGSYSCONFDIR", path(&home))]);
        assert_eq!(
            lookup("system", &env).unwrap_err(),
            "definition of service \"system\" not found"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
