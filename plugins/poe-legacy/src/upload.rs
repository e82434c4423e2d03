//! Attachments, uploaded the way fastapi_poe's `upload_file` uploads them,
//! so the bot gets a Poe-hosted URL it can fetch:
//!
//! `POST {POE_LEGACY_UPLOAD_URL without trailing /}/file_upload_3RD_PARTY_POST`
//! with the header `Authorization: <api key>` (the bare key, no `Bearer`),
//! and either a multipart form with a `file` part (raw bytes, here from a
//! `data:` URL) or an urlencoded form `download_url` (+ `download_filename`)
//! for a file Poe should fetch itself. Anything but 200 is a failure; the
//! JSON answer must carry `attachment_url` and `mime_type`, which become the
//! protocol attachment's `url` and `content_type` (`name` is the file name,
//! or `"file"`).

use base64::Engine;
use poe_plugin_api::{Attachment, ErrorKind, PluginError};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::errors::{self, body_message, truncate};
use crate::query::ProtocolAttachment;
use crate::{Call, errors::retry_after_ms};

/// fastapi_poe's upload endpoint name under the upload base URL.
const ENDPOINT: &str = "file_upload_3RD_PARTY_POST";
/// Most of an upload answer we read.
const MAX_ANSWER: usize = 64 * 1024;

/// Uploads every attachment of every message; `result[i]` belongs to
/// `request.messages[i]`.
pub(crate) async fn upload_all(
    call: &Call<'_>,
) -> Result<Vec<Vec<ProtocolAttachment>>, PluginError> {
    let mut all = Vec::with_capacity(call.request.messages.len());
    for message in &call.request.messages {
        let mut uploaded = Vec::with_capacity(message.attachments.len());
        for attachment in &message.attachments {
            uploaded.push(upload(call, attachment).await?);
        }
        all.push(uploaded);
    }
    Ok(all)
}

/// A decoded `data:` URL: media type and bytes.
#[derive(Debug, PartialEq)]
pub(crate) struct DataUrl {
    pub(crate) mime: String,
    pub(crate) bytes: Vec<u8>,
}

/// Parses `data:[<media type>][;base64],<data>` (RFC 2397).
pub(crate) fn parse_data_url(url: &str) -> Result<DataUrl, PluginError> {
    let bad = |why: &str| {
        PluginError::new(
            ErrorKind::InvalidRequest,
            format!("attachment is not a valid data: URL ({why})"),
        )
    };
    let rest = url
        .get(..5)
        .filter(|s| s.eq_ignore_ascii_case("data:"))
        .map(|_| &url[5..])
        .ok_or_else(|| bad("missing data: prefix"))?;
    let (meta, data) = rest.split_once(',').ok_or_else(|| bad("no comma"))?;
    let (mime, is_base64) = match meta.strip_suffix(";base64") {
        Some(mime) => (mime, true),
        None => (meta, false),
    };
    let bytes = if is_base64 {
        // Data URLs in the wild carry whitespace and omit padding.
        let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.trim_end_matches('='))
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(compact.trim_end_matches('='))
            })
            .map_err(|_| bad("bad base64"))?
    } else {
        percent_encoding::percent_decode_str(data).collect()
    };
    let mime = mime.split(';').next().unwrap_or("").trim();
    Ok(DataUrl {
        mime: if mime.is_empty() {
            "text/plain".to_string()
        } else {
            mime.to_string()
        },
        bytes,
    })
}

async fn upload(
    call: &Call<'_>,
    attachment: &Attachment,
) -> Result<ProtocolAttachment, PluginError> {
    let endpoint = call
        .upload_url
        .join(ENDPOINT)
        .map_err(|e| PluginError::new(ErrorKind::Unavailable, format!("bad upload URL: {e}")))?;
    let name = attachment
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let builder = call
        .http
        .post(endpoint)
        .header(reqwest::header::AUTHORIZATION, call.api_key);
    let scheme = attachment
        .url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    let builder = match scheme.as_str() {
        "data" => {
            let data = parse_data_url(&attachment.url)?;
            let mime = attachment.content_type.clone().unwrap_or(data.mime);
            // fastapi_poe insists on a file name for raw bytes.
            let file_name = name.unwrap_or("attachment").to_string();
            let part = Part::bytes(data.bytes)
                .file_name(file_name)
                .mime_str(&mime)
                .map_err(|_| {
                    PluginError::new(
                        ErrorKind::InvalidRequest,
                        format!("attachment has an invalid content type {mime:?}"),
                    )
                })?;
            builder.multipart(Form::new().part("file", part))
        }
        "http" | "https" => {
            let mut form = vec![("download_url", attachment.url.as_str())];
            if let Some(name) = name {
                form.push(("download_filename", name));
            }
            builder.form(&form)
        }
        _ => {
            return Err(PluginError::new(
                ErrorKind::InvalidRequest,
                "attachments must be https: or data: URLs",
            ));
        }
    };
    let response = builder.send().await.map_err(errors::transport)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = errors::read_capped(response, MAX_ANSWER).await;
    if status != 200 {
        return Err(upload_error(status, &headers, &body));
    }
    let answer: Value = serde_json::from_str(&body).map_err(|_| {
        PluginError::new(
            ErrorKind::Upstream,
            format!(
                "attachment upload answered with something other than JSON: {:?}",
                truncate(body.trim(), 80)
            ),
        )
        .with_status(status)
    })?;
    let field = |key: &str| answer.get(key).and_then(Value::as_str).map(str::to_string);
    match (field("attachment_url"), field("mime_type")) {
        (Some(url), Some(content_type)) => Ok(ProtocolAttachment {
            url,
            content_type,
            name: name.unwrap_or("file").to_string(),
        }),
        _ => Err(PluginError::new(
            ErrorKind::Upstream,
            "attachment upload answer lacks attachment_url or mime_type",
        )
        .with_status(status)),
    }
}

/// A failed upload, by status (fastapi_poe raises `AttachmentUploadError`
/// with the status and body).
fn upload_error(status: u16, headers: &reqwest::header::HeaderMap, body: &str) -> PluginError {
    let said = body_message(body).unwrap_or_else(|| "no details".to_string());
    let message = truncate(&format!("attachment upload failed: {said}"), 300);
    let kind = match status {
        401 | 403 => ErrorKind::Auth,
        429 => ErrorKind::RateLimited,
        413 => ErrorKind::InvalidRequest,
        400..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Upstream,
    };
    let mut error = PluginError::new(kind, message).with_status(status);
    if status == 429
        && let Some(ms) = retry_after_ms(headers, std::time::SystemTime::now())
    {
        error = error.with_retry_after_ms(ms);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls() {
        let d = parse_data_url("data:image/png;base64,aGVsbG8=").unwrap();
        assert_eq!(d.mime, "image/png");
        assert_eq!(d.bytes, b"hello");
        let d = parse_data_url("data:,a%20b").unwrap();
        assert_eq!(
            (d.mime.as_str(), d.bytes.as_slice()),
            ("text/plain", &b"a b"[..])
        );
        let d = parse_data_url("DATA:text/plain;charset=utf-8;base64,aGVsbG8").unwrap();
        assert_eq!(
            (d.mime.as_str(), d.bytes.as_slice()),
            ("text/plain", &b"hello"[..])
        );
        assert!(parse_data_url("data:image/png;base64,@@@").is_err());
        assert!(parse_data_url("https://x").is_err());
    }

    #[test]
    fn upload_failures() {
        let none = reqwest::header::HeaderMap::new();
        assert_eq!(upload_error(401, &none, "").kind, ErrorKind::Auth);
        assert_eq!(upload_error(400, &none, "").kind, ErrorKind::InvalidRequest);
        let e = upload_error(500, &none, r#"{"error":"disk full"}"#);
        assert_eq!((e.kind, e.status), (ErrorKind::Upstream, Some(500)));
        assert!(e.message.contains("disk full"));
    }
}
