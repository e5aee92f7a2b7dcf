//! The pairing approval page (`pairUrl`): a signed-in person sees the device label and
//! the display code, and approves or denies.

use crate::AppState;
use crate::error::{MessagePage, WebError, page};
use crate::routes::grants::{self, Picker};
use crate::session::{CsrfForm, SignedIn};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use clawlink_common::audit;
use clawlink_common::db::pairing;
use std::collections::HashMap;

#[derive(Template)]
#[template(path = "pair.html")]
struct PairPage {
    signed_in_as: Option<String>,
    csrf: String,
    email: String,
    token: String,
    device_label: String,
    display_code: String,
    open: bool,
    closed_message: String,
    picker: Picker,
}

fn closed_message(status: &str) -> &'static str {
    match status {
        "expired" => "This pairing request has expired. Start pairing again from your agent.",
        "failed" => "This pairing request was denied.",
        _ => "This pairing request has been approved already. You can go back to your agent.",
    }
}

pub async fn show(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    let mut conn = state.db.acquire().await?;
    let session = pairing::get(&mut conn, &token).await?.ok_or_else(WebError::not_found)?;
    let status = session.effective_status().to_string();
    let connections = grants::connections_of(&mut conn, user.user_id).await?;
    page(&PairPage {
        picker: Picker::new(&state, &connections, &session.grant, false),
        signed_in_as: Some(user.email.clone()),
        csrf: user.csrf_token,
        email: user.email,
        token,
        device_label: session.device_label,
        display_code: session.display_code,
        open: status == "awaiting_browser",
        closed_message: closed_message(&status).into(),
    })
}

pub async fn decide(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    Path(token): Path<String>,
    CsrfForm { fields, .. }: CsrfForm<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let approve = match fields.get("decision").map(String::as_str).unwrap_or_default() {
        "approve" => true,
        "deny" => false,
        _ => {
            return Err(WebError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "Choose approve or deny",
                "The form did not say whether to approve or deny.",
            ));
        }
    };
    // The decision, its grant and its audit event commit together; the grant is read
    // (and a bad one refused) before anything changes.
    let mut tx = state.db.begin().await?;
    let session = pairing::get(&mut tx, &token).await?.ok_or_else(WebError::not_found)?;
    let grant = match approve {
        true => Some(grants::parse(&state, &fields, &grants::connections_of(&mut tx, user.user_id).await?, None)?),
        false => None,
    };
    let decided = pairing::decide(&mut tx, &token, user.user_id, grant.as_ref()).await?;
    if let Some(id) = decided {
        let action = if approve { audit::PAIRING_APPROVED } else { audit::PAIRING_DENIED };
        let subject = format!("pairing:{id}");
        let mut details = serde_json::json!({"deviceLabel": session.device_label});
        if let Some(grant) = &grant {
            details["grant"] = grants::audit_details(grant);
        }
        audit::record(&mut tx, &audit::Event::by_person(user.user_id, action, &subject, details)).await?;
    }
    tx.commit().await?;
    let mut message = if decided.is_none() {
        MessagePage::info("Nothing changed", closed_message(session.effective_status()))
    } else if approve {
        tracing::info!(user_id = %user.user_id, "pairing approved");
        let reach = grant.as_ref().map(|g| g.describe()).unwrap_or_default();
        MessagePage::info(
            "Agent approved",
            &format!(
                "{} can now act for you ({reach}). You can go back to your agent: it finishes pairing by itself.",
                session.device_label
            ),
        )
    } else {
        MessagePage::info("Pairing denied", "The agent was not paired. You can close this page.")
    };
    message.signed_in_as = Some(user.email);
    message.csrf = user.csrf_token;
    message.link = Some(("/devices".into(), "Your paired devices".into()));
    page(&message)
}
