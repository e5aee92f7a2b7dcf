//! The [`ClientAddr`] extractor: the address throttles count for a request, through the
//! trusted-proxy rule of `clawlink_common::client_addr`.

use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The client's address (`CLAWLINK_TRUSTED_PROXIES` decides whether forwarding headers
/// count). The server runs with connect info (`run`), so the peer is always known there.
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        // The extractor, not the extension: it also reads a test's `MockConnectInfo`.
        let peer = ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await.ok().map(|ConnectInfo(a)| a.ip());
        Ok(ClientAddr(clawlink_common::client_addr::client_ip(peer, &parts.headers, &state.config.trusted_proxies)))
    }
}
