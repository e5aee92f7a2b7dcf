//! One-shot commands: `migrate` and `seed-demo`.

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
    )
    .await?;
    tx.commit().await?;
    println!("CLAWLINK_API_KEY={}", credential.expose());
    println!("CLAWLINK_DEMO_EMAIL={email}");
    println!("CLAWLINK_DEMO_PASSWORD={password}");
    Ok(())
}
