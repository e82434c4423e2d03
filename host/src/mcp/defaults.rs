//! Default bots of the MCP tools, in one place.

/// `get_bot_response` when no bot is named (used by `query` too).
pub const TEXT_BOT: &str = "Claude-Sonnet-4.5";
/// `generate_image` default.
pub const IMAGE_BOT: &str = "nano-banana-pro";
/// `generate_video` default.
pub const VIDEO_BOT: &str = "veo-3.1";
/// `generate_audio` default.
pub const AUDIO_BOT: &str = "ElevenLabs-v3";

/// How often a long call with a progress token reports that it is alive,
/// so clients with a 60 s inactivity timeout keep waiting.
pub const PROGRESS_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);
