//! Approvals bound to the call: who must approve a tool call that changes data (the
//! [`ApprovalPolicy`] of the account, or of the device), and the approval token a preview
//! hands out — an HMAC-signed statement "this device may run this tool with exactly these
//! arguments on this connection until then", checked by execute.
//!
//! Owns the token's format, the canonical digest of arguments and the checks that need
//! nothing but the token and the call. Knows nothing about HTTP or tables: recording a
//! token's nonce (so it is used once) is `db::approvals`, the answers are the api's.

use crate::crypto::Keyring;
use crate::ids::{ConnectionId, DeviceId};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Who approves a tool call that changes data (a tool whose mode is not `read` or whose
/// risk is not `safe`). Stored per account (`users.approval_policy`) with an optional
/// per-device override (`devices.approval_policy`); spelled in snake_case everywhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ApprovalPolicy {
    /// The call runs without any confirmation.
    Allow,
    /// The agent confirms with `confirmed: true` (the published OpenClaw plugin does so
    /// after showing the preview to its person). The default: how every account behaved
    /// before policies existed.
    #[default]
    AgentConfirmation,
    /// Execute must present the `approvalToken` of a preview of exactly this call.
    ApprovalToken,
    /// A person approves each call on the dashboard; until then it is `awaiting_approval`.
    Person,
}

impl ApprovalPolicy {
    pub const ALL: [ApprovalPolicy; 4] = [
        ApprovalPolicy::Allow,
        ApprovalPolicy::AgentConfirmation,
        ApprovalPolicy::ApprovalToken,
        ApprovalPolicy::Person,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalPolicy::Allow => "allow",
            ApprovalPolicy::AgentConfirmation => "agent_confirmation",
            ApprovalPolicy::ApprovalToken => "approval_token",
            ApprovalPolicy::Person => "person",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// What the policy means, for the dashboard.
    pub fn describe(self) -> &'static str {
        match self {
            ApprovalPolicy::Allow => "Run without asking",
            ApprovalPolicy::AgentConfirmation => "The agent confirms with you first (default)",
            ApprovalPolicy::ApprovalToken => "The agent must present the approval token of the exact previewed call",
            ApprovalPolicy::Person => "I approve each call here on the dashboard",
        }
    }
}

impl std::fmt::Display for ApprovalPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `value` as canonical JSON: object keys sorted (by their UTF-8 bytes) at every depth,
/// no insignificant whitespace, strings and numbers as serde_json writes them. Written out
/// here rather than trusting the map's order, which a crate feature elsewhere in the
/// build could change.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push('{');
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// SHA-256 of the arguments' canonical JSON, hex: what a token binds the arguments by.
pub fn arguments_digest(arguments: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(arguments).as_bytes()))
}

/// What a token binds. Serialised (short field names) as the signed payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalClaims {
    /// The tool's name.
    #[serde(rename = "t")]
    pub tool: String,
    /// [`arguments_digest`] of the previewed arguments.
    #[serde(rename = "a")]
    pub arguments: String,
    #[serde(rename = "c")]
    pub connection: ConnectionId,
    #[serde(rename = "d")]
    pub device: DeviceId,
    /// Unix seconds after which the token is refused.
    #[serde(rename = "e")]
    pub expires_at: i64,
    /// 16 random bytes, hex: recorded when the token is used, so it is used once.
    #[serde(rename = "n")]
    pub nonce: String,
}

impl ApprovalClaims {
    /// Claims for a preview of `tool` with `arguments` on `connection` by `device`, valid
    /// until `expires_at` (unix seconds), with a fresh nonce.
    pub fn new(tool: &str, arguments: &Value, connection: ConnectionId, device: DeviceId, expires_at: i64) -> Self {
        let nonce: [u8; 16] = rand::random();
        Self {
            tool: tool.to_string(),
            arguments: arguments_digest(arguments),
            connection,
            device,
            expires_at,
            nonce: hex::encode(nonce),
        }
    }

    /// The nonce's bytes (16 of them for a token this module signed).
    pub fn nonce_bytes(&self) -> Vec<u8> {
        hex::decode(&self.nonce).unwrap_or_default()
    }
}

/// Tokens start with this, so a scanner (or a person) recognises one.
const PREFIX: &str = "clap1";

/// `clap1.<key id>.<payload, base64url>.<HMAC-SHA256 of the payload, base64url>`.
pub fn sign(keyring: &Keyring, claims: &ApprovalClaims) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialise");
    let (key_id, tag) = keyring.sign_approval(&payload);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{PREFIX}.{key_id}.{}.{}", b64.encode(&payload), b64.encode(tag))
}

/// Why a presented token does not approve the call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token, a signature that does not verify (forged, altered, signed under a key
    /// this keyring no longer holds).
    #[error("the approval token is not valid")]
    Invalid,
    /// A valid token for another call: which binding differs.
    #[error("the approval token was issued for a different {0}")]
    Mismatch(Binding),
    #[error("the approval token has expired")]
    Expired,
}

/// A part of the call a token binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Tool,
    Arguments,
    Connection,
    Device,
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Binding::Tool => "tool",
            Binding::Arguments => "set of arguments",
            Binding::Connection => "connection",
            Binding::Device => "device",
        })
    }
}

/// Checks the signature and the expiry, and returns the claims; the caller compares them
/// with the call ([`ApprovalClaims::check`]) and records the nonce.
pub fn verify(keyring: &Keyring, token: &str, now_unix: i64) -> Result<ApprovalClaims, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(PREFIX), Some(key_id), Some(payload), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Invalid);
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (Ok(payload), Ok(tag)) = (b64.decode(payload), b64.decode(tag)) else {
        return Err(TokenError::Invalid);
    };
    if !keyring.verify_approval(key_id, &payload, &tag) {
        return Err(TokenError::Invalid);
    }
    let claims: ApprovalClaims = serde_json::from_slice(&payload).map_err(|_| TokenError::Invalid)?;
    if claims.nonce_bytes().len() != 16 {
        return Err(TokenError::Invalid);
    }
    if now_unix >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

impl ApprovalClaims {
    /// Whether these (verified) claims approve this call: the same tool, the same
    /// arguments to the byte of their canonical form, the same connection and device.
    pub fn check(
        &self,
        tool: &str,
        arguments: &Value,
        connection: ConnectionId,
        device: DeviceId,
    ) -> Result<(), TokenError> {
        if self.tool != tool {
            return Err(TokenError::Mismatch(Binding::Tool));
        }
        if self.device != device {
            return Err(TokenError::Mismatch(Binding::Device));
        }
        if self.connection != connection {
            return Err(TokenError::Mismatch(Binding::Connection));
        }
        if self.arguments != arguments_digest(arguments) {
            return Err(TokenError::Mismatch(Binding::Arguments));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_keeps_values() {
        let a = json!({"b": 1, "a": {"z": [1, {"y": "x", "x": null}], "c": true}, "é": "ü\n"});
        assert_eq!(canonical_json(&a), r#"{"a":{"c":true,"z":[1,{"x":null,"y":"x"}]},"b":1,"é":"ü\n"}"#);
        let reordered: Value =
            serde_json::from_str(r#"{"é":"ü\n","a":{"c":true,"z":[1,{"y":"x","x":null}]},"b":1}"#).unwrap();
        assert_eq!(arguments_digest(&a), arguments_digest(&reordered));
        // An array's order, a type and a number's spelling all count.
        for other in [
            json!({"b": 1, "a": {"z": [{"y": "x", "x": null}, 1], "c": true}, "é": "ü\n"}),
            json!({"b": "1", "a": {"z": [1, {"y": "x", "x": null}], "c": true}, "é": "ü\n"}),
            json!({"b": 1.0, "a": {"z": [1, {"y": "x", "x": null}], "c": true}, "é": "ü\n"}),
        ] {
            assert_ne!(arguments_digest(&a), arguments_digest(&other), "{other}");
        }
    }

    #[test]
    fn a_token_verifies_under_its_keyring_until_it_expires_and_binds_the_call() {
        let keyring = Keyring::generate("k1");
        let args = json!({"title": "a", "body": "b"});
        let claims = ApprovalClaims::new("sandbox_create_note", &args, ConnectionId(7), DeviceId(3), 1_000);
        let token = sign(&keyring, &claims);
        assert!(token.starts_with("clap1.k1."), "{token}");
        let back = verify(&keyring, &token, 999).unwrap();
        assert_eq!(back, claims);
        back.check("sandbox_create_note", &json!({"body": "b", "title": "a"}), ConnectionId(7), DeviceId(3)).unwrap();
        assert_eq!(verify(&keyring, &token, 1_000), Err(TokenError::Expired));
        let mismatch = |tool: &str, args: Value, c: i64, d: i64| {
            back.check(tool, &args, ConnectionId(c), DeviceId(d)).unwrap_err()
        };
        assert_eq!(mismatch("sandbox_delete_note", args.clone(), 7, 3), TokenError::Mismatch(Binding::Tool));
        assert_eq!(
            mismatch("sandbox_create_note", json!({"title": "a", "body": "B"}), 7, 3),
            TokenError::Mismatch(Binding::Arguments)
        );
        assert_eq!(mismatch("sandbox_create_note", args.clone(), 8, 3), TokenError::Mismatch(Binding::Connection));
        assert_eq!(mismatch("sandbox_create_note", args.clone(), 7, 4), TokenError::Mismatch(Binding::Device));

        // Another keyring, an altered payload or tag, garbage: invalid.
        assert_eq!(verify(&Keyring::generate("k1"), &token, 0), Err(TokenError::Invalid));
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut forged = claims.clone();
        forged.arguments = arguments_digest(&json!({"title": "evil"}));
        let forged_payload = b64.encode(serde_json::to_vec(&forged).unwrap());
        let swapped = format!("{}.{}.{}.{}", parts[0], parts[1], forged_payload, parts[3]);
        assert_eq!(verify(&keyring, &swapped, 0), Err(TokenError::Invalid));
        let other_key = format!("{}.k2.{}.{}", parts[0], parts[2], parts[3]);
        assert_eq!(verify(&keyring, &other_key, 0), Err(TokenError::Invalid));
        for bad in ["", "clap1", "clap1.k1.x.y", &format!("{token}.x"), "true"] {
            assert_eq!(verify(&keyring, bad, 0), Err(TokenError::Invalid), "{bad}");
        }
    }

    #[test]
    fn policy_spellings_match_serde_and_parse() {
        for p in ApprovalPolicy::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), Value::String(p.as_str().into()));
            assert_eq!(ApprovalPolicy::parse(p.as_str()), Some(p));
        }
        assert_eq!(ApprovalPolicy::default(), ApprovalPolicy::AgentConfirmation);
        assert_eq!(ApprovalPolicy::parse("never"), None);
    }
}
