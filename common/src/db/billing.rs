//! `plans`, `plan_changes`, `usage_monthly` and `billing_events`.

use crate::ids::UserId;
use sqlx::PgConnection;

#[derive(Clone, Debug)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub monthly_calls: i64,
    pub max_connections: i32,
    pub price_cents: i32,
}

/// A user's plan with this month's usage and connection count.
#[derive(Clone, Debug)]
pub struct Standing {
    pub plan: Plan,
    pub calls_this_month: i64,
    pub connections: i64,
}

pub async fn plans(conn: &mut PgConnection) -> sqlx::Result<Vec<Plan>> {
    sqlx::query_as!(
        Plan,
        "SELECT id, name, monthly_calls, max_connections, price_cents FROM plans ORDER BY price_cents, id"
    )
    .fetch_all(conn)
    .await
}

pub async fn standing(conn: &mut PgConnection, user: UserId) -> sqlx::Result<Standing> {
    let r = sqlx::query!(
        r#"SELECT p.id, p.name, p.monthly_calls, p.max_connections, p.price_cents,
                  coalesce((SELECT calls FROM usage_monthly
                             WHERE user_id = u.id AND month = (date_trunc('month', now() AT TIME ZONE 'UTC'))::date), 0) AS "calls!",
                  (SELECT count(*) FROM user_integrations WHERE user_id = u.id AND status <> 'revoked') AS "connections!"
             FROM users u JOIN plans p ON p.id = u.plan_id WHERE u.id = $1"#,
        user.0
    )
    .fetch_one(conn)
    .await?;
    Ok(Standing {
        plan: Plan {
            id: r.id,
            name: r.name,
            monthly_calls: r.monthly_calls,
            max_connections: r.max_connections,
            price_cents: r.price_cents,
        },
        calls_this_month: r.calls,
        connections: r.connections,
    })
}

/// Records a payment event id; `false` when it was processed before (a replay).
pub async fn record_event(conn: &mut PgConnection, event_id: &str, event_type: &str) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "INSERT INTO billing_events (event_id, event_type) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
        event_id,
        event_type
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the user to `plan` and records the change; `false` for an unknown user or plan.
pub async fn change_plan(conn: &mut PgConnection, user: UserId, plan: &str, source: &str) -> sqlx::Result<bool> {
    let changed = sqlx::query_scalar!(
        r#"WITH upd AS (UPDATE users u SET plan_id = $2
                          FROM (SELECT id, plan_id AS old_plan FROM users WHERE id = $1 FOR UPDATE) o
                         WHERE u.id = o.id AND EXISTS (SELECT 1 FROM plans WHERE id = $2)
                     RETURNING u.id, o.old_plan),
                logged AS (INSERT INTO plan_changes (user_id, from_plan, to_plan, source)
                           SELECT id, old_plan, $2, $3 FROM upd RETURNING 1)
           SELECT count(*) AS "n!" FROM upd"#,
        user.0,
        plan,
        source
    )
    .fetch_one(conn)
    .await?;
    Ok(changed == 1)
}
