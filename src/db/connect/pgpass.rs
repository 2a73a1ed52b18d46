//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`) with libpq's rules: lines of
//! `hostname:port:database:username:password`, a field of just `*` matches anything, `\`
//! escapes `:` and `\`, `#` starts a comment line, the first matching line wins. A file that
//! group or others may read is ignored with a warning, as libpq does.

use std::path::Path;

/// What one connection attempt is matched on.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub host: &'a str,
    pub port: &'a str,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password of the first line of `file` matching one of `keys` (tried in order), if the
/// file exists, is private and has one. Problems are warnings, never errors: libpq goes on
/// without the file too.
pub fn lookup(file: &Path, keys: &[Key<'_>]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(file).ok()?;
    if !meta.is_file() {
        tracing::warn!("password file {} is not a plain file", file.display());
        return None;
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access; permissions should be u=rw (0600) \
             or less: ignored",
            file.display()
        );
        return None;
    }
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!("cannot read password file {}: {e}", file.display());
            return None;
        }
    };
    keys.iter().find_map(|key| find(&text, key))
}

/// The password of the first line of `text` matching `key`.
pub fn find(text: &str, key: &Key<'_>) -> Option<String> {
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|line| {
            let fields = fields(line);
            let [host, port, db, user, password, ..] = fields.as_slice() else {
                return None;
            };
            let wanted = [key.host, key.port, key.database, key.user];
            [host, port, db, user]
                .iter()
                .zip(wanted)
                .all(|(field, want)| (field.text == "*" && !field.escaped) || field.text == want)
                .then(|| password.text.clone())
        })
}

struct Field {
    text: String,
    /// Whether any character was escaped: an escaped `\*` is a literal star.
    escaped: bool,
}

/// The fields of one line, split on unescaped `:`, with escapes removed.
fn fields(line: &str) -> Vec<Field> {
    let mut out = vec![Field {
        text: String::new(),
        escaped: false,
    }];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let field = out.last_mut().expect("never empty");
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    field.text.push(next);
                    field.escaped = true;
                }
            }
            ':' => out.push(Field {
                text: String::new(),
                escaped: false,
            }),
            c => field.text.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Key<'static> = Key {
        host: "db.example",
        port: "5432",
        database: "app",
        user: "alice",
    };

    #[test]
    fn first_matching_line_wins_and_stars_match_anything() {
        let text = "# comment\n\
                    other:5432:app:alice:nope\n\
                    db.example:5432:app:bob:nope\n\
                    db.example:*:app:alice:first\n\
                    *:*:*:*:second\n";
        assert_eq!(find(text, &KEY).as_deref(), Some("first"));
        assert_eq!(
            find(
                text,
                &Key {
                    user: "carol",
                    ..KEY
                }
            )
            .as_deref(),
            Some("second")
        );
        assert_eq!(find("db.example:5432:app:alice", &KEY), None);
        assert_eq!(find("", &KEY), None);
    }

    #[test]
    fn escapes_make_colons_and_backslashes_literal() {
        let text = "db.example:5432:app:alice:pa\\:ss\\\\word:ignored\r\n";
        assert_eq!(find(text, &KEY).as_deref(), Some("pa:ss\\word"));
        let host = Key {
            host: "/run/x:y",
            ..KEY
        };
        assert_eq!(
            find("/run/x\\:y:5432:app:alice:sock", &host).as_deref(),
            Some("sock")
        );
        // An escaped star is a star, not a wildcard.
        assert_eq!(find("\\*:5432:app:alice:x", &KEY), None);
        // A comment is a whole line starting with #, not a # inside a field.
        assert_eq!(
            find("db.example:5432:app:alice:#notacomment", &KEY).as_deref(),
            Some("#notacomment")
        );
    }

    #[test]
    fn a_file_others_may_read_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pgpass_test_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        std::fs::write(&file, "*:*:*:*:secret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&file, &[KEY]).as_deref(), Some("secret"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(lookup(&file, &[KEY]), None);
        assert_eq!(lookup(&dir.join("missing"), &[KEY]), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
