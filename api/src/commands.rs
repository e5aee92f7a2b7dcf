//! One-shot commands: `migrate`, `seed-demo`, `make-admin`, `rotate-keys`, `catalog …` and
//! `audit verify`.

use anyhow::Context;
use clawlink_common::config::{Env, InfraConfig, keyring_from_env};
use clawlink_common::crypto::{RowIdentity, hash_password, token_hash};
use clawlink_common::db::{connections, devices, users};
use clawlink_common::provider::CredentialBundle;
use clawlink_common::secret::SecretString;
use clawlink_common::tokens;
use std::time::Duration;

pub async fn migrate(env: &Env) -> anyhow::Result<()> {
    let infra = InfraConfig::from_env(env)?;
    let db = clawlink_common::startup::wait_for("postgres", Duration::from_secs(60), || {
        clawlink_common::db::connect(infra.database_url.expose(), 2)
    })
    .await?;
    clawlink_common::MIGRATOR.run(&db).await.context("running migrations")?;
    eprintln!("migrations applied");
    Ok(())
}

/// Creates (or refreshes) the demo account with a sandbox connection and a new device
/// credential, and prints `KEY=value` lines for `.clawlink/demo.env`.
pub async fn seed_demo(env: &Env, args: &[String]) -> anyhow::Result<()> {
    let mut sandbox_token = "sandbox-demo-token".to_string();
    let mut email = "demo@clawlink.local".to_string();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--sandbox-token" => sandbox_token = it.next().context("--sandbox-token needs a value")?.clone(),
            "--email" => email = it.next().context("--email needs a value")?.clone(),
            other => anyhow::bail!("unknown option {other:?}; expected --sandbox-token or --email"),
        }
    }
    let infra = InfraConfig::from_env(env)?;
    let keyring = keyring_from_env(env)?;
    let db = clawlink_common::db::connect(infra.database_url.expose(), 2).await.context("connecting to postgres")?;
    let password = tokens::random_urlsafe(12);
    let hash = hash_password(&password).map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;

    let mut tx = db.begin().await?;
    let user = users::upsert(&mut tx, &email, &hash, "Demo").await?;
    // The demo account runs benchmarks: give it the largest plan.
    clawlink_common::db::billing::change_plan(&mut tx, user, "team", "seed-demo").await?;
    // The person running a local stack operates it too: the admin queue view is theirs.
    users::set_admin(&mut tx, &email, true).await?;
    let existing = connections::list_usable(&mut tx, user, "sandbox").await?;
    let connection = match existing.first() {
        Some(c) => c.id,
        None => {
            connections::insert(
                &mut tx,
                &connections::NewConnection {
                    user,
                    integration: "sandbox",
                    connection_label: "Sandbox",
                    account_label: "sandbox@example.test",
                    external_account_id: Some("sandbox-user-1"),
                },
            )
            .await?
        }
    };
    let bundle = CredentialBundle::Bearer { token: SecretString::new(sandbox_token) };
    let sealed = keyring
        .seal(RowIdentity::connection(user, connection), &bundle.to_plaintext())
        .map_err(|e| anyhow::anyhow!("sealing the credential: {e}"))?;
    connections::store_credential(&mut tx, connection, user, &sealed).await?;
    let credential = tokens::new_device_credential();
    devices::create(
        &mut tx,
        user,
        "demo-device",
        &token_hash(credential.expose()),
        &tokens::display_prefix(credential.expose()),
        &Default::default(),
    )
    .await?;
    tx.commit().await?;
    println!("CLAWLINK_API_KEY={}", credential.expose());
    println!("CLAWLINK_DEMO_EMAIL={email}");
    println!("CLAWLINK_DEMO_PASSWORD={password}");
    Ok(())
}

/// `audit verify`: recomputes every audit chain (each account's and the operator's) and
/// prints one line a chain, its row count and `ok` or the first broken row (id, chain,
/// action). Fails (non-zero exit) when any chain is broken.
pub async fn audit(env: &Env, args: &[String]) -> anyhow::Result<()> {
    match args {
        [verb] if verb == "verify" => {}
        _ => anyhow::bail!("usage: clawlink-api audit verify"),
    }
    let infra = InfraConfig::from_env(env)?;
    let db = clawlink_common::db::connect(infra.database_url.expose(), 2).await.context("connecting to postgres")?;
    let reports = clawlink_common::audit::verify(&mut *db.acquire().await?).await.context("reading the audit trail")?;
    for report in &reports {
        println!("{report}");
    }
    let broken: Vec<_> = reports.iter().filter(|r| r.first_broken.is_some()).collect();
    if let Some(first) = broken.first() {
        anyhow::bail!("{} of {} audit chains are broken; first: {first}", broken.len(), reports.len());
    }
    eprintln!("{} audit chains verified", reports.len());
    Ok(())
}

/// `make-admin <email> [--revoke]`: grants an existing account the admin role (the live
/// queue view at `/admin/queues` of the web front, with dead-letter replay and discard),
/// or takes it back. Takes effect on the person's next page load.
pub async fn make_admin(env: &Env, args: &[String]) -> anyhow::Result<()> {
    let mut email = None;
    let mut grant = true;
    for arg in args {
        match arg.as_str() {
            "--revoke" => grant = false,
            other if other.starts_with('-') => anyhow::bail!("unknown option {other:?}; expected <email> [--revoke]"),
            other if email.is_none() => email = Some(other.to_string()),
            other => anyhow::bail!("unexpected argument {other:?}; expected one email"),
        }
    }
    let email = email.context("make-admin needs the account's email: clawlink-api make-admin <email> [--revoke]")?;
    let infra = InfraConfig::from_env(env)?;
    let db = clawlink_common::db::connect(infra.database_url.expose(), 2).await.context("connecting to postgres")?;
    let mut conn = db.acquire().await?;
    if !users::set_admin(&mut conn, &email, grant).await? {
        anyhow::bail!("no account has the email {email:?}; the person signs up first");
    }
    if grant {
        eprintln!("{email} is an admin: the queue view is at /admin/queues on the web front");
    } else {
        eprintln!("{email} is no longer an admin");
    }
    Ok(())
}

/// `rotate-keys [--batch N]`: re-seals every credential not under the active key
/// (`CLAWLINK_CREDENTIAL_ACTIVE_KEY`), N per transaction, while the service keeps serving.
/// Stopping it at any moment is safe; running it again continues with what is left. Every
/// api and worker must have the new key loaded first (README "Credential keys and rotation").
pub async fn rotate_keys(env: &Env, args: &[String]) -> anyhow::Result<()> {
    let mut batch: i64 = 100;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--batch" => {
                let value = it.next().context("--batch needs a value")?;
                batch = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--batch: expected a positive whole number, got {value:?}"))?;
            }
            other => anyhow::bail!("unknown option {other:?}; expected --batch N"),
        }
    }
    let infra = InfraConfig::from_env(env)?;
    let keyring = keyring_from_env(env)?;
    let db = clawlink_common::db::connect(infra.database_url.expose(), 2).await.context("connecting to postgres")?;
    let active = keyring.active_key_id().to_string();
    eprintln!("re-sealing credentials under key {active:?}, {batch} per batch");
    let progress = clawlink_common::rotation::rotate(&db, &keyring, batch, |p| {
        eprintln!("  {} re-sealed, {} left", p.resealed, p.remaining);
    })
    .await
    .context("rotating credential keys")?;
    if !progress.unreadable.is_empty() {
        let ids = progress.unreadable.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ");
        anyhow::bail!(
            "{} re-sealed, but {} credentials open with no loaded key (connections {ids}); they were left as they are",
            progress.resealed,
            progress.unreadable.len()
        );
    }
    if progress.remaining > 0 {
        anyhow::bail!(
            "{} re-sealed; {} credentials stayed locked; run rotate-keys again",
            progress.resealed,
            progress.remaining
        );
    }
    eprintln!("done: {} re-sealed; every credential is sealed under key {active:?}", progress.resealed);
    Ok(())
}

/// `catalog import|import-all|lint|trim-spec …`: the provider catalog's tools
/// (`clawlink_openapi::cli`). Needs no database or queue.
pub fn catalog(args: &[String]) -> anyhow::Result<()> {
    clawlink_openapi::cli::run(args)
}
