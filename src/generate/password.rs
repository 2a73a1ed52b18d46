//! Password hashes a web framework verifies, in their standard string formats: bcrypt
//! (`$2b$`), Argon2id, scrypt and PBKDF2-SHA256 (PHC strings: `$argon2id$…`, `$scrypt$…`,
//! `$pbkdf2-sha256$…`) and SHA-512 crypt (`$6$`). The hashing is the RustCrypto and bcrypt
//! crates'; only the salt is chosen here, from the caller's seeded sequence, so the same
//! `--seed` gives the same hashes.

use argon2::password_hash::{PasswordHasher, SaltString};

use super::rng::Rng;
use crate::error::Error;

/// Which passwords the accounts get, and how they are hashed.
#[derive(Debug, Clone)]
pub struct Passwords {
    /// `None`: a random one per account (`--password random`).
    pub shared: Option<String>,
    pub hasher: Hasher,
}

/// Accounts hashed at a time, on every core, with random passwords.
const CHUNK: usize = 256;

/// Length of a random password (letters and digits).
const RANDOM_PASSWORD: usize = 16;

/// The accounts' logins, (password, hash), a chunk of accounts at a time: one shared
/// password hashed once, or a random password per account hashed on every core. Passwords
/// and salts come from a sequence of their own, so that every other column is the same with
/// or without them.
pub struct Logins {
    hasher: Hasher,
    secrets: Rng,
    shared: Option<(String, String)>,
    chunk: Vec<(String, String)>,
}

impl Logins {
    pub fn new(passwords: &Passwords, seed: u64) -> Logins {
        let mut secrets = Rng(seed ^ 0x005E_ED0F_5A17);
        let shared = passwords.shared.clone().map(|password| {
            let hash = passwords.hasher.hash(&password, secrets.salt());
            (password, hash)
        });
        Logins {
            hasher: passwords.hasher,
            secrets,
            shared,
            chunk: Vec::new(),
        }
    }

    /// Makes the logins of the next `take` accounts.
    fn next_chunk(&mut self, take: usize) {
        if self.shared.is_some() {
            return;
        }
        let plain: Vec<(String, [u8; 16])> = (0..take)
            .map(|_| (random_password(&mut self.secrets), self.secrets.salt()))
            .collect();
        let hashes = hash_all(&self.hasher, &plain);
        self.chunk = plain.into_iter().map(|(pw, _)| pw).zip(hashes).collect();
    }

    /// Account `i` of the chunk: its password and hash.
    fn get(&self, i: usize) -> &(String, String) {
        self.shared.as_ref().unwrap_or_else(|| &self.chunk[i])
    }
}

/// Calls `account` for each of `count` accounts in order (0-based), with its login when there
/// are `logins`: hashed a chunk at a time, `hashed` told how many accounts so far.
pub fn each_account<E>(
    count: u64,
    mut logins: Option<Logins>,
    hashed: &dyn Fn(u64),
    mut account: impl FnMut(u64, Option<&(String, String)>) -> Result<(), E>,
) -> Result<(), E> {
    let mut index = 0;
    while index < count {
        let take = (count - index).min(CHUNK as u64) as usize;
        if let Some(logins) = &mut logins {
            logins.next_chunk(take);
            hashed(index + take as u64);
        }
        for i in 0..take {
            account(index, logins.as_ref().map(|l| l.get(i)))?;
            index += 1;
        }
    }
    Ok(())
}

fn random_password(rng: &mut Rng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..RANDOM_PASSWORD)
        .map(|_| *rng.pick(ALNUM) as char)
        .collect()
}

/// The hashes of `plain` (password, salt), in order, computed on every core.
fn hash_all(hasher: &Hasher, plain: &[(String, [u8; 16])]) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = plain.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = plain
            .chunks(per)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(pw, salt)| hasher.hash(pw, *salt))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("hashing panicked"))
            .collect()
    })
}

/// A password hashing scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// `$2b$` (cost: 4 to 31, default 10)
    Bcrypt,
    /// PHC `$argon2id$v=19$m=19456,t=2,p=1$…` (cost: t, the passes, default 2)
    Argon2id,
    /// PHC `$scrypt$ln=15,r=8,p=1$…` (cost: ln, log2 of N, default 15)
    Scrypt,
    /// PHC `$pbkdf2-sha256$i=600000,l=32$…` (cost: iterations, default 600,000)
    #[value(name = "pbkdf2-sha256")]
    Pbkdf2Sha256,
    /// `$6$rounds=5000$…` (cost: rounds, 1,000 to 999,999,999, default 5,000)
    #[value(name = "sha512-crypt")]
    Sha512Crypt,
}

/// Hashes passwords with one scheme at one cost.
#[derive(Debug, Clone, Copy)]
pub struct Hasher {
    scheme: Scheme,
    cost: u32,
}

/// The characters of a SHA-512 crypt salt.
const CRYPT_ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl Hasher {
    /// `scheme` at `cost` (its default when `None`); refuses a cost the scheme cannot take.
    pub fn new(scheme: Scheme, cost: Option<u32>) -> Result<Hasher, Error> {
        let (default, range) = match scheme {
            Scheme::Bcrypt => (10, 4..=31),
            Scheme::Argon2id => (2, 1..=100),
            Scheme::Scrypt => (15, 1..=30),
            Scheme::Pbkdf2Sha256 => (600_000, 1..=100_000_000),
            Scheme::Sha512Crypt => (5_000, 1_000..=999_999_999),
        };
        let cost = cost.unwrap_or(default);
        if !range.contains(&cost) {
            let name = clap::ValueEnum::to_possible_value(&scheme).expect("every scheme is named");
            return Err(Error::Usage(format!(
                "--cost {cost}: --hash {} takes {} to {}",
                name.get_name(),
                range.start(),
                range.end()
            )));
        }
        Ok(Hasher { scheme, cost })
    }

    /// The hash of `password` with `salt`, as the scheme's standard string.
    pub fn hash(&self, password: &str, salt: [u8; 16]) -> String {
        let phc = |hashed: Result<argon2::PasswordHash<'_>, _>| -> String {
            hashed.expect("valid parameters, checked").to_string()
        };
        let salt_b64 = SaltString::encode_b64(&salt).expect("16 bytes are a valid salt");
        let pw = password.as_bytes();
        match self.scheme {
            Scheme::Bcrypt => bcrypt::hash_with_salt(pw, self.cost, salt)
                .expect("a cost in range")
                .format_for_version(bcrypt::Version::TwoB),
            Scheme::Argon2id => {
                let params = argon2::Params::new(19_456, self.cost, 1, None).expect("in range");
                let argon = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                phc(argon.hash_password(pw, &salt_b64))
            }
            Scheme::Scrypt => {
                let params = scrypt::Params::new(self.cost as u8, 8, 1, 32).expect("in range");
                phc(scrypt::Scrypt.hash_password_customized(pw, None, None, params, &salt_b64))
            }
            Scheme::Pbkdf2Sha256 => {
                let params = pbkdf2::Params {
                    rounds: self.cost,
                    output_length: 32,
                };
                let algorithm = Some(pbkdf2::Algorithm::Pbkdf2Sha256.ident());
                phc(pbkdf2::Pbkdf2.hash_password_customized(pw, algorithm, None, params, &salt_b64))
            }
            Scheme::Sha512Crypt => {
                let salt: String = salt
                    .iter()
                    .map(|b| CRYPT_ALPHABET[(*b & 63) as usize] as char)
                    .collect();
                let params = sha_crypt::Sha512Params::new(self.cost as usize).expect("in range");
                let hash = sha_crypt::sha512_crypt_b64(pw, salt.as_bytes(), &params)
                    .expect("valid parameters");
                format!("$6$rounds={}${salt}${hash}", self.cost)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_writes_its_standard_prefix_and_the_same_salt_gives_the_same_hash() {
        let cheap = [
            (Scheme::Bcrypt, 4, "$2b$04$"),
            (Scheme::Argon2id, 1, "$argon2id$v=19$m=19456,t=1,p=1$"),
            (Scheme::Scrypt, 4, "$scrypt$ln=4,r=8,p=1$"),
            (Scheme::Pbkdf2Sha256, 1000, "$pbkdf2-sha256$i=1000,l=32$"),
            (Scheme::Sha512Crypt, 1000, "$6$rounds=1000$"),
        ];
        for (scheme, cost, prefix) in cheap {
            let hasher = Hasher::new(scheme, Some(cost)).unwrap();
            let a = hasher.hash("pässword", [7; 16]);
            assert!(a.starts_with(prefix), "{scheme:?}: {a}");
            assert_eq!(a, hasher.hash("pässword", [7; 16]), "{scheme:?}");
            assert_ne!(a, hasher.hash("pässword", [8; 16]), "{scheme:?}");
        }
        let e = Hasher::new(Scheme::Bcrypt, Some(3)).unwrap_err();
        assert!(e.to_string().contains("4 to 31"), "{e}");
    }
}
