//! `/v1/files`: the JSONL inputs of batch jobs, uploaded as the official
//! OpenAI clients upload them (a `multipart/form-data` body with a
//! `purpose` field and a `file` part), and the output and error files the
//! batches write. A file belongs to the API key that uploaded it (or whose
//! batch wrote it): any other key is told it does not exist (404).
//!
//! The multipart decoder is this module's own, small and bounded: the
//! body is already capped at [`MAX_UPLOAD_BODY`] by the route, at most
//! [`MAX_PARTS`] parts are read and each part's headers at most
//! [`MAX_PART_HEADER_BYTES`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::batch_store::FileRecord;
use crate::{GatewayError, Inner};

/// Largest file accepted (OpenAI allows more; a gateway keeps these in its
/// own store, so it stays modest).
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;
/// Largest upload body: the file plus room for the form's other fields.
pub const MAX_UPLOAD_BODY: usize = MAX_FILE_BYTES + 64 * 1024;
/// Most parts read from one form.
pub const MAX_PARTS: usize = 8;
/// Most bytes of one part's headers.
pub const MAX_PART_HEADER_BYTES: usize = 4096;

/// Why a multipart body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MultipartError {
    /// The content type is not `multipart/form-data` with a boundary.
    #[error("expected a multipart/form-data body with a boundary")]
    NotMultipart,
    /// The body does not follow the multipart framing.
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
    /// More parts than [`MAX_PARTS`].
    #[error("more than {MAX_PARTS} form fields")]
    TooManyParts,
}

/// One field of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The field's name.
    pub name: String,
    /// The file name, for a file field.
    pub filename: Option<String>,
    /// Its bytes.
    pub data: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `boundary` parameter of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        // RFC 2046: 1 to 70 characters.
        (!v.is_empty() && v.len() <= 70).then(|| v.to_string())
    })
}

/// A `Content-Disposition: form-data; name="…"; filename="…"` header's
/// name and file name.
fn disposition(value: &str) -> Option<(String, Option<String>)> {
    let mut params = value.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let (mut name, mut filename) = (None, None);
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(v),
            "filename" => filename = Some(v),
            _ => {}
        }
    }
    Some((name?, filename))
}

/// Reads a `multipart/form-data` body into its parts.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Result<Vec<Part>, MultipartError> {
    let boundary = boundary(content_type).ok_or(MultipartError::NotMultipart)?;
    let delimiter = format!("--{boundary}").into_bytes();
    let start = find(body, &delimiter).ok_or(MultipartError::Malformed("no boundary"))?;
    let mut rest = &body[start + delimiter.len()..];
    let mut closing = b"\r\n".to_vec();
    closing.extend_from_slice(&delimiter);
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or(MultipartError::Malformed("no line break after a boundary"))?;
        if parts.len() == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        let head_end = find(
            &rest[..rest.len().min(MAX_PART_HEADER_BYTES + 4)],
            b"\r\n\r\n",
        )
        .ok_or(MultipartError::Malformed(
            "part headers missing or too long",
        ))?;
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| MultipartError::Malformed("part headers are not UTF-8"))?;
        let mut field = None;
        for line in head.split("\r\n") {
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-disposition") {
                    field = disposition(v.trim());
                }
            }
        }
        let (name, filename) =
            field.ok_or(MultipartError::Malformed("a part without a form-data name"))?;
        let content = &rest[head_end + 4..];
        let end = find(content, &closing).ok_or(MultipartError::Malformed("unterminated part"))?;
        parts.push(Part {
            name,
            filename,
            data: content[..end].to_vec(),
        });
        rest = &content[end + closing.len()..];
    }
}

/// blake3 of an API key, hex: what owns files and batches in the store
/// (the key itself is never written there).
pub(crate) fn owner_of(api_key: &str) -> String {
    blake3::hash(api_key.as_bytes()).to_hex().to_string()
}

/// The key's owner id, if the key is one of the gateway's accounts.
pub(crate) fn authorized(
    gw: &Inner,
    headers: &HeaderMap,
) -> Result<(String, String), GatewayError> {
    let key = crate::http::api_key(headers)?;
    if gw.accounts.get(&key).is_none() {
        return Err(GatewayError::Unauthorized);
    }
    Ok((owner_of(&key), key))
}

/// A new id: `prefix` and 24 random hex digits.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 12]>()))
}

/// OpenAI's file object.
pub(crate) fn file_object(f: &FileRecord) -> Value {
    json!({
        "id": f.id, "object": "file", "bytes": f.bytes, "created_at": f.created_at,
        "filename": f.filename, "purpose": f.purpose, "status": "processed",
        "status_details": null,
    })
}

/// A file of `owner`'s, or 404 (also when it is another key's).
pub(crate) fn owned_file(gw: &Inner, owner: &str, id: &str) -> Result<FileRecord, GatewayError> {
    gw.batches
        .store
        .file(id)?
        .filter(|f| f.owner == owner)
        .ok_or_else(|| GatewayError::NotFound(format!("no file with id `{id}`")))
}

/// `POST /v1/files`.
pub(crate) async fn upload(
    State(gw): State<Arc<Inner>>,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = read.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                GatewayError::TooLarge(format!("files are limited to {MAX_FILE_BYTES} bytes"))
            } else {
                GatewayError::BadRequest(r.body_text())
            }
        })?;
        let (owner, _) = authorized(&gw, &headers)?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let parts = parse_multipart(content_type, &body)
            .map_err(|e| GatewayError::BadRequest(e.to_string()))?;
        let field = |name: &str| parts.iter().find(|p| p.name == name);
        let purpose = field("purpose")
            .map(|p| String::from_utf8_lossy(&p.data).trim().to_string())
            .ok_or_else(|| GatewayError::BadRequest("missing form field `purpose`".into()))?;
        if purpose != "batch" {
            return Err(GatewayError::BadRequest(format!(
                "purpose `{purpose}` is not supported: this gateway takes files for `batch` only"
            )));
        }
        let file = field("file")
            .ok_or_else(|| GatewayError::BadRequest("missing form field `file`".into()))?;
        if file.data.len() > MAX_FILE_BYTES {
            return Err(GatewayError::TooLarge(format!(
                "files are limited to {MAX_FILE_BYTES} bytes"
            )));
        }
        if file.data.is_empty() {
            return Err(GatewayError::BadRequest("the file is empty".into()));
        }
        let record = FileRecord {
            id: new_id("file-"),
            owner,
            purpose,
            filename: file
                .filename
                .clone()
                .unwrap_or_else(|| "upload.jsonl".into()),
            bytes: file.data.len() as u64,
            created_at: strata_service::now_ms() / 1000,
        };
        gw.batches.store.put_file(&record, &file.data)?;
        Ok(Json(file_object(&record)).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/files/{id}`.
pub(crate) async fn retrieve(
    State(gw): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = (|| {
        let (owner, _) = authorized(&gw, &headers)?;
        Ok::<_, GatewayError>(Json(file_object(&owned_file(&gw, &owner, &id)?)).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/files/{id}/content`.
pub(crate) async fn content(
    State(gw): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = (|| {
        let (owner, _) = authorized(&gw, &headers)?;
        let f = owned_file(&gw, &owner, &id)?;
        let data = gw
            .batches
            .store
            .file_content(&f.id)?
            .ok_or_else(|| GatewayError::State(format!("file {id} has no content")))?;
        Ok::<_, GatewayError>(
            ([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response(),
        )
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    /// The body the official Python client sends (httpx's encoder).
    #[test]
    fn reads_the_form_openai_clients_send() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n{\"a\":1}\n{\"b\":\r\n2}\n\r\n--XyZ--\r\n";
        let parts = parse_multipart(CT, body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "purpose");
        assert_eq!(parts[0].data, b"batch");
        assert_eq!(parts[1].filename.as_deref(), Some("in.jsonl"));
        assert_eq!(parts[1].data, b"{\"a\":1}\n{\"b\":\r\n2}\n");
        // A quoted boundary, and a preamble before the first one.
        let quoted = "multipart/form-data; boundary=\"XyZ\"";
        let mut with_preamble = b"ignored\r\n".to_vec();
        with_preamble.extend_from_slice(body);
        assert_eq!(parse_multipart(quoted, &with_preamble).unwrap(), parts);
    }

    /// Hostile or broken bodies are errors, never panics.
    #[test]
    fn malformed_bodies_are_refused() {
        assert_eq!(
            parse_multipart("application/json", b"{}"),
            Err(MultipartError::NotMultipart)
        );
        assert_eq!(
            parse_multipart("multipart/form-data", b""),
            Err(MultipartError::NotMultipart)
        );
        let cases: [&[u8]; 6] = [
            b"",
            b"--XyZ",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
            b"--XyZ\r\nno-blank-line",
            b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xff\r\n--XyZjunk",
        ];
        for c in cases {
            assert!(parse_multipart(CT, c).is_err(), "{c:?}");
        }
        let mut many = Vec::new();
        for _ in 0..=MAX_PARTS {
            many.extend_from_slice(
                b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n",
            );
        }
        many.extend_from_slice(b"--XyZ--");
        assert_eq!(
            parse_multipart(CT, &many),
            Err(MultipartError::TooManyParts)
        );
        let mut long_head = b"--XyZ\r\nX: ".to_vec();
        long_head.extend(std::iter::repeat_n(b'a', MAX_PART_HEADER_BYTES + 10));
        long_head.extend_from_slice(b"\r\n\r\nx\r\n--XyZ--");
        assert!(parse_multipart(CT, &long_head).is_err());
        // Every prefix of a good body: an error or parts, no panic.
        let good = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nxy\r\n--XyZ--";
        for n in 0..good.len() {
            let _ = parse_multipart(CT, &good[..n]);
        }
    }
}
