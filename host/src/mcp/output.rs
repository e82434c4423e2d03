//! Keeps tool results within what clients accept. Claude Code, for one,
//! rejects tool output over MAX_MCP_OUTPUT_TOKENS (25,000 by default); a
//! larger answer comes back as its head plus a pointer to the stored whole,
//! never as a failure.

use rmcp::model::{CallToolResult, ContentBlock};

/// Characters per token, the usual rough estimate for English text and code.
pub const CHARS_PER_TOKEN: usize = 4;

/// The character budget for `max_tokens`.
pub fn char_budget(max_tokens: usize) -> usize {
    max_tokens.saturating_mul(CHARS_PER_TOKEN)
}

/// The first `max_chars` characters of `text` (on a char boundary).
pub fn head(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// `result` with its text cut to `max_chars` in total, plus a note on how to
/// fetch the rest of job `job_id`.
pub fn cap(mut result: CallToolResult, job_id: &str, max_chars: usize) -> CallToolResult {
    let mut budget = max_chars;
    let mut cut = None;
    for block in result.content.iter_mut() {
        if let ContentBlock::Text(text) = block {
            let len = text.text.chars().count();
            if len > budget {
                cut.get_or_insert((budget, len));
                text.text = head(&text.text, budget).to_string();
                budget = 0;
            } else {
                budget -= len;
            }
        }
    }
    if let Some((shown, total)) = cut {
        result.content.push(ContentBlock::text(format!(
            "\n[poe-code: output truncated to fit the client's limit — {shown} of {total} characters shown. \
             The whole text is stored: call check_status with continuation_id \"{job_id}\", full_history true \
             and offset {shown} to read on.]"
        )));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_results_are_untouched() {
        let result = CallToolResult::success(vec![ContentBlock::text("short")]);
        let capped = cap(result.clone(), "job_1", 100);
        assert_eq!(capped, result);
    }

    #[test]
    fn large_results_keep_the_head_and_say_where_the_rest_is() {
        let text = "é".repeat(50);
        let capped = cap(
            CallToolResult::success(vec![ContentBlock::text(text)]),
            "job_9",
            10,
        );
        let first = capped.content[0].as_text().unwrap();
        assert_eq!(first.text.chars().count(), 10);
        let note = capped.content[1].as_text().unwrap();
        assert!(
            note.text.contains("job_9") && note.text.contains("offset 10"),
            "{}",
            note.text
        );
        assert_ne!(capped.is_error, Some(true));
    }
}
