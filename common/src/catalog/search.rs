//! Ranked tool search: how an agent finds "send an email" or "what's on my calendar
//! tomorrow" among thousands of tools.
//!
//! An inverted index built once when the catalog loads ([`SearchIndex::build`]): each
//! word maps to the tools it appears in, with the weight of the heaviest place it appears
//! — the tool's name and title weigh most, then its synonyms, its integration (id, name,
//! aliases), then its description and categories. Words are normalised the same way on
//! both sides (case, a light suffix stemmer: "emails", "emailed" and "emailing" are one
//! word), stop words dropped, and each query word also matches its everyday synonyms at a
//! discount ("mail" finds Gmail, "meeting" finds calendar events, "ticket" finds issues).
//!
//! A tool scores, over the query's words, the sum of `weight × idf`: a word most tools
//! carry ("create", "list") tells less than one few do ("gmail", "refund"), which is what
//! keeps the ranking right when thousands of imported tools share the common words. Three
//! adjustments then decide between close candidates:
//! - the query's verb naming the tool's own verb ("open" → create) adds a bonus;
//! - a multi-word synonym said whole ("check my email") adds a bonus;
//! - a query that names an integration ("… in jira") discounts every other integration's
//!   tools, so a request that says where it goes is not answered from elsewhere.
//!
//! Ties go to the shorter name. Searching touches only the postings of the query's words,
//! never the whole catalog. Knows nothing about HTTP or who is asking: the caller passes
//! the integrations to keep and the ones to prefer (the person's connected apps).

use super::Catalog;
use super::ToolEntry;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "my", "me", "i", "to", "on", "in", "for", "of", "is", "are", "what", "whats", "what's", "do",
    "please", "and", "with", "from", "some", "can", "you", "it", "this", "that", "at", "by", "be", "there", "any",
    "about", "our", "we", "as", "all", "who", "which", "into", "up", "am", "so", "us", "its", "your",
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
    ("available", &["freebusy", "free"]),
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
    ("search", &["list", "find", "query"]),
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
    ("cancel", &["delete"]),
    ("edit", &["update"]),
    ("reschedule", &["update", "event"]),
    ("postpone", &["update", "event"]),
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
    ("who", &["user", "member"]),
    ("people", &["user", "member", "contact"]),
];

/// Weights of the places a word can appear in a tool.
const WEIGHT_DESCRIPTION: f32 = 1.0;
const WEIGHT_INTEGRATION: f32 = 2.0;
const WEIGHT_SYNONYM: f32 = 2.5;
const WEIGHT_TITLE: f32 = 3.0;
/// What a query word is worth when it matches only through one of its synonyms.
const RELATED_DISCOUNT: f32 = 0.6;
/// The query's verb naming the tool's verb, per unit of the verb's idf.
const VERB_BONUS: f32 = 1.5;
/// The most a word's rarity multiplies it by: a word in one tool of ten thousand (a name
/// in an example, "Ana") is not worth three times one in a hundred ("email").
const MAX_IDF: f32 = 4.0;
/// The first word of the query weighs this much more than the others.
const LEAD_WORD: f32 = 1.5;
/// A multi-word synonym found whole in the query.
const PHRASE_BONUS: f32 = 6.0;
/// A tool of an integration the query does not name, when it names one.
const OTHER_INTEGRATION: f32 = 0.4;
/// A tool of an integration the caller prefers (connected).
const PREFERRED: f32 = 1.25;

fn normalise(word: &str) -> Option<String> {
    let w: String = word.chars().filter(|c| c.is_alphanumeric() || *c == '_').collect::<String>().to_lowercase();
    if w.is_empty() || STOP_WORDS.contains(&w.as_str()) {
        return None;
    }
    Some(stem(&w))
}

/// A light suffix stemmer: plural and verb endings, then a final silent e, so "create",
/// "creates", "created" and "creating" meet at "creat". Applied the same way to the
/// catalog's words and the query's, so it only has to be consistent, not linguistic.
pub fn stem(w: &str) -> String {
    let mut w = w.to_string();
    if w.chars().any(|c| !c.is_ascii_alphabetic()) {
        return w;
    }
    if let Some(base) = w.strip_suffix("ies").filter(|b| b.len() > 2) {
        w = format!("{base}y");
    } else if w.ends_with("sses") {
        w.truncate(w.len() - 2);
    } else if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w.truncate(w.len() - 1);
    }
    if w.len() > 5 && w.ends_with("ing") {
        w.truncate(w.len() - 3);
    } else if w.len() > 4 && w.ends_with("ed") && !w.ends_with("eed") {
        w.truncate(w.len() - 2);
    }
    if w.len() > 3 && w.ends_with('e') && !w.ends_with("ee") {
        w.truncate(w.len() - 1);
    }
    w
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'')).flat_map(|w| w.split('_')).filter_map(normalise)
}

/// What the index reads of one tool (also written and read as JSON by the search bench
/// and the suite's distractor set).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SearchDoc {
    /// `<integration>_<action>`.
    pub name: String,
    pub integration: String,
    pub integration_name: String,
    pub integration_aliases: Vec<String>,
    pub categories: Vec<String>,
    pub action: String,
    pub title: String,
    pub description: String,
    pub synonyms: Vec<String>,
    /// The tool only reads (its mode is `read`).
    pub reads: bool,
}

impl SearchDoc {
    pub fn of(tool: &ToolEntry) -> SearchDoc {
        SearchDoc {
            name: tool.name.clone(),
            integration: tool.provider.id.clone(),
            integration_name: tool.provider.name.clone(),
            integration_aliases: tool.provider.aliases.clone(),
            categories: tool.provider.categories.clone(),
            action: tool.tool.action.clone(),
            title: tool.tool.title.clone(),
            description: tool.tool.description.clone(),
            synonyms: tool.tool.synonyms.clone(),
            reads: tool.tool.mode == super::Mode::Read,
        }
    }
}

/// One indexed tool: what ranking needs beyond the postings.
#[derive(Debug)]
struct Entry {
    name: String,
    integration: String,
    /// The first word of the action, stemmed ("creat" for `create_issue`).
    verb: String,
    /// Multi-word synonyms, lower-cased.
    phrases: Vec<String>,
    reads: bool,
}

/// The inverted index over every tool of a catalog.
#[derive(Debug, Default)]
pub struct SearchIndex {
    entries: Vec<Entry>,
    /// word → (entry, weight of the heaviest place the word has in that tool).
    postings: HashMap<String, Vec<(u32, f32)>>,
    /// A word's inverse document frequency, `ln(1 + N / df)`, at most [`MAX_IDF`].
    idf: HashMap<String, f32>,
    /// Words that name an integration (its id's words and its aliases)
    /// → the integrations they name.
    integration_words: HashMap<String, BTreeSet<String>>,
    concepts: HashMap<String, Vec<String>>,
}

/// What to search among and what to favour.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    /// Only tools of these integrations (all when `None`).
    pub integrations: Option<&'a BTreeSet<String>>,
    /// Tools of these integrations rank a little higher (the person's connected apps).
    pub prefer: Option<&'a BTreeSet<String>>,
    /// Only tools that read (a device whose grant is read-only).
    pub reads_only: bool,
}

impl SearchIndex {
    /// Indexes `docs`; a hit's number is the doc's position here.
    pub fn build(docs: impl IntoIterator<Item = SearchDoc>) -> SearchIndex {
        let mut index = SearchIndex::default();
        let mut postings: HashMap<String, HashMap<u32, f32>> = HashMap::new();
        for (n, doc) in docs.into_iter().enumerate() {
            let n = n as u32;
            let mut add = |word: String, weight: f32| {
                let w = postings.entry(word).or_default().entry(n).or_insert(0.0);
                *w = w.max(weight);
            };
            for text in std::iter::once(&doc.description).chain(&doc.categories) {
                words(text).for_each(|w| add(w, WEIGHT_DESCRIPTION));
            }
            let mut integration_text = vec![doc.integration.clone(), doc.integration_name.clone()];
            integration_text.extend(doc.integration_aliases.iter().cloned());
            for text in &integration_text {
                words(text).for_each(|w| add(w, WEIGHT_INTEGRATION));
            }
            add(doc.integration.clone(), WEIGHT_INTEGRATION);
            for s in &doc.synonyms {
                words(s).for_each(|w| add(w, WEIGHT_SYNONYM));
            }
            for text in [&doc.title, &doc.action] {
                words(text).for_each(|w| add(w, WEIGHT_TITLE));
            }
            // The words that name this integration: its id's words and its aliases. Not its
            // display name: an imported document's title is often generic ("Email Activity
            // (beta)" is SendGrid's), and an id is what a person types.
            let naming = words(&doc.integration)
                .chain(doc.integration_aliases.iter().flat_map(|a| words(a)))
                .chain(std::iter::once(doc.integration.clone()));
            for w in naming {
                index.integration_words.entry(w).or_default().insert(doc.integration.clone());
            }
            index.entries.push(Entry {
                verb: doc.action.split('_').next().and_then(normalise).unwrap_or_default(),
                phrases: doc
                    .synonyms
                    .iter()
                    .filter(|s| s.split_whitespace().count() > 1)
                    .map(|s| s.to_lowercase())
                    .collect(),
                name: doc.name,
                reads: doc.reads,
                integration: doc.integration,
            });
        }
        let total = index.entries.len().max(1) as f32;
        for (word, list) in postings {
            index.idf.insert(word.clone(), (1.0 + total / list.len() as f32).ln().min(MAX_IDF));
            let mut list: Vec<(u32, f32)> = list.into_iter().collect();
            list.sort_unstable_by_key(|(n, _)| *n);
            index.postings.insert(word, list);
        }
        for (word, related) in CONCEPTS {
            let related: Vec<String> =
                related.iter().map(|r| if r.contains('_') { r.to_string() } else { stem(r) }).collect();
            index.concepts.entry(stem(word)).or_default().extend(related);
        }
        index
    }

    /// How many tools the index holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// About how many bytes of heap the index holds (its postings, words and entries), for
    /// the bench's memory figure.
    pub fn heap_bytes(&self) -> usize {
        let words: usize = self.postings.iter().map(|(w, list)| w.capacity() + list.capacity() * 8 + 48).sum();
        let idf: usize = self.idf.keys().map(|w| w.capacity() + 32).sum();
        let entries: usize = self
            .entries
            .iter()
            .map(|e| {
                e.name.capacity()
                    + e.integration.capacity()
                    + e.verb.capacity()
                    + e.phrases.iter().map(|p| p.capacity() + 24).sum::<usize>()
                    + std::mem::size_of::<Entry>()
            })
            .sum();
        words + idf + entries
    }

    /// The name of hit `n`.
    pub fn name(&self, n: usize) -> &str {
        &self.entries[n].name
    }

    /// The best `limit` hits for `query` within `scope`, best first: (doc number, score).
    pub fn search(&self, query: &str, scope: Scope<'_>, limit: usize) -> Vec<(usize, f64)> {
        let mut query_words: Vec<String> = Vec::new();
        for w in words(query) {
            if !query_words.contains(&w) {
                query_words.push(w);
            }
        }
        if query_words.is_empty() || limit == 0 {
            return Vec::new();
        }
        let idf = |w: &str| self.idf.get(w).copied().unwrap_or(0.0);
        // Dense accumulators: a search touches only the postings of its words, and two
        // arrays of the catalog's size are cheaper than hashing every posting.
        let mut scores = vec![0f32; self.entries.len()];
        let mut best = vec![0f32; self.entries.len()];
        let mut candidates: Vec<u32> = Vec::new();
        let mut touched: Vec<u32> = Vec::new();
        for (position, w) in query_words.iter().enumerate() {
            // A request's first word is usually its intent ("email ana about lunch").
            let lead = if position == 0 { LEAD_WORD } else { 1.0 };
            let mut take = |word: &str, factor: f32| {
                let Some(list) = self.postings.get(word) else { return };
                let value = idf(word) * factor * lead;
                for &(n, weight) in list {
                    let b = &mut best[n as usize];
                    if *b == 0.0 {
                        touched.push(n);
                    }
                    *b = b.max(weight * value);
                }
            };
            take(w, 1.0);
            for related in self.concepts.get(w).into_iter().flatten() {
                take(related, RELATED_DISCOUNT);
            }
            for n in touched.drain(..) {
                let s = &mut scores[n as usize];
                if *s == 0.0 {
                    candidates.push(n);
                }
                *s += std::mem::take(&mut best[n as usize]);
            }
        }
        // The verbs the query says: its words, and what its first word stands for ("open"
        // says create, "email ana" says send); a later word's synonyms say it less surely
        // ("search my email" does not say send).
        let verbs: HashSet<&str> = query_words
            .iter()
            .chain(self.concepts.get(&query_words[0]).into_iter().flatten())
            .map(String::as_str)
            .collect();
        let implied: HashSet<&str> = query_words[1..]
            .iter()
            .flat_map(|w| self.concepts.get(w).into_iter().flatten())
            .map(String::as_str)
            .collect();
        let named: HashSet<&str> =
            query_words.iter().filter_map(|w| self.integration_words.get(w)).flatten().map(String::as_str).collect();
        let lowered = query.to_lowercase();
        let mut hits: Vec<(usize, f32)> = candidates
            .into_iter()
            .map(|n| n as usize)
            .filter(|n| scope.integrations.is_none_or(|keep| keep.contains(&self.entries[*n].integration)))
            .filter(|n| !scope.reads_only || self.entries[*n].reads)
            .map(|n| {
                let e = &self.entries[n];
                let mut score = scores[n];
                // The query's verb naming the tool's own verb decides between tools on the
                // same thing ("open a ticket" → create_issue, not list_issues).
                if verbs.contains(e.verb.as_str()) {
                    score += VERB_BONUS * idf(&e.verb).max(1.0);
                } else if implied.contains(e.verb.as_str()) {
                    score += VERB_BONUS * idf(&e.verb).max(1.0) / 2.0;
                }
                if e.phrases.iter().any(|p| lowered.contains(p.as_str())) {
                    score += PHRASE_BONUS;
                }
                if !named.is_empty() && !named.contains(e.integration.as_str()) {
                    score *= OTHER_INTEGRATION;
                }
                if scope.prefer.is_some_and(|p| p.contains(&e.integration)) {
                    score *= PREFERRED;
                }
                (n, score)
            })
            .collect();
        let order = |a: &(usize, f32), b: &(usize, f32)| {
            let (na, nb) = (&self.entries[a.0].name, &self.entries[b.0].name);
            b.1.total_cmp(&a.1).then_with(|| na.len().cmp(&nb.len())).then_with(|| na.cmp(nb))
        };
        if hits.len() > limit {
            hits.select_nth_unstable_by(limit - 1, order);
            hits.truncate(limit);
        }
        hits.sort_by(order);
        hits.into_iter().map(|(n, score)| (n, f64::from(score))).collect()
    }
}

/// The best `limit` tools for `query`, best first, with their scores.
pub fn search<'a>(
    catalog: &'a Catalog,
    query: &str,
    integration: Option<&str>,
    limit: usize,
) -> Vec<(&'a Arc<ToolEntry>, f64)> {
    let only: Option<BTreeSet<String>> = integration.map(|i| BTreeSet::from([i.to_string()]));
    search_scoped(catalog, query, Scope { integrations: only.as_ref(), ..Scope::default() }, limit)
}

/// [`search`] within a [`Scope`].
pub fn search_scoped<'a>(
    catalog: &'a Catalog,
    query: &str,
    scope: Scope<'_>,
    limit: usize,
) -> Vec<(&'a Arc<ToolEntry>, f64)> {
    catalog.search.search(query, scope, limit).into_iter().map(|(n, score)| (&catalog.ordered[n], score)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_of_a_word_meet() {
        for group in [
            &["create", "creates", "created", "creating"][..],
            &["email", "emails", "emailed"],
            &["issue", "issues"],
            &["reply", "replies"],
            &["schedule", "scheduled", "scheduling"],
            &["message", "messages"],
        ] {
            let stems: BTreeSet<String> = group.iter().map(|w| stem(w)).collect();
            assert_eq!(stems.len(), 1, "{group:?} → {stems:?}");
        }
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("class"), "class");
    }

    fn doc(integration: &str, action: &str, title: &str) -> SearchDoc {
        SearchDoc {
            name: format!("{integration}_{action}"),
            integration: integration.into(),
            integration_name: integration.into(),
            action: action.into(),
            title: title.into(),
            description: title.into(),
            ..SearchDoc::default()
        }
    }

    #[test]
    fn a_named_integration_wins_over_common_words_elsewhere() {
        let mut docs = vec![doc("jira", "create_issue", "Create an issue")];
        docs.extend((0..200).map(|i| doc(&format!("other{i}"), "create_issue", "Create an issue")));
        let index = SearchIndex::build(docs);
        let hits = index.search("open a jira ticket", Scope::default(), 3);
        assert_eq!(index.name(hits[0].0), "jira_create_issue", "{hits:?}");
        let keep = BTreeSet::from(["other7".to_string()]);
        let hits = index.search("create issue", Scope { integrations: Some(&keep), ..Scope::default() }, 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(index.name(hits[0].0), "other7_create_issue");
    }
}
