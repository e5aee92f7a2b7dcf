//! Ranked tool search: how an agent finds "send an email" or "what's on my calendar
//! tomorrow" among hundreds of tools.
//!
//! Each tool is a bag of weighted words — its name and title weigh most, then its
//! synonyms, its integration, and its description. A query's words are normalised (case,
//! plural s), stop words dropped, and each word also matches its everyday synonyms at a
//! discount ("mail" finds Gmail, "meeting" finds calendar events). A tool scores the sum,
//! over the query's words, of the heaviest place the word appears in it; ties go to the
//! shorter name.

use super::{Catalog, ToolEntry};
use std::collections::HashMap;
use std::sync::Arc;

const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "my", "me", "i", "to", "on", "in", "for", "of", "is", "are", "what", "whats", "what's", "do",
    "please", "and", "with", "from", "some", "can", "you", "it", "this", "that", "at", "by", "be", "there", "any",
    "about", "our", "we",
];

/// Everyday words and the catalog words they stand for.
const CONCEPTS: &[(&str, &[&str])] = &[
    ("email", &["gmail", "message", "mail", "send"]),
    ("mail", &["gmail", "message", "email"]),
    ("inbox", &["gmail", "message"]),
    ("calendar", &["google_calendar", "event"]),
    ("meeting", &["event", "calendar"]),
    ("appointment", &["event", "calendar"]),
    ("schedule", &["event", "calendar", "create"]),
    ("tomorrow", &["event", "calendar", "list"]),
    ("today", &["event", "calendar", "list"]),
    ("week", &["event", "calendar", "list"]),
    ("agenda", &["event", "calendar", "list"]),
    ("busy", &["freebusy", "free"]),
    ("free", &["freebusy", "busy"]),
    ("issue", &["ticket", "bug"]),
    ("bug", &["issue", "ticket"]),
    ("ticket", &["issue", "jira"]),
    ("pr", &["pull", "request"]),
    ("chat", &["message", "slack", "channel"]),
    ("dm", &["message", "slack"]),
    ("channel", &["slack", "discord"]),
    ("todo", &["task", "todoist"]),
    ("reminder", &["task", "todoist"]),
    ("task", &["todoist", "todo"]),
    ("doc", &["file", "document", "drive", "page"]),
    ("document", &["file", "drive", "page"]),
    ("folder", &["drive", "file"]),
    ("spreadsheet", &["file", "drive", "airtable"]),
    ("lead", &["contact", "hubspot"]),
    ("crm", &["hubspot", "contact", "deal"]),
    ("customer", &["contact", "stripe"]),
    ("deal", &["hubspot"]),
    ("wiki", &["notion", "page"]),
    ("note", &["page", "notion"]),
    ("payment", &["stripe", "charge", "intent"]),
    ("charge", &["stripe", "payment"]),
    ("invoice", &["stripe"]),
    ("refund", &["stripe"]),
    ("card", &["trello"]),
    ("board", &["trello"]),
    ("repo", &["repository", "github"]),
    ("repository", &["repo", "github"]),
    ("open", &["create"]),
    ("new", &["create"]),
    ("add", &["create"]),
    ("make", &["create"]),
    ("write", &["create", "send"]),
    ("start", &["create"]),
    ("file", &["create", "drive"]),
    ("send", &["post", "create", "message"]),
    ("post", &["send", "create", "message"]),
    ("reply", &["thread", "comment", "send"]),
    ("comment", &["reply"]),
    ("find", &["search", "list", "get"]),
    ("look", &["search", "get"]),
    ("lookup", &["search", "get"]),
    ("show", &["list", "get"]),
    ("see", &["list", "get"]),
    ("read", &["get", "list", "history"]),
    ("check", &["get", "list"]),
    ("fetch", &["get"]),
    ("remove", &["delete", "trash", "archive"]),
    ("trash", &["delete"]),
    ("delete", &["remove", "trash", "archive"]),
    ("edit", &["update"]),
    ("change", &["update"]),
    ("rename", &["update"]),
    ("modify", &["update"]),
    ("move", &["update", "transition"]),
    ("close", &["complete", "update"]),
    ("complete", &["close"]),
    ("finish", &["close", "complete"]),
    ("done", &["close", "complete"]),
    ("share", &["permission"]),
    ("react", &["reaction"]),
    ("emoji", &["reaction"]),
    ("assign", &["assignee"]),
];

fn normalise(word: &str) -> Option<String> {
    let w: String = word.chars().filter(|c| c.is_alphanumeric() || *c == '_').collect::<String>().to_lowercase();
    if w.is_empty() || STOP_WORDS.contains(&w.as_str()) {
        return None;
    }
    Some(stem(&w))
}

fn stem(w: &str) -> String {
    if let Some(base) = w.strip_suffix("ies").filter(|b| b.len() > 2) {
        return format!("{base}y");
    }
    if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        return w[..w.len() - 1].to_string();
    }
    w.to_string()
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'')).flat_map(|w| w.split('_')).filter_map(normalise)
}

/// A tool's searchable words with their weights.
fn bag(tool: &ToolEntry) -> HashMap<String, f64> {
    let mut bag = HashMap::new();
    let mut add = |text: &str, weight: f64| {
        for w in words(text) {
            let e = bag.entry(w).or_insert(0.0);
            if *e < weight {
                *e = weight;
            }
        }
    };
    add(&tool.tool.description, 1.0);
    for c in &tool.provider.categories {
        add(c, 1.0);
    }
    add(&tool.provider.id, 2.0);
    add(&tool.provider.name, 2.0);
    for s in &tool.tool.synonyms {
        add(s, 2.5);
    }
    add(&tool.tool.title, 3.0);
    add(&tool.tool.action, 3.0);
    bag.insert(tool.provider.id.clone(), 2.0_f64.max(*bag.get(&tool.provider.id).unwrap_or(&0.0)));
    bag
}

/// The best `limit` tools for `query`, best first, with their scores.
pub fn search<'a>(
    catalog: &'a Catalog,
    query: &str,
    integration: Option<&str>,
    limit: usize,
) -> Vec<(&'a Arc<ToolEntry>, f64)> {
    let query_words: Vec<String> = words(query).collect();
    if query_words.is_empty() {
        return Vec::new();
    }
    let lowered = query.to_lowercase();
    let mut scored: Vec<(&Arc<ToolEntry>, f64)> = catalog
        .tools()
        .filter(|t| integration.is_none_or(|i| t.provider.id == i))
        .filter_map(|t| {
            let bag = t.search_words.get_or_init(|| bag(t));
            let verb = t.tool.action.split('_').next().unwrap_or_default();
            let mut score = 0.0;
            let mut verb_matched = false;
            for w in &query_words {
                // The query's verb naming the tool's own verb ("open" → create) decides
                // between tools on the same thing.
                if !verb_matched && (w == verb || CONCEPTS.iter().any(|(k, rel)| *k == w && rel.contains(&verb))) {
                    score += 1.5;
                    verb_matched = true;
                }
                let direct = bag.get(w).copied().unwrap_or(0.0);
                let related = CONCEPTS
                    .iter()
                    .filter(|(k, _)| *k == w)
                    .flat_map(|(_, related)| related.iter())
                    .map(|r| bag.get(&stem(r)).copied().unwrap_or(0.0) * 0.6)
                    .fold(0.0, f64::max);
                score += direct.max(related);
            }
            // A synonym phrase said whole is strong evidence.
            for s in &t.tool.synonyms {
                if s.split_whitespace().count() > 1 && lowered.contains(&s.to_lowercase()) {
                    score += 3.0;
                }
            }
            (score > 0.0).then_some((t, score))
        })
        .collect();
    scored.sort_by(|a, b| {
        b.1.total_cmp(&a.1).then_with(|| a.0.name.len().cmp(&b.0.name.len())).then_with(|| a.0.name.cmp(&b.0.name))
    });
    scored.truncate(limit);
    scored
}
