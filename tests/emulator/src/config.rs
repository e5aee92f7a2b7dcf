//! Emulator configuration: the address to bind, the accepted tokens and where the
//! provider catalog and the canned answers live, with defaults for in-process tests and
//! an environment reader for the binary.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};

/// Address the binary binds when `CLAWLINK_EMULATOR_ADDR` is unset.
pub const DEFAULT_BINARY_ADDR: &str = "127.0.0.1:8090";
/// Bearer token the sandbox accepts unless told otherwise.
pub const DEFAULT_SANDBOX_TOKEN: &str = "sandbox-demo-token";

const ADDR_VAR: &str = "CLAWLINK_EMULATOR_ADDR";
const TOKENS_VAR: &str = "CLAWLINK_EMULATOR_SANDBOX_TOKENS";
const CATALOG_VAR: &str = "CLAWLINK_CATALOG_DIR";
const FIXTURES_VAR: &str = "CLAWLINK_EMULATOR_FIXTURES_DIR";

/// How to start an [`Emulator`](crate::Emulator).
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to bind; port 0 picks a free port. Default `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// Tokens every provider accepts (the sandbox's bearer token, an OAuth access token,
    /// an API key, a basic-auth password). Default `["sandbox-demo-token"]`.
    pub sandbox_tokens: Vec<String>,
    /// The provider catalog whose tools are served; `None` is the catalog's default
    /// folder (`clawlink_common::catalog::default_dir`).
    pub catalog_dir: Option<PathBuf>,
    /// The canned answers, one `<provider>.toml` each; `None` is this crate's `fixtures/`.
    pub fixtures_dir: Option<PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            sandbox_tokens: vec![DEFAULT_SANDBOX_TOKEN.to_owned()],
            catalog_dir: None,
            fixtures_dir: None,
        }
    }
}

impl EmulatorConfig {
    /// Read `CLAWLINK_EMULATOR_ADDR` (default `127.0.0.1:8090`),
    /// `CLAWLINK_EMULATOR_SANDBOX_TOKENS` (comma-separated, default
    /// `sandbox-demo-token`), `CLAWLINK_CATALOG_DIR` and `CLAWLINK_EMULATOR_FIXTURES_DIR`
    /// (both optional). An error names the variable and what was expected.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(|name| match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => bail!("{name} is not valid UTF-8"),
        })
    }

    fn from_vars(var: impl Fn(&str) -> anyhow::Result<Option<String>>) -> anyhow::Result<Self> {
        let addr = var(ADDR_VAR)?.unwrap_or_else(|| DEFAULT_BINARY_ADDR.to_owned());
        let addr = addr
            .trim()
            .parse()
            .with_context(|| format!("{ADDR_VAR}={addr:?} must be a socket address like {DEFAULT_BINARY_ADDR}"))?;
        let sandbox_tokens = match var(TOKENS_VAR)? {
            None => vec![DEFAULT_SANDBOX_TOKEN.to_owned()],
            Some(list) => {
                let tokens: Vec<String> =
                    list.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
                if tokens.is_empty() {
                    bail!("{TOKENS_VAR} must list at least one token (comma-separated)");
                }
                tokens
            }
        };
        let dir = |name: &str| -> anyhow::Result<Option<PathBuf>> {
            Ok(var(name)?.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).map(PathBuf::from))
        };
        Ok(Self { addr, sandbox_tokens, catalog_dir: dir(CATALOG_VAR)?, fixtures_dir: dir(FIXTURES_VAR)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> anyhow::Result<EmulatorConfig> {
        EmulatorConfig::from_vars(|name| Ok(pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())))
    }

    #[test]
    fn defaults_and_overrides() {
        let config = from(&[]).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(config.addr.to_string(), DEFAULT_BINARY_ADDR);
        assert_eq!(config.sandbox_tokens, [DEFAULT_SANDBOX_TOKEN]);
        assert_eq!(config.catalog_dir, None);

        let config = from(&[(ADDR_VAR, "0.0.0.0:9000"), (TOKENS_VAR, "a, b,,")]).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(config.addr.port(), 9000);
        assert_eq!(config.sandbox_tokens, ["a", "b"]);

        let config = from(&[(CATALOG_VAR, "/srv/catalog")]).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(config.catalog_dir, Some(PathBuf::from("/srv/catalog")));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = from(&[(ADDR_VAR, "localhost")]).err().map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| e.contains(ADDR_VAR)));
        let err = from(&[(TOKENS_VAR, " , ")]).err().map(|e| format!("{e:#}"));
        assert!(err.is_some_and(|e| e.contains(TOKENS_VAR)));
    }
}
