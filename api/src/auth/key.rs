//! The API key itself: `pmc_<prefix>_<secret>`, where the 8-character prefix is public (it finds
//! the key's row and shows in `keys list`) and the 40-character secret carries ~238 bits of
//! randomness. Only the SHA-256 of the whole key is stored: a fast hash is enough for a secret
//! that random (a slow password hash protects guessable secrets), and it lets every request be
//! checked without a costly step. Hashes are compared in constant time.

use rand::RngExt;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const TAG: &str = "pmc";
const PREFIX_LEN: usize = 8;
const SECRET_LEN: usize = 40;
const PREFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A key as presented: well formed, not yet known to be valid.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey {
    prefix: String,
    whole: String,
}

/// Never shows the secret, whatever logs a key by mistake.
impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{TAG}_{}_***", self.prefix)
    }
}

impl PresentedKey {
    /// Reads a key; `None` for anything not of the key's form (which is answered exactly as
    /// an unknown key is).
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(TAG)?.strip_prefix('_')?;
        let (prefix, secret) = rest.split_once('_')?;
        let well_formed = prefix.len() == PREFIX_LEN
            && prefix.bytes().all(|b| PREFIX_ALPHABET.contains(&b))
            && secret.len() == SECRET_LEN
            && secret.bytes().all(|b| b.is_ascii_alphanumeric());
        well_formed.then(|| Self { prefix: prefix.to_owned(), whole: raw.to_owned() })
    }

    /// Makes a new random key.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let prefix: String = (0..PREFIX_LEN)
            .map(|_| PREFIX_ALPHABET[rng.random_range(0..PREFIX_ALPHABET.len())] as char)
            .collect();
        let secret = Alphanumeric.sample_string(&mut rng, SECRET_LEN);
        let whole = format!("{TAG}_{prefix}_{secret}");
        Self { prefix, whole }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key itself, to print once when it is made.
    pub fn reveal(&self) -> &str {
        &self.whole
    }

    /// What is stored: the hex SHA-256 of the whole key.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.whole.as_bytes()))
    }

    /// Whether the key hashes to `stored`, compared in constant time.
    pub fn matches(&self, stored: &str) -> bool {
        self.digest().as_bytes().ct_eq(stored.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_to_itself_and_matches_only_its_own_digest() {
        let key = PresentedKey::generate();
        let again = PresentedKey::parse(key.reveal()).expect("a generated key is well formed");
        assert_eq!(again, key);
        assert!(again.matches(&key.digest()));
        assert!(!again.matches(&PresentedKey::generate().digest()));
        assert_ne!(PresentedKey::generate().reveal(), key.reveal(), "keys are random");
    }

    #[test]
    fn anything_not_of_the_keys_form_is_refused() {
        let good = format!("pmc_abcd1234_{}", "A1".repeat(20));
        assert!(PresentedKey::parse(&good).is_some());
        for bad in [
            String::new(),
            "pmc_abcd1234".to_owned(),
            format!("pmx_abcd1234_{}", "A1".repeat(20)),
            format!("pmc_ABCD1234_{}", "A1".repeat(20)),
            format!("pmc_abcd123_{}", "A1".repeat(20)),
            format!("pmc_abcd1234_{}", "A1".repeat(19)),
            format!("pmc_abcd1234_{}!", "A1".repeat(20)),
            format!("pmc_abcd1234_{}_", "A1".repeat(20)),
        ] {
            assert!(PresentedKey::parse(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let key = PresentedKey::generate();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.reveal()[13..]), "{shown}");
        assert!(shown.contains(key.prefix()));
    }
}
