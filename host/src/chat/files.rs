//! The files and images a `chat` call attaches: where they may be read
//! from, how big they may be, and what they become for the model.
//!
//! A path is allowed when it stays inside the session's working directory
//! or a configured root, both as written (`..` resolved) and after symlinks
//! are followed, so neither `../x` nor a link pointing out leaks a file. The
//! type comes from the content (magic bytes), never from the name: a PNG
//! named `.txt` is an image, a PDF becomes a PDF attachment, other content
//! is text when it has no NUL byte.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use poe_plugin_api::Attachment;

use crate::mcp::errors::Code;

/// Default cap of one text or PDF file.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Default cap of one image.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

/// How much of a file's start is searched for NUL bytes to call it binary.
const BINARY_SNIFF: usize = 8192;

/// Where files may be read from and how big they may be.
#[derive(Debug, Clone)]
pub struct InputRules {
    /// The calling session's working directory: relative paths start here,
    /// and it is an allowed root.
    pub cwd: Option<PathBuf>,
    /// More allowed roots (config.toml `[chat] roots`), absolute.
    pub roots: Vec<PathBuf>,
    pub max_file_bytes: u64,
    pub max_image_bytes: u64,
}

impl InputRules {
    /// The rules for a session working in `cwd`, from the `[chat]` settings.
    pub fn for_session(chat: &super::ChatSettings, cwd: Option<&str>) -> Self {
        Self {
            cwd: cwd.map(PathBuf::from),
            roots: chat.roots.clone(),
            max_file_bytes: chat.max_file_bytes,
            max_image_bytes: chat.max_image_bytes,
        }
    }
}

/// One attached file, ready for the model.
#[derive(Debug, Clone, PartialEq)]
pub enum FileInput {
    /// A text file as a line-numbered block with its name and size, to be
    /// put into the message text.
    Text { path: String, block: String },
    /// A PDF or an image, as a `data:` URL attachment.
    Attached(Attachment),
}

/// Why an attachment was refused; the message names the path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub code: Code,
    pub message: String,
}

fn refuse(code: Code, message: impl Into<String>) -> InputError {
    InputError {
        code,
        message: message.into(),
    }
}

/// Reads every file of `paths` (absolute, or relative to `rules.cwd`), in order.
pub fn read_files(paths: &[String], rules: &InputRules) -> Result<Vec<FileInput>, InputError> {
    paths.iter().map(|p| read_file(p, rules)).collect()
}

/// Reads every image of `specs` (paths as for files, `data:` URLs, or
/// `https:` URLs passed on as written) into attachments with the type found
/// in their content.
pub fn read_images(specs: &[String], rules: &InputRules) -> Result<Vec<Attachment>, InputError> {
    specs.iter().map(|s| read_image(s, rules)).collect()
}

fn read_file(written: &str, rules: &InputRules) -> Result<FileInput, InputError> {
    let path = allowed_path(written, rules)?;
    let cap = rules.max_file_bytes.max(rules.max_image_bytes);
    let bytes = read_capped(&path, written, cap)?;
    let name = file_name(&path);
    if let Some(kind) = infer::get(&bytes) {
        let mime = kind.mime_type();
        if mime == "application/pdf" {
            over_cap(written, bytes.len(), rules.max_file_bytes)?;
            return Ok(FileInput::Attached(data_attachment(mime, &bytes, name)));
        }
        if kind.matcher_type() == infer::MatcherType::Image {
            over_cap(written, bytes.len(), rules.max_image_bytes)?;
            return Ok(FileInput::Attached(data_attachment(mime, &bytes, name)));
        }
    }
    over_cap(written, bytes.len(), rules.max_file_bytes)?;
    if bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0) {
        return Err(refuse(
            Code::UnsupportedFile,
            format!(
                "{written} is binary; files takes text, PDFs and images ({})",
                infer::get(&bytes).map_or("unknown type", |k| k.mime_type())
            ),
        ));
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok(FileInput::Text {
        path: written.to_string(),
        block: numbered_block(written, bytes.len(), &text),
    })
}

fn read_image(spec: &str, rules: &InputRules) -> Result<Attachment, InputError> {
    if spec.starts_with("https://") {
        return Ok(Attachment {
            url: spec.to_string(),
            content_type: None,
            name: None,
        });
    }
    if let Some(rest) = spec.strip_prefix("data:") {
        let bytes = decode_data_url(rest)
            .ok_or_else(|| refuse(Code::InvalidImage, "a data: URL in images is not base64"))?;
        over_cap("a data: URL in images", bytes.len(), rules.max_image_bytes)?;
        let mime = image_type(&bytes).ok_or_else(|| {
            refuse(
                Code::InvalidImage,
                "a data: URL in images does not hold an image",
            )
        })?;
        return Ok(data_attachment(mime, &bytes, None));
    }
    let path = allowed_path(spec, rules)?;
    let bytes = read_capped(&path, spec, rules.max_image_bytes)?;
    over_cap(spec, bytes.len(), rules.max_image_bytes)?;
    let mime = image_type(&bytes).ok_or_else(|| {
        refuse(
            Code::InvalidImage,
            format!(
                "{spec} is not an image ({}); pass documents in files",
                infer::get(&bytes).map_or("text or unknown type", |k| k.mime_type())
            ),
        )
    })?;
    Ok(data_attachment(mime, &bytes, file_name(&path)))
}

/// The image type of `bytes` by their magic numbers.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    infer::get(bytes)
        .filter(|k| k.matcher_type() == infer::MatcherType::Image)
        .map(|k| k.mime_type())
}

/// The bytes of `<mime>;base64,<data>` (the part after `data:`).
fn decode_data_url(rest: &str) -> Option<Vec<u8>> {
    let (header, data) = rest.split_once(',')?;
    if !header.ends_with(";base64") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()
}

fn data_attachment(mime: &str, bytes: &[u8], name: Option<String>) -> Attachment {
    Attachment {
        url: format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
        content_type: Some(mime.to_string()),
        name,
    }
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn over_cap(what: &str, len: usize, cap: u64) -> Result<(), InputError> {
    if len as u64 > cap {
        return Err(refuse(
            Code::FileTooLarge,
            format!(
                "{what} is over the {cap}-byte limit (config.toml [chat] max_file_bytes / max_image_bytes)"
            ),
        ));
    }
    Ok(())
}

/// Reads at most `cap + 1` bytes, so a huge file costs no more than its cap.
fn read_capped(path: &Path, written: &str, cap: u64) -> Result<Vec<u8>, InputError> {
    let file = std::fs::File::open(path).map_err(|e| io_refusal(written, &e))?;
    let meta = file.metadata().map_err(|e| io_refusal(written, &e))?;
    if !meta.is_file() {
        return Err(refuse(
            Code::UnsupportedFile,
            format!("{written} is not a regular file"),
        ));
    }
    if meta.len() > cap {
        over_cap(written, meta.len().try_into().unwrap_or(usize::MAX), cap)?;
    }
    let mut bytes = Vec::with_capacity(meta.len().min(cap) as usize);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_refusal(written, &e))?;
    Ok(bytes)
}

fn io_refusal(written: &str, e: &std::io::Error) -> InputError {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            refuse(Code::FileNotFound, format!("{written} does not exist"))
        }
        std::io::ErrorKind::IsADirectory => refuse(
            Code::UnsupportedFile,
            format!("{written} is a directory; name the files in it"),
        ),
        _ => refuse(Code::UnsupportedFile, format!("cannot read {written}: {e}")),
    }
}

/// `written` as a path inside the allowed roots, symlinks followed.
fn allowed_path(written: &str, rules: &InputRules) -> Result<PathBuf, InputError> {
    if written.trim().is_empty() {
        return Err(refuse(Code::InvalidArgument, "an empty path was given"));
    }
    let expanded = super::expand_home(written);
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        match &rules.cwd {
            Some(cwd) => cwd.join(expanded),
            None => {
                return Err(refuse(
                    Code::PathNotAllowed,
                    format!(
                        "{written} is relative, and this session has no working directory; give an absolute path"
                    ),
                ));
            }
        }
    };
    let roots: Vec<&Path> = rules
        .cwd
        .iter()
        .chain(rules.roots.iter())
        .map(PathBuf::as_path)
        .collect();
    let not_allowed = || {
        refuse(
            Code::PathNotAllowed,
            format!(
                "{written} is outside the allowed directories ({}); add one to config.toml [chat] roots",
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    // As written first, so a path outside says so whether or not it exists.
    let lexical = normalize(&joined);
    if !roots.iter().any(|r| lexical.starts_with(normalize(r))) {
        // A root may itself sit behind a symlink (`/tmp` on macOS).
        let canonical_roots: Vec<PathBuf> =
            roots.iter().filter_map(|r| r.canonicalize().ok()).collect();
        if !canonical_roots.iter().any(|r| lexical.starts_with(r)) {
            return Err(not_allowed());
        }
    }
    let real = joined.canonicalize().map_err(|e| io_refusal(written, &e))?;
    if !roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|r| real.starts_with(r))
    {
        return Err(not_allowed());
    }
    Ok(real)
}

/// `path` with `.` and `..` resolved without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The file as the model sees it: a header with its name and size, every
/// line numbered (so answers can cite lines), and an end marker.
fn numbered_block(name: &str, bytes: usize, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let width = lines.len().max(1).to_string().len();
    let mut block = format!(
        "--- File: {name} ({bytes} bytes, {} lines) ---\n",
        lines.len()
    );
    for (i, line) in lines.iter().enumerate() {
        block.push_str(&format!("{:>width$} | {line}\n", i + 1));
    }
    block.push_str(&format!("--- End of file: {name} ---"));
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R',
    ];

    fn rules(cwd: &Path) -> InputRules {
        InputRules {
            cwd: Some(cwd.to_path_buf()),
            roots: vec![],
            max_file_bytes: 100,
            max_image_bytes: 200,
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, InputError>) -> Code {
        r.expect_err("refused").code
    }

    #[test]
    fn text_is_numbered_with_name_and_size() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rs"), "fn main() {}\n// end\n").unwrap();
        let got = read_files(&["a.rs".into()], &rules(dir.path())).unwrap();
        let FileInput::Text { path, block } = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(path, "a.rs");
        assert_eq!(
            block,
            "--- File: a.rs (20 bytes, 2 lines) ---\n1 | fn main() {}\n2 | // end\n--- End of file: a.rs ---"
        );
    }

    #[test]
    fn numbers_are_aligned() {
        let text: String = (1..=10).map(|i| format!("l{i}\n")).collect();
        let block = numbered_block("x", text.len(), &text);
        assert!(block.contains("\n 1 | l1\n"), "{block}");
        assert!(block.contains("\n10 | l10\n"), "{block}");
    }

    #[test]
    fn type_comes_from_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pic.txt"), PNG).unwrap();
        std::fs::write(dir.path().join("doc"), b"%PDF-1.4\n%%EOF\n").unwrap();
        let r = rules(dir.path());
        let got = read_files(&["pic.txt".into(), "doc".into()], &r).unwrap();
        let urls: Vec<&str> = got
            .iter()
            .map(|f| match f {
                FileInput::Attached(a) => a.url.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(urls[0].starts_with("data:image/png;base64,"));
        assert!(urls[1].starts_with("data:application/pdf;base64,"));
        let image = read_images(&["pic.txt".into()], &r).unwrap();
        assert_eq!(image[0].content_type.as_deref(), Some("image/png"));
        assert_eq!(image[0].name.as_deref(), Some("pic.txt"));
        assert_eq!(code(read_images(&["doc".into()], &r)), Code::InvalidImage);
    }

    #[test]
    fn binary_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bin"), [1u8, 0, 2, 3]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let r = rules(dir.path());
        assert_eq!(code(read_files(&["bin".into()], &r)), Code::UnsupportedFile);
        assert_eq!(code(read_files(&["sub".into()], &r)), Code::UnsupportedFile);
        assert_eq!(
            code(read_files(&["missing".into()], &r)),
            Code::FileNotFound
        );
        assert_eq!(code(read_files(&[" ".into()], &r)), Code::InvalidArgument);
    }

    #[test]
    fn caps_apply_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.txt"), "x".repeat(101)).unwrap();
        std::fs::write(dir.path().join("ok.txt"), "x".repeat(100)).unwrap();
        let mut big_png = PNG.to_vec();
        big_png.resize(150, 0);
        std::fs::write(dir.path().join("mid.png"), &big_png).unwrap();
        big_png.resize(201, 0);
        std::fs::write(dir.path().join("big.png"), &big_png).unwrap();
        let r = rules(dir.path());
        assert_eq!(
            code(read_files(&["big.txt".into()], &r)),
            Code::FileTooLarge
        );
        assert!(read_files(&["ok.txt".into()], &r).is_ok());
        assert!(
            read_images(&["mid.png".into()], &r).is_ok(),
            "images have their own cap"
        );
        assert_eq!(
            code(read_images(&["big.png".into()], &r)),
            Code::FileTooLarge
        );
    }

    #[test]
    fn escapes_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("p");
        std::fs::create_dir(&cwd).unwrap();
        std::fs::write(dir.path().join("sibling"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), cwd.join("link")).unwrap();
        let r = rules(&cwd);
        let secret = outside.path().join("secret").display().to_string();
        for p in ["../sibling", "link", &secret, "../nonexistent"] {
            assert_eq!(
                code(read_files(&[p.into()], &r)),
                Code::PathNotAllowed,
                "{p}"
            );
        }
        // A configured root lets the same absolute path in.
        let mut wider = r.clone();
        wider.roots.push(outside.path().to_path_buf());
        assert!(read_files(std::slice::from_ref(&secret), &wider).is_ok());
        assert!(read_files(&["link".into()], &wider).is_ok());
        // No working directory: relative paths have nothing to start from.
        let mut none = r.clone();
        none.cwd = None;
        assert_eq!(code(read_files(&["x".into()], &none)), Code::PathNotAllowed);
    }

    #[test]
    fn data_urls_are_checked_and_https_passes() {
        let dir = tempfile::tempdir().unwrap();
        let r = rules(dir.path());
        let b64 = base64::engine::general_purpose::STANDARD.encode(PNG);
        // The declared type is replaced by the one found.
        let got = read_images(&[format!("data:image/jpeg;base64,{b64}")], &r).unwrap();
        assert!(got[0].url.starts_with("data:image/png;base64,"));
        assert_eq!(
            code(read_images(&["data:image/png;base64,@@@".into()], &r)),
            Code::InvalidImage
        );
        let text = base64::engine::general_purpose::STANDARD.encode("hello");
        assert_eq!(
            code(read_images(&[format!("data:image/png;base64,{text}")], &r)),
            Code::InvalidImage
        );
        let url = "https://example.com/a.png".to_string();
        assert_eq!(
            read_images(std::slice::from_ref(&url), &r).unwrap()[0].url,
            url
        );
    }
}
