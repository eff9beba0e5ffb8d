//! The safetensors format: one `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists, each an 8-byte header length, a JSON
//! header (tensor name → dtype, shape, byte range) and the tensors' bytes.
//!
//! The header is untrusted input: its length is bounded by
//! [`MAX_SAFETENSORS_HEADER_BYTES`], and every tensor's dtype, shape and byte
//! range is checked against the file before anything is read, so a corrupt or
//! truncated file is an error, never a panic or a huge allocation.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::{EngineError, Result};

use super::read_json;

/// Largest safetensors header accepted. Real headers take about 100 bytes per
/// tensor (a few hundred KB for the largest checkpoints); the bound only
/// stops a hostile length prefix from asking for a huge allocation.
pub const MAX_SAFETENSORS_HEADER_BYTES: u64 = 16 << 20;

/// Weights file of an unsharded checkpoint.
pub(super) const SINGLE_FILE: &str = "model.safetensors";
/// Index of a sharded checkpoint (`weight_map`: tensor name → shard file).
pub(super) const INDEX_FILE: &str = "model.safetensors.index.json";

/// Element types the loader reads; any other dtype is refused when its tensor
/// is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    F16,
    BF16,
}

/// Size in bytes of one element of a safetensors dtype (`None`: sub-byte or unknown).
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// One tensor's place in one shard.
#[derive(Debug, Clone)]
struct TensorEntry {
    shard: usize,
    dtype: String,
    shape: Vec<usize>,
    /// Absolute file offset of the first byte.
    offset: u64,
    len: u64,
}

/// The tensors of a checkpoint's safetensors files, by name; data is read
/// tensor by tensor when asked for, so memory holds one tensor at a time.
pub(super) struct SafetensorsFiles {
    shards: Vec<(PathBuf, File)>,
    tensors: HashMap<String, TensorEntry>,
}

impl SafetensorsFiles {
    /// Opens `model.safetensors`, or every shard that
    /// `model.safetensors.index.json` names, and checks their headers.
    pub(super) fn open(dir: &Path) -> Result<Self> {
        let names: Vec<String> = if dir.join(SINGLE_FILE).is_file() {
            vec![SINGLE_FILE.to_string()]
        } else {
            let index = read_json(dir, INDEX_FILE, true)?.unwrap_or_default();
            let map = index
                .get("weight_map")
                .and_then(Json::as_object)
                .ok_or_else(|| {
                    EngineError::InvalidModel(format!("{INDEX_FILE} has no weight_map object"))
                })?;
            let mut files = BTreeSet::new();
            for (tensor, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    EngineError::InvalidModel(format!(
                        "{INDEX_FILE}: {tensor} maps to a non-string"
                    ))
                })?;
                // Shards are files next to the index, never paths elsewhere.
                if file.contains(['/', '\\']) || file.starts_with('.') || file.is_empty() {
                    return Err(EngineError::InvalidModel(format!(
                        "{INDEX_FILE}: shard name {file:?} is not a plain file name"
                    )));
                }
                files.insert(file.to_string());
            }
            files.into_iter().collect()
        };
        let mut shards = Vec::with_capacity(names.len());
        let mut tensors = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(EngineError::MissingModelFile {
                    dir: dir.to_path_buf(),
                    file: name.clone(),
                });
            }
            let mut file = File::open(&path).map_err(|source| EngineError::Io {
                path: path.clone(),
                source,
            })?;
            for (tensor, mut entry) in read_header(&path, &mut file)? {
                entry.shard = i;
                if tensors.insert(tensor.clone(), entry).is_some() {
                    return Err(EngineError::InvalidModel(format!(
                        "tensor {tensor} appears in more than one shard"
                    )));
                }
            }
            shards.push((path, file));
        }
        Ok(Self { shards, tensors })
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Reads tensor `name`, which must have shape `dims`, as f32 values.
    pub(super) fn read_f32(&mut self, name: &str, dims: &[usize]) -> Result<Vec<f32>> {
        let e = self
            .tensors
            .get(name)
            .ok_or_else(|| EngineError::InvalidModel(format!("missing tensor {name}")))?;
        if e.shape != dims {
            return Err(EngineError::InvalidModel(format!(
                "tensor {name} has shape {:?}, expected {dims:?}",
                e.shape
            )));
        }
        let (path, file) = &mut self.shards[e.shard];
        let dtype = match e.dtype.as_str() {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            other => {
                return Err(EngineError::Safetensors {
                    path: path.clone(),
                    reason: format!(
                        "tensor {name} has dtype {other}; only F32, F16 and BF16 are supported"
                    ),
                })
            }
        };
        // The header check guarantees len = elements × size, and fits the file.
        let mut bytes = vec![0u8; e.len as usize];
        let io = |source| EngineError::Io {
            path: path.clone(),
            source,
        };
        file.seek(SeekFrom::Start(e.offset)).map_err(io)?;
        file.read_exact(&mut bytes).map_err(io)?;
        Ok(match dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }
}

/// Parses and checks a safetensors header: an 8-byte little-endian length, then
/// that many bytes of JSON mapping tensor names to `dtype`, `shape` and
/// `data_offsets` (relative to the end of the header). Returns each tensor with
/// its absolute byte range; `shard` is left 0 for the caller to set.
fn read_header(path: &Path, file: &mut File) -> Result<Vec<(String, TensorEntry)>> {
    let bad = |reason: String| EngineError::Safetensors {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_len = file.metadata().map_err(io)?.len();
    if file_len < 8 {
        return Err(bad(format!("truncated: {file_len} bytes, no header")));
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(io)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_SAFETENSORS_HEADER_BYTES {
        return Err(bad(format!(
            "header of {header_len} bytes exceeds the limit of {MAX_SAFETENSORS_HEADER_BYTES}"
        )));
    }
    if header_len > file_len - 8 {
        return Err(bad(format!(
            "truncated: the header claims {header_len} bytes, the file has {file_len}"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Map<String, Json> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut out = Vec::with_capacity(header.len());
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| {
            info.get(key)
                .ok_or_else(|| bad(format!("tensor {name} has no {key}")))
        };
        let dtype = field("dtype")?
            .as_str()
            .ok_or_else(|| bad(format!("tensor {name}: dtype is not a string")))?
            .to_string();
        let shape = field("shape")?
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<usize>>>()
            })
            .ok_or_else(|| bad(format!("tensor {name}: shape is not a list of sizes")))?;
        let offsets = field("data_offsets")?
            .as_array()
            .and_then(|a| match a.as_slice() {
                [b, e] => Some((b.as_u64()?, e.as_u64()?)),
                _ => None,
            });
        let Some((begin, end)) = offsets.filter(|(b, e)| b <= e) else {
            return Err(bad(format!(
                "tensor {name}: data_offsets is not [begin, end]"
            )));
        };
        if end > data_len {
            return Err(bad(format!(
                "truncated: tensor {name} ends at data byte {end}, the file holds {data_len}"
            )));
        }
        // A known dtype fixes the byte length; unknown ones are refused if read.
        if let Some(size) = dtype_size(&dtype) {
            let expected = shape
                .iter()
                .try_fold(size, |acc, &d| acc.checked_mul(d as u64));
            if expected != Some(end - begin) {
                return Err(bad(format!(
                    "tensor {name}: {} bytes for shape {shape:?} of {dtype}",
                    end - begin
                )));
            }
        }
        out.push((
            name,
            TensorEntry {
                shard: 0,
                dtype,
                shape,
                offset: data_start + begin,
                len: end - begin,
            },
        ));
    }
    Ok(out)
}
