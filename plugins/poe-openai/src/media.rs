//! Finds generated media in an answer. Poe's image, video and audio bots
//! answer through chat completions with links inside `message.content`
//! (image bots: a markdown image `![..](url)` plus the bare URL; audio bots
//! just the bare URL; there is no attachments field), so the links are
//! scanned out of the text.

use poe_plugin_api::{Media, OutputKind};

/// Characters that end a URL in running text or markdown.
fn ends_url(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ')' | ']' | '(' | '[' | '"' | '\'' | '<' | '>' | '`' | '{' | '}' | '|'
        )
}

/// Every distinct `http(s)` URL in `text`, in order of first appearance.
/// Markdown targets and bare URLs are both found; trailing sentence
/// punctuation is not part of a URL.
pub(crate) fn extract_urls(text: &str) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = find_scheme(rest) {
        let candidate = &rest[start..];
        let end = candidate.find(ends_url).unwrap_or(candidate.len());
        let url = candidate[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', '*', '_']);
        let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or("");
        if !after_scheme.is_empty() && !urls.iter().any(|u| u == url) {
            urls.push(url.to_string());
        }
        rest = &candidate[end.max(1)..];
    }
    urls
}

/// Byte offset of the next `http://` or `https://` (ASCII case-insensitive).
fn find_scheme(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    match (lower.find("http://"), lower.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The MIME type implied by the URL's file extension, when it is obvious.
pub(crate) fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let (_, ext) = file.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" | "oga" => "audio/ogg",
        "m4a" => "audio/mp4",
        "flac" => "audio/flac",
        "aac" => "audio/aac",
        _ => return None,
    })
}

/// The media links in `text`, as `kind`.
pub(crate) fn extract(text: &str, kind: OutputKind) -> Vec<Media> {
    extract_urls(text)
        .into_iter()
        .map(|url| Media {
            mime_type: guess_mime(&url).map(str::to_string),
            url,
            kind,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_image_plus_bare_url_is_one_link() {
        let text = "![cat](https://pfst.cf2.poecdn.net/base/image/abc.png)\n\nhttps://pfst.cf2.poecdn.net/base/image/abc.png";
        assert_eq!(
            extract_urls(text),
            vec!["https://pfst.cf2.poecdn.net/base/image/abc.png".to_string()]
        );
        let media = extract(text, OutputKind::Image);
        assert_eq!(media.len(), 1);
        assert_eq!(media[0].mime_type.as_deref(), Some("image/png"));
        assert_eq!(media[0].kind, OutputKind::Image);
    }

    #[test]
    fn bare_audio_url_without_extension() {
        let text = "https://pfst.cf2.poecdn.net/base/audio/1678e64d0ba280a0d4";
        let media = extract(text, OutputKind::Audio);
        assert_eq!(media.len(), 1);
        assert_eq!(media[0].url, text);
        assert_eq!(media[0].mime_type, None);
    }

    #[test]
    fn keeps_order_dedupes_and_trims_punctuation() {
        let text = "First http://a.example/x.mp4, then [b](https://b.example/y.webm \"title\"). \
                    Again: http://a.example/x.mp4. HTTPS://C.example/z.MP3?sig=1!";
        assert_eq!(
            extract_urls(text),
            vec![
                "http://a.example/x.mp4",
                "https://b.example/y.webm",
                "HTTPS://C.example/z.MP3?sig=1",
            ]
        );
        assert_eq!(
            guess_mime("HTTPS://C.example/z.MP3?sig=1"),
            Some("audio/mpeg")
        );
    }

    #[test]
    fn no_urls_no_media_and_no_panic_on_odd_text() {
        assert!(extract_urls("no links here").is_empty());
        assert!(extract_urls("https://").is_empty());
        assert!(extract_urls("http://)").is_empty());
        assert_eq!(
            extract_urls("ünïcödé https://x.example/é.png ✓"),
            vec!["https://x.example/é.png"]
        );
    }
}
