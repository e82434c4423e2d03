//! The files and images a `chat` call attaches: where they may be read
//! from, how big they may be, and what they become for the model.
//!
//! TODO(helper files): implement as specified in the module's contract.

use std::path::PathBuf;

use poe_plugin_api::Attachment;

use crate::mcp::errors::Code;

/// Default cap of one text or PDF file.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Default cap of one image.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

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

/// One attached file, ready for the model.
#[derive(Debug, Clone, PartialEq)]
pub enum FileInput {
    /// A text file as a line-numbered block with its name and size, to be
    /// put into the message text.
    Text { path: String, block: String },
    /// A PDF, as a `data:application/pdf;base64,…` attachment.
    Pdf(Attachment),
}

/// Why an attachment was refused; the message names the path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub code: Code,
    pub message: String,
}

/// Reads every file of `paths` (absolute, or relative to `rules.cwd`), in order.
pub fn read_files(paths: &[String], rules: &InputRules) -> Result<Vec<FileInput>, InputError> {
    let _ = (paths, rules);
    unimplemented!("helper files")
}

/// Reads every image of `specs` (paths as for files, or `data:` URLs) into
/// `data:` URL attachments with the type found in their content.
pub fn read_images(specs: &[String], rules: &InputRules) -> Result<Vec<Attachment>, InputError> {
    let _ = (specs, rules);
    unimplemented!("helper files")
}
