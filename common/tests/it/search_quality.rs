//! Natural requests an agent passes on from its person must find the intended tool in
//! the top three.

use crate::catalog;
use clawlink_common::catalog::search::search;

const CASES: &[(&str, &str)] = &[
    ("send a slack message", "slack_post_message"),
    ("post in a slack channel", "slack_post_message"),
    ("open a github issue", "github_create_issue"),
    ("file a bug on github", "github_create_issue"),
    ("close a github issue", "github_close_issue"),
    ("merge a pull request", "github_merge_pull_request"),
    ("what's on my calendar tomorrow", "google_calendar_list_events"),
    ("schedule a meeting", "google_calendar_create_event"),
    ("cancel a calendar event", "google_calendar_delete_event"),
    ("when am I free this week", "google_calendar_find_free_busy"),
    ("search my email", "gmail_list_messages"),
    ("send an email", "gmail_send_email"),
    ("email ana about lunch", "gmail_send_email"),
    ("draft an email", "gmail_create_draft"),
    ("create a linear issue", "linear_create_issue"),
    ("what am I working on in linear", "linear_list_my_issues"),
    ("read an email", "gmail_get_message"),
    ("move an email to the trash", "gmail_trash_message"),
    ("find a file in google drive", "google_drive_list_files"),
    ("share a drive file with a colleague", "google_drive_share_file"),
    ("create a folder in drive", "google_drive_create_folder"),
    ("add a todo", "todoist_create_task"),
    ("mark a task as done", "todoist_close_task"),
    ("what are my tasks", "todoist_list_tasks"),
    ("create a jira ticket", "jira_create_issue"),
    ("search jira issues with jql", "jira_search_issues"),
    ("create a notion page", "notion_create_page"),
    ("search notion", "notion_search"),
    ("add a contact to hubspot", "hubspot_create_record"),
    ("create a trello card", "trello_create_card"),
    ("send a message in discord", "discord_send_message"),
    ("refund a stripe payment", "stripe_create_refund"),
    ("list stripe customers", "stripe_list_customers"),
    ("add records to airtable", "airtable_create_records"),
    ("react with an emoji in slack", "slack_add_reaction"),
    ("echo a test message", "sandbox_echo"),
];

#[test]
fn natural_queries_find_the_intended_tool_in_the_top_three() {
    let catalog = catalog();
    let mut misses = Vec::new();
    for (query, expected) in CASES {
        assert!(catalog.tool(expected).is_some(), "{expected} is not in the catalog");
        let top: Vec<String> = search(catalog, query, None, 3).into_iter().map(|(t, _)| t.name.clone()).collect();
        if !top.iter().any(|n| n == expected) {
            misses.push(format!("{query:?}: wanted {expected}, got {top:?}"));
        }
    }
    assert!(misses.is_empty(), "{} of {} queries missed:\n{}", misses.len(), CASES.len(), misses.join("\n"));
}

#[test]
fn the_integration_filter_and_limit_hold() {
    let catalog = catalog();
    let found = search(catalog, "create", Some("github"), 25);
    assert!(!found.is_empty() && found.iter().all(|(t, _)| t.provider.id == "github"));
    assert!(search(catalog, "create", None, 5).len() <= 5);
    assert!(search(catalog, "the a of", None, 5).is_empty(), "stop words alone match nothing");
}
