//! Realistic text chosen by a column's name: emails, user names, people's names in many
//! scripts, phone numbers, places, companies, URLs. The words and formats are the `fake`
//! crate's (its locale data and fakers), drawn from `generate`'s own seeded sequence.

use fake::Fake as _;
use fake::faker;
use fake::locales::{AR_SA, DE_DE, Data, EN, FA_IR, FR_FR, IT_IT, JA_JP, PT_BR, TR_TR, ZH_CN};

use crate::generate::rng::Rng;

/// What a column's name says its values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fake {
    Email,
    Username,
    FirstName,
    LastName,
    FullName,
    Phone,
    Country,
    CountryCode,
    City,
    PostalCode,
    Street,
    State,
    Url,
    Ip,
    Company,
    JobTitle,
    Sentence,
    Slug,
    TimeZone,
    Currency,
    /// A realistic-looking (not verifiable) Argon2id hash.
    PasswordHash,
}

/// The kind of value a column named `column` holds, if its name says; `max_len` is its
/// length limit, which turns a country into its code.
pub fn by_name(column: &str, max_len: Option<usize>) -> Option<Fake> {
    let name = column.to_ascii_lowercase().replace([' ', '-'], "_");
    let is = |names: &[&str]| names.contains(&name.as_str());
    let ends = |suffixes: &[&str]| suffixes.iter().any(|s| name.ends_with(s));
    Some(if name.contains("email") || is(&["mail"]) {
        Fake::Email
    } else if is(&[
        "username",
        "user_name",
        "login",
        "handle",
        "nickname",
        "screen_name",
    ]) {
        Fake::Username
    } else if is(&["first_name", "firstname", "given_name", "forename"]) {
        Fake::FirstName
    } else if is(&["last_name", "lastname", "surname", "family_name"]) {
        Fake::LastName
    } else if is(&[
        "name",
        "full_name",
        "fullname",
        "display_name",
        "contact_name",
    ]) || ends(&["_full_name", "_display_name"])
    {
        Fake::FullName
    } else if name.contains("phone") || is(&["mobile", "cell", "telephone", "tel", "fax"]) {
        Fake::Phone
    } else if is(&["country_code", "country_iso", "iso_country"])
        || (name.contains("country") && max_len.is_some_and(|n| n <= 3))
    {
        Fake::CountryCode
    } else if name.contains("country") {
        Fake::Country
    } else if is(&["city", "town", "locality"]) || ends(&["_city"]) {
        Fake::City
    } else if is(&[
        "zip",
        "zipcode",
        "zip_code",
        "postal_code",
        "postcode",
        "post_code",
    ]) {
        Fake::PostalCode
    } else if is(&[
        "street",
        "address",
        "street_address",
        "address1",
        "address_line1",
        "address_line_1",
    ]) {
        Fake::Street
    } else if is(&["state", "province", "region"]) {
        Fake::State
    } else if is(&["url", "website", "homepage", "web", "site"]) || ends(&["_url"]) {
        Fake::Url
    } else if is(&["ip", "ip_address", "ip_addr"]) || ends(&["_ip"]) {
        Fake::Ip
    } else if is(&[
        "company",
        "company_name",
        "organization",
        "organisation",
        "org_name",
        "employer",
    ]) {
        Fake::Company
    } else if is(&["job_title", "position", "occupation", "title"]) {
        Fake::JobTitle
    } else if is(&[
        "description",
        "bio",
        "about",
        "notes",
        "note",
        "comment",
        "summary",
    ]) {
        Fake::Sentence
    } else if is(&["slug"]) || ends(&["_slug"]) {
        Fake::Slug
    } else if is(&["timezone", "time_zone", "tz"]) {
        Fake::TimeZone
    } else if is(&["currency", "currency_code"]) {
        Fake::Currency
    } else if is(&["password_hash", "encrypted_password", "password", "passwd"]) {
        Fake::PasswordHash
    } else {
        return None;
    })
}

/// A person's name in one of several scripts and locales: (first, last, whether the family
/// name comes first, written without a space).
fn person(rng: &mut Rng) -> (&'static str, &'static str, bool) {
    macro_rules! western {
        ($($l:ty),*) => {
            [$((<$l>::NAME_FIRST_NAME, <$l>::NAME_LAST_NAME)),*]
        };
    }
    const WESTERN: [(&[&str], &[&str]); 8] =
        western!(EN, FR_FR, DE_DE, IT_IT, PT_BR, TR_TR, AR_SA, FA_IR);
    const EASTERN: [(&[&str], &[&str]); 2] = [
        (ZH_CN::NAME_FIRST_NAME, ZH_CN::NAME_LAST_NAME),
        (JA_JP::NAME_FIRST_NAME, JA_JP::NAME_LAST_NAME),
    ];
    let which = rng.below(12) as usize;
    if which < 2 {
        let (first, last) = EASTERN[which];
        let last = rng.word(last);
        (rng.word(first), last, true)
    } else {
        // English names a quarter of the time, each other locale one time in twelve.
        let (first, last) = WESTERN[if which < 5 { 0 } else { which - 4 }];
        let first = rng.word(first);
        (first, rng.word(last), false)
    }
}

/// Lowercase ASCII letters and digits of `name` (`D'Amore` → `damore`).
fn ascii_word(name: &str, out: &mut String) {
    out.extend(
        name.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase()),
    );
}

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl Fake {
    /// Appends a value to `out`. `n`, when given, is written into it to make it unique
    /// (emails and user names carry it naturally; the caller appends it to other kinds).
    pub fn write(self, rng: &mut Rng, n: Option<u64>, domain: &str, out: &mut String) {
        match self {
            Fake::Email => {
                ascii_word(rng.word(EN::NAME_FIRST_NAME), out);
                out.push('.');
                ascii_word(rng.word(EN::NAME_LAST_NAME), out);
                if let Some(n) = n {
                    out.push('.');
                    out.push_str(&n.to_string());
                }
                out.push('@');
                out.push_str(domain);
            }
            Fake::Username => {
                ascii_word(rng.word(EN::NAME_FIRST_NAME), out);
                out.push('_');
                ascii_word(rng.word(EN::NAME_LAST_NAME), out);
                if let Some(n) = n {
                    out.push('_');
                    out.push_str(&n.to_string());
                }
            }
            Fake::FirstName => out.push_str(person(rng).0),
            Fake::LastName => out.push_str(person(rng).1),
            Fake::FullName => match person(rng) {
                (first, last, true) => {
                    out.push_str(last);
                    out.push_str(first);
                }
                (first, last, false) => {
                    out.push_str(first);
                    out.push(' ');
                    out.push_str(last);
                }
            },
            Fake::Phone => out.push_str(
                &faker::phone_number::raw::PhoneNumber(EN).fake_with_rng::<String, _>(rng),
            ),
            Fake::Country => out.push_str(rng.word(EN::ADDRESS_COUNTRY)),
            Fake::CountryCode => out.push_str(rng.word(EN::ADDRESS_COUNTRY_CODE)),
            Fake::City => {
                out.push_str(&faker::address::raw::CityName(EN).fake_with_rng::<String, _>(rng))
            }
            Fake::PostalCode => {
                out.push_str(&faker::address::raw::ZipCode(EN).fake_with_rng::<String, _>(rng))
            }
            Fake::Street => {
                out.push_str(
                    &faker::address::raw::BuildingNumber(EN).fake_with_rng::<String, _>(rng),
                );
                out.push(' ');
                out.push_str(&faker::address::raw::StreetName(EN).fake_with_rng::<String, _>(rng));
            }
            Fake::State => out.push_str(rng.word(EN::ADDRESS_STATE)),
            Fake::Url => {
                out.push_str("https://www.");
                ascii_word(rng.word(EN::NAME_LAST_NAME), out);
                out.push('.');
                out.push_str(rng.word(EN::INTERNET_DOMAIN_SUFFIX));
                out.push('/');
                out.push_str(rng.word(EN::LOREM_WORD));
            }
            Fake::Ip => {
                let v = rng.next();
                out.push_str(&format!(
                    "{}.{}.{}.{}",
                    1 + (v & 0xFF) % 223,
                    (v >> 8) & 0xFF,
                    (v >> 16) & 0xFF,
                    1 + ((v >> 24) & 0xFF) % 254
                ));
            }
            Fake::Company => {
                out.push_str(&faker::company::raw::CompanyName(EN).fake_with_rng::<String, _>(rng))
            }
            Fake::JobTitle => {
                out.push_str(&faker::job::raw::Title(EN).fake_with_rng::<String, _>(rng))
            }
            Fake::Sentence => out
                .push_str(&faker::lorem::raw::Sentence(EN, 3..10).fake_with_rng::<String, _>(rng)),
            Fake::Slug => {
                for i in 0..1 + rng.below(3) {
                    if i > 0 {
                        out.push('-');
                    }
                    out.push_str(rng.word(EN::LOREM_WORD));
                }
            }
            Fake::TimeZone => out.push_str(rng.word(EN::ADDRESS_TIME_ZONE)),
            Fake::Currency => out.push_str(rng.word(EN::CURRENCY_CODE)),
            Fake::PasswordHash => {
                out.push_str("$argon2id$v=19$m=19456,t=2,p=1$");
                for i in 0..65 {
                    out.push(if i == 22 {
                        '$'
                    } else {
                        BASE64[rng.below(64) as usize] as char
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_what_a_column_holds() {
        assert_eq!(by_name("email", None), Some(Fake::Email));
        assert_eq!(by_name("work_email", None), Some(Fake::Email));
        assert_eq!(by_name("User Name", None), Some(Fake::Username));
        assert_eq!(by_name("country", Some(2)), Some(Fake::CountryCode));
        assert_eq!(by_name("country", None), Some(Fake::Country));
        assert_eq!(by_name("avatar_url", None), Some(Fake::Url));
        assert_eq!(by_name("balance", None), None);
    }

    #[test]
    fn names_come_from_every_locale() {
        let mut rng = Rng(4);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5000 {
            let (first, _, _) = person(&mut rng);
            seen.insert(first);
        }
        let from = |names: &[&str]| names.iter().any(|n| seen.contains(n));
        assert!(from(FA_IR::NAME_FIRST_NAME), "Persian names too");
        assert!(from(JA_JP::NAME_FIRST_NAME) && from(EN::NAME_FIRST_NAME));
    }

    #[test]
    fn emails_and_user_names_are_ascii_and_carry_the_number() {
        let mut rng = Rng(3);
        for n in 0..200 {
            let mut email = String::new();
            Fake::Email.write(&mut rng, Some(n), "example.test", &mut email);
            assert!(email.is_ascii(), "{email}");
            assert!(email.ends_with(&format!(".{n}@example.test")), "{email}");
            let mut user = String::new();
            Fake::Username.write(&mut rng, Some(n), "", &mut user);
            assert!(user.ends_with(&format!("_{n}")), "{user}");
        }
    }
}
