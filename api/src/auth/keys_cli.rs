//! `portfolio-api keys create|list|revoke`: how operators make, see and revoke API keys, on
//! the database of `DATABASE_URL`. The new key is printed once, alone on the last line of
//! standard output (so scripts can take it with `tail -n 1`); only its hash is kept.

use anyhow::Context;
use diesel::{Connection, PgConnection};
use portfolio_shared::store::{self, NewApiKey};

use super::Scope;
use super::key::PresentedKey;

/// The owner the tenancy migration gave every job recorded before tenancy: only operators see
/// them, and a key of this name would hand them all to its tenant.
const PRE_TENANCY_OWNER: &str = "legacy";

/// A key's name is its tenant: letters, digits, `.`, `_`, `-`, up to 64; not the owner of the
/// jobs recorded before tenancy.
pub(crate) fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    anyhow::ensure!(ok, "--name `{name}`: use 1 to 64 letters, digits, `.`, `_` or `-`");
    anyhow::ensure!(
        !name.eq_ignore_ascii_case(PRE_TENANCY_OWNER),
        "--name `{name}`: reserved for the jobs recorded before tenancy, which only operators \
         see; choose another name"
    );
    Ok(())
}

/// Scopes from `--scope` values (default: `simulate`).
pub(crate) fn parse_scopes(raw: &[String]) -> anyhow::Result<Vec<String>> {
    if raw.is_empty() {
        return Ok(vec![Scope::Simulate.as_str().to_owned()]);
    }
    let mut scopes: Vec<String> = Vec::new();
    for s in raw {
        let scope = Scope::parse(s)
            .with_context(|| format!("--scope `{s}`: expected `simulate` or `operator`"))?;
        if !scopes.iter().any(|x| x == scope.as_str()) {
            scopes.push(scope.as_str().to_owned());
        }
    }
    Ok(scopes)
}

/// Makes a key for tenant `name` with `scopes` (`--scope` values) and records its hash; the
/// key's id and the key itself, which exists nowhere else from then on.
pub fn issue(
    conn: &mut PgConnection,
    name: &str,
    scopes: &[String],
) -> anyhow::Result<(i64, PresentedKey)> {
    check_name(name)?;
    let scopes = parse_scopes(scopes)?;
    let key = PresentedKey::generate();
    let digest = key.digest();
    let id = store::create_key(
        conn,
        &NewApiKey { name, prefix: key.prefix(), secret_sha256: &digest, scopes: &scopes },
    )
    .context("recording the key")?;
    Ok((id, key))
}

/// Makes a key and prints it.
pub fn create(database_url: &str, name: &str, scopes: &[String]) -> anyhow::Result<()> {
    let (id, key) = issue(&mut connect(database_url)?, name, scopes)?;
    let scopes = parse_scopes(scopes)?;
    println!(
        "Created API key {id} for tenant `{name}` (scopes: {}). It is shown only now; keep it \
         secret:",
        scopes.join(", ")
    );
    println!("{}", key.reveal());
    Ok(())
}

/// Prints every key (never a secret).
pub fn list(database_url: &str) -> anyhow::Result<()> {
    let keys = store::list_keys(&mut connect(database_url)?).context("reading the keys")?;
    println!(
        "{:>4}  {:<20}  {:<8}  {:<17}  {:<20}  {:<20}  revoked",
        "id", "name", "prefix", "scopes", "created", "last used"
    );
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".to_owned())
    };
    for k in keys {
        println!(
            "{:>4}  {:<20}  {:<8}  {:<17}  {:<20}  {:<20}  {}",
            k.id,
            k.name,
            k.prefix,
            k.scopes.join(","),
            when(Some(k.created_at)),
            when(k.last_used_at),
            when(k.revoked_at),
        );
    }
    Ok(())
}

/// Revokes a key; it stops working at once on every API replica.
pub fn revoke(database_url: &str, id: i64) -> anyhow::Result<()> {
    match store::revoke_key(&mut connect(database_url)?, id).context("revoking the key")? {
        Some(at) => {
            println!("API key {id} is revoked (since {}).", at.format("%Y-%m-%d %H:%M:%S UTC"));
            Ok(())
        }
        None => anyhow::bail!("no API key {id} (see `portfolio-api keys list`)"),
    }
}

fn connect(url: &str) -> anyhow::Result<PgConnection> {
    PgConnection::establish(url).context("connecting to DATABASE_URL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_scopes_are_checked() {
        assert!(check_name("acme-prod_2.x").is_ok());
        for bad in ["", "a b", "ünï", &"x".repeat(65), "a:b", "legacy", "Legacy"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_scopes(&[]).unwrap(), ["simulate"]);
        let both = ["operator".to_owned(), "simulate".to_owned(), "operator".to_owned()];
        assert_eq!(parse_scopes(&both).unwrap(), ["operator", "simulate"]);
        assert!(parse_scopes(&["admin".to_owned()]).is_err());
    }
}
