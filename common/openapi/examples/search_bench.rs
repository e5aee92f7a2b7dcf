//! Search at catalog scale: how long the index takes to build and a search takes, with
//! the shipped catalog plus the importer's output for big published specs, and how many
//! of the eval set's requests still find their tool in the top three.
//!
//! ```sh
//! cargo run --release -p clawlink-openapi --example search_bench -- \
//!     --spec gitlab=api/gitlab.com.json --spec zoom=api/zoom.us.json … [--dump FILE] [--docs FILE]
//! ```
//!
//! Each `--spec id=FILE` is imported as provider `id` (as `clawlink-api catalog import`
//! does). `--dump FILE` writes what search reads of every imported tool as JSON lines:
//! that is how `common/tests/data/search_distractors.jsonl` is made; `--docs FILE` reads
//! such a file back instead of importing again. Prints a table.

use clawlink_common::catalog::search::{Scope, SearchDoc, SearchIndex};
use clawlink_common::catalog::{Catalog, default_dir};
use clawlink_openapi::{Document, ImportOptions, import};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

const CASES: &str = include_str!("../../tests/data/search_eval.tsv");
/// Each eval request is searched this many times for the latency figures.
const ROUNDS: usize = 200;

fn main() -> anyhow::Result<()> {
    let mut specs = Vec::new();
    let mut dump = None;
    let mut docs_files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--spec" => {
                let value = args.next().ok_or_else(|| anyhow::anyhow!("--spec needs id=FILE"))?;
                let (id, file) = value.split_once('=').ok_or_else(|| anyhow::anyhow!("--spec needs id=FILE"))?;
                specs.push((id.to_string(), file.to_string()));
            }
            "--docs" => docs_files.push(args.next().ok_or_else(|| anyhow::anyhow!("--docs needs a file"))?),
            "--dump" => dump = Some(args.next().ok_or_else(|| anyhow::anyhow!("--dump needs a file"))?),
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }

    let rss_start = rss_kib();
    let started = Instant::now();
    let catalog = Catalog::load_dir(&default_dir(None), &BTreeMap::new())?;
    let catalog_load = started.elapsed();
    let rss_catalog = rss_kib();

    let mut imported = Vec::new();
    let started = Instant::now();
    for (id, file) in &specs {
        let doc = Document::parse(&std::fs::read(file)?).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let made = import(&doc, &ImportOptions { provider: id.clone(), operations: None, base_url: None })?;
        eprintln!("{id}: {} operations, {} tools", made.report.operations, made.provider.tools.len());
        for tool in &made.provider.tools {
            imported.push(SearchDoc {
                name: format!("{id}_{}", tool.action),
                integration: id.clone(),
                integration_name: made.provider.name.clone(),
                integration_aliases: Vec::new(),
                categories: made.provider.categories.clone(),
                action: tool.action.clone(),
                title: tool.title.clone(),
                description: tool.description.clone(),
                synonyms: tool.synonyms.clone(),
                reads: tool.mode == clawlink_common::catalog::Mode::Read,
            });
        }
    }
    let import_time = started.elapsed();
    for file in &docs_files {
        for line in std::fs::read_to_string(file)?.lines() {
            imported.push(serde_json::from_str(line)?);
        }
    }
    if let Some(path) = &dump {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for doc in &imported {
            serde_json::to_writer(&mut out, doc)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }

    let docs: Vec<SearchDoc> = catalog.tools().map(|t| SearchDoc::of(t)).chain(imported.iter().cloned()).collect();
    let mut builds = Vec::new();
    let rss_before_index = rss_kib();
    let mut index = SearchIndex::default();
    for _ in 0..5 {
        let started = Instant::now();
        index = SearchIndex::build(docs.clone());
        builds.push(started.elapsed());
    }
    let rss_index = rss_kib();
    builds.sort();

    let cases: Vec<(&str, Vec<&str>)> = CASES
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(q, e)| (q, e.split('|').collect()))
        .collect();
    let mut hits = 0;
    let mut latencies = Vec::with_capacity(cases.len() * ROUNDS);
    for (query, expected) in &cases {
        let top = index.search(query, Scope::default(), 3);
        if top.iter().any(|(n, _)| expected.contains(&index.name(*n))) {
            hits += 1;
        } else {
            let names: Vec<&str> = top.iter().map(|(n, _)| index.name(*n)).collect();
            eprintln!("miss {query:?}: wanted {}, got {names:?}", expected.join(" or "));
        }
    }
    let mut per_query: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (query, _)) in cases.iter().enumerate() {
            let started = Instant::now();
            let top = index.search(query, Scope::default(), 10);
            let took = started.elapsed();
            latencies.push(took);
            per_query[i].push(took);
            std::hint::black_box(top);
        }
    }
    // The slowest requests by their median: what the tail is made of.
    let mut medians: Vec<(Duration, &str)> = per_query
        .iter_mut()
        .zip(&cases)
        .map(|(times, (query, _))| {
            times.sort();
            (times[times.len() / 2], *query)
        })
        .collect();
    medians.sort();
    for (median, query) in medians.iter().rev().take(3) {
        eprintln!("slowest: {query:?}, median {}", us(*median));
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];

    println!("| measure | value |");
    println!("|---|---:|");
    println!("| tools: catalog + imported | {} + {} = {} |", catalog.tools().count(), imported.len(), index.len());
    println!("| catalog load (parse, validate, compile schemas, build index) | {} |", ms(catalog_load));
    println!("| import of {} specs | {} |", specs.len(), ms(import_time));
    println!("| index build, median of 5 | {} |", ms(builds[2]));
    println!("| resident memory: start → catalog loaded | {} → {} MiB |", mib(rss_start), mib(rss_catalog));
    println!("| index heap, counted from its structures | {:.1} MiB |", index.heap_bytes() as f64 / (1024.0 * 1024.0));
    println!("| resident memory around the 5 builds | {} → {} MiB |", mib(rss_before_index), mib(rss_index));
    println!("| search latency p50 ({} searches, limit 10) | {} |", latencies.len(), us(pct(0.50)));
    println!("| search latency p99 | {} |", us(pct(0.99)));
    println!("| search latency max | {} |", us(*latencies.last().unwrap_or(&Duration::ZERO)));
    println!("| top-3 hit rate ({} requests) | {:.1} % |", cases.len(), 100.0 * hits as f64 / cases.len() as f64);
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// This process's resident set (Linux), in KiB; 0 elsewhere.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
