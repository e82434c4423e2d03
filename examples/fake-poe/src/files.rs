//! `GET /files/{name}`: the media the fake bots link to, served without
//! authentication like Poe's CDN. The bytes only need to look like the type
//! (correct magic numbers), not be playable.

use wiremock::{Request, Respond, ResponseTemplate};

/// PNG signature plus an IHDR chunk header.
pub(crate) const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRfake-poe image";
/// An ID3 tag header, as MP3 files start.
pub(crate) const MP3: &[u8] = b"ID3\x04\0\0\0\0\0\0fake-poe audio";
/// An ISO BMFF `ftyp` box, as MP4 files start.
pub(crate) const MP4: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isomfake-poe video";

/// Serves `/files/<anything>.{png,mp3,mp4}`.
pub(crate) struct Files;

impl Respond for Files {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let path = request.url.path();
        let (bytes, mime) = if path.ends_with(".png") {
            (PNG, "image/png")
        } else if path.ends_with(".mp3") {
            (MP3, "audio/mpeg")
        } else if path.ends_with(".mp4") {
            (MP4, "video/mp4")
        } else {
            return ResponseTemplate::new(404);
        };
        ResponseTemplate::new(200).set_body_raw(bytes.to_vec(), mime)
    }
}
