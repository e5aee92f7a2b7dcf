//! `clawlink-api catalog …`: the importer, the lint and the spec trimmer on the command
//! line. Each command reads its arguments here so the api binary only dispatches.
//!
//! - `import <openapi.json|yaml> --provider <id> [--operations a,b] [--base-url URL]
//!   [--out catalog/<id>.toml] [--force]` writes a catalog file and, beside it,
//!   `<id>.import.txt` with the report (also printed);
//! - `import-all <dir> [--report FILE]` imports every document under a folder and prints
//!   the figures;
//! - `lint [dir]` checks every tool's input schema against the model APIs' rules;
//! - `trim-spec <openapi.json> --provider <id> --source TEXT --licence TEXT [--api-root URL]
//!   [--credential-parameters a,b] [--json-for-form REASON] [--catalog dir] --out FILE`
//!   keeps only the operations the provider's tools call, stamped for the spec check.

use crate::check::{ApiRoot, matching_operation};
use crate::document::Document;
use crate::import::{ImportOptions, import};
use crate::write::to_catalog_toml;
use anyhow::{Context, bail};
use clawlink_common::catalog::{Catalog, default_dir, lint_catalog, render_request, validate_arguments};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const USAGE: &str =
    "expected: catalog import <file> --provider <id> [--operations a,b] [--base-url URL] [--out FILE] [--force]
       | catalog import-all <dir> [--report FILE]
       | catalog lint [dir]
       | catalog trim-spec <file> --provider <id> --source TEXT --licence TEXT [--api-root URL]
           [--credential-parameters a,b] [--json-for-form REASON] [--catalog dir] --out FILE";

/// Runs `catalog <command> …` with the arguments after `catalog`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    let mut options = Options::parse(rest)?;
    match command.as_str() {
        "import" => import_command(&mut options),
        "import-all" => import_all_command(&mut options),
        "lint" => lint_command(&mut options),
        "trim-spec" => trim_command(&mut options),
        other => bail!("unknown catalog command {other:?}; {USAGE}"),
    }
}

/// Positional arguments and `--name value` options (`--force` takes none).
struct Options {
    positional: Vec<String>,
    named: BTreeMap<String, String>,
    force: bool,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options { positional: Vec::new(), named: BTreeMap::new(), force: false };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "--force" {
                options.force = true;
            } else if let Some(name) = arg.strip_prefix("--") {
                let value = it.next().with_context(|| format!("--{name} needs a value"))?;
                options.named.insert(name.to_string(), value.clone());
            } else {
                options.positional.push(arg.clone());
            }
        }
        Ok(options)
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.named.remove(name)
    }

    fn need(&mut self, name: &str) -> anyhow::Result<String> {
        self.take(name).with_context(|| format!("--{name} is required; {USAGE}"))
    }

    fn file(&mut self, what: &str) -> anyhow::Result<PathBuf> {
        if self.positional.is_empty() {
            bail!("{what} is required; {USAGE}");
        }
        Ok(PathBuf::from(self.positional.remove(0)))
    }

    fn done(&self) -> anyhow::Result<()> {
        if let Some(extra) = self.positional.first() {
            bail!("unexpected argument {extra:?}; {USAGE}");
        }
        if let Some(name) = self.named.keys().next() {
            bail!("unknown option --{name}; {USAGE}");
        }
        Ok(())
    }
}

fn read_document(path: &Path) -> anyhow::Result<Document> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Document::parse(&bytes).with_context(|| format!("{}", path.display()))
}

fn import_command(o: &mut Options) -> anyhow::Result<()> {
    let file = o.file("the OpenAPI document")?;
    let provider = o.need("provider")?;
    let operations = o.take("operations").map(|list| list.split(',').map(|s| s.trim().to_string()).collect());
    let base_url = o.take("base-url");
    let out = o.take("out").map(PathBuf::from).unwrap_or_else(|| default_dir(None).join(format!("{provider}.toml")));
    o.done()?;
    if out.exists() && !o.force {
        bail!("{} exists; pass --force to replace it", out.display());
    }
    let doc = read_document(&file)?;
    let imported = import(&doc, &ImportOptions { provider: provider.clone(), operations, base_url })?;
    let report = imported.report.to_string();
    print!("{report}");
    if imported.provider.tools.is_empty() {
        bail!("no operation of {} could become a tool (see the reasons above); nothing written", file.display());
    }
    let source = file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let text = to_catalog_toml(&imported.provider, &imported.report, &source).map_err(anyhow::Error::msg)?;
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    let report_file = out.with_file_name(format!("{provider}.import.txt"));
    std::fs::write(&report_file, &report).with_context(|| format!("writing {}", report_file.display()))?;
    eprintln!("wrote {} and {}", out.display(), report_file.display());
    Ok(())
}

fn import_all_command(o: &mut Options) -> anyhow::Result<()> {
    let dir = o.file("the folder of documents")?;
    let report_file = o.take("report");
    o.done()?;
    let report = crate::directory::import_all(&dir).with_context(|| format!("reading {}", dir.display()))?;
    print!("{report}");
    if let Some(path) = report_file {
        std::fs::write(&path, report.to_string()).with_context(|| format!("writing {path}"))?;
    }
    if !report.panics.is_empty() {
        bail!("{} documents made the importer panic", report.panics.len());
    }
    Ok(())
}

fn lint_command(o: &mut Options) -> anyhow::Result<()> {
    let dir = if o.positional.is_empty() { default_dir(None) } else { o.file("dir")? };
    o.done()?;
    let catalog = Catalog::load_dir(&dir, &BTreeMap::new())?;
    let report = lint_catalog(&catalog);
    for v in &report.violations {
        println!("{v}");
    }
    println!(
        "{} tools, {} violations; {} tools not in OpenAI strict form (informative)",
        report.tools,
        report.violations.len(),
        report.not_strict.len()
    );
    if !report.violations.is_empty() {
        bail!("{} schema-lint violations", report.violations.len());
    }
    Ok(())
}

fn trim_command(o: &mut Options) -> anyhow::Result<()> {
    let file = o.file("the OpenAPI document")?;
    let provider = o.need("provider")?;
    let source = o.need("source")?;
    let licence = o.need("licence")?;
    let out = PathBuf::from(o.need("out")?);
    let api_root = o.take("api-root");
    let credential_parameters: Vec<String> =
        o.take("credential-parameters").map(|l| l.split(',').map(str::to_string).collect()).unwrap_or_default();
    let json_for_form = o.take("json-for-form");
    let dir = o.take("catalog").map(PathBuf::from).unwrap_or_else(|| default_dir(None));
    o.done()?;
    let doc = read_document(&file)?;
    let catalog = Catalog::load_dir(&dir, &BTreeMap::new())?;
    let root_url = match api_root.clone().or_else(|| doc.base_url()) {
        Some(url) => url,
        None => bail!("the document names no server URL; pass --api-root"),
    };
    let root = ApiRoot::parse(&root_url).map_err(anyhow::Error::msg)?;
    let mut keep = BTreeSet::new();
    let mut unmatched = Vec::new();
    for entry in catalog.tools().filter(|t| t.provider.id == provider) {
        for example in &entry.tool.guidance.examples {
            if validate_arguments(entry, &example.arguments).is_err() {
                continue;
            }
            // The real base URL, not an override: the document speaks of the real one.
            let Ok(request) = render_request(entry, &example.arguments) else {
                continue;
            };
            match matching_operation(&doc, &root, &request) {
                Ok(op) => {
                    keep.insert(op);
                }
                Err(e) => unmatched.push(format!("{}: {e}", entry.name)),
            }
        }
    }
    if keep.is_empty() {
        bail!("no tool of {provider} matches an operation of {}", file.display());
    }
    let mut stamp = serde_json::json!({
        "provider": provider,
        "source": source,
        "licence": licence,
        "api_root": root_url,
        "trimmed_by": "catalog/specs/update (clawlink-api catalog trim-spec)",
        "operations": keep.len(),
    });
    if !credential_parameters.is_empty() {
        stamp["credential_parameters"] = serde_json::json!(credential_parameters);
    }
    if let Some(reason) = json_for_form {
        stamp["json_for_form"] = serde_json::json!(reason);
    }
    let trimmed = crate::trim::trim(&doc, &keep, stamp);
    let text = serde_json::to_string_pretty(&trimmed)? + "\n";
    std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {} ({} operations, {} KB)", out.display(), keep.len(), text.len() / 1024);
    for line in unmatched {
        eprintln!("  not in the document: {line}");
    }
    Ok(())
}
