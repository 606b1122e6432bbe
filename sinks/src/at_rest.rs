//! Tables encrypted at rest (issue 61): an [`ObjectStore`] that encrypts every object it is
//! given and decrypts every object it serves, so the Parquet files, the Delta log (whose
//! statistics hold each file's smallest and largest values), the checkpoints and what adit
//! keeps beside them are all unreadable without the key.
//!
//! Why here and not in Parquet: Parquet's modular encryption covers data pages only; the Delta
//! log beside them would keep every column's min and max in the clear, and deltalake 1.1 passes
//! no decryption properties to its scans (`ReaderProperties` has none). The object store's own
//! server-side encryption (`aws_server_side_encryption`, `aws_sse_kms_key_id`,
//! `aws_sse_customer_key_base64`… in `[tables] options`) protects against the disks, not
//! against whoever can read the bucket; this protects against both, on any store.
//!
//! **Format** (the streaming AEAD of Tink's `AesGcmHkdfStreaming` and of age): a header of
//! [`MAGIC`] and a random 32-byte salt; each object's own AES-256-GCM key is
//! HKDF-SHA256(master key, salt). The plaintext is cut into [`SEGMENT`]-byte segments, each
//! sealed with the nonce `0⁷ ‖ segment index (u32, big-endian) ‖ last-segment flag`, so a
//! segment cannot be moved, dropped or truncated away without its tag failing, and any byte
//! range is read by fetching and opening only the segments it spans (Parquet reads footers and
//! column chunks by range). A fresh salt per object means a fresh key per object: no nonce is
//! ever used twice under one key.
//!
//! Sizes seen through the store (`head`, `list`, a read's metadata) are the plaintext's,
//! computed from the stored size, so Delta's `size` of each file and Parquet's footer offsets
//! hold. A multipart upload is gathered in memory and stored in one put: objects are at most a
//! table file's target size.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    UploadPart,
};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom, SystemRandom};

/// The first bytes of every encrypted object (a version, should the format change).
pub const MAGIC: &[u8; 8] = b"ADITENC1";
/// Bytes of the per-object salt.
const SALT: usize = 32;
/// Bytes before the first segment.
pub const HEADER: u64 = (MAGIC.len() + SALT) as u64;
/// Plaintext bytes per segment.
pub const SEGMENT: u64 = 64 * 1024;
/// Bytes of each segment's tag.
const TAG: u64 = 16;
/// Stored bytes per full segment.
const SEALED: u64 = SEGMENT + TAG;
/// The store's name in errors.
const STORE: &str = "encrypted";

/// The master key of a table root: 32 bytes, from a file.
#[derive(Clone)]
pub struct AtRestKey([u8; 32]);

impl std::fmt::Debug for AtRestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtRestKey(…)")
    }
}

impl AtRestKey {
    /// The key in `text`: 64 hexadecimal digits (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .map_err(|e| format!("the key must be 64 hexadecimal digits (32 bytes): {e}"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "the key must be 64 hexadecimal digits (32 bytes), not {} bytes",
                b.len()
            )
        })?;
        Ok(Self(key))
    }

    /// The key in the file at `path` (64 hexadecimal digits: `openssl rand -hex 32` makes one).
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the key file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The AES-256-GCM key of the object whose salt is `salt`.
    fn object_key(&self, salt: &[u8]) -> LessSafeKey {
        let prk = Salt::new(HKDF_SHA256, salt).extract(&self.0);
        let okm = prk
            .expand(&[b"adit tables at rest"], &AES_256_GCM)
            .expect("one AES-256 key is within HKDF's output bound");
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

/// The nonce of segment `index` (`last`: the object's final segment).
fn nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    // Segments past u32::MAX (256 TiB) are refused before they get here.
    n[7..11].copy_from_slice(&(index as u32).to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// How many segments a plaintext of `len` bytes is stored in (an empty one still has one).
fn segments(len: u64) -> u64 {
    len.div_ceil(SEGMENT).max(1)
}

/// The stored size of a plaintext of `len` bytes.
pub fn sealed_len(len: u64) -> u64 {
    HEADER + len + segments(len) * TAG
}

/// The plaintext size of an object stored in `stored` bytes; `None` when no encrypted
/// object has that size.
pub fn plain_len(stored: u64) -> Option<u64> {
    let body = stored.checked_sub(HEADER)?;
    let n = body.div_ceil(SEALED).max(1);
    let len = body.checked_sub(n * TAG)?;
    (sealed_len(len) == stored).then_some(len)
}

/// Seals `plain` under `key` with a fresh salt: the stored object (for a writer that stores it
/// around the store, as a backup's private files are).
pub fn seal(key: &AtRestKey, plain: &[u8]) -> object_store::Result<Vec<u8>> {
    let n = segments(plain.len() as u64);
    if n > u64::from(u32::MAX) {
        return Err(failed("an object over 256 TiB cannot be encrypted"));
    }
    let mut salt = [0u8; SALT];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| failed("the system's random source failed"))?;
    let object_key = key.object_key(&salt);
    let mut out = Vec::with_capacity(sealed_len(plain.len() as u64) as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&salt);
    for i in 0..n {
        let start = (i * SEGMENT) as usize;
        let end = (start + SEGMENT as usize).min(plain.len());
        let mut segment = plain[start..end].to_vec();
        object_key
            .seal_in_place_append_tag(nonce(i, i + 1 == n), Aad::empty(), &mut segment)
            .map_err(|_| failed("sealing a segment failed"))?;
        out.extend_from_slice(&segment);
    }
    Ok(out)
}

fn failed(message: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: message.into(),
    }
}

/// Opens `segments` (stored bytes from segment `first` on) of an object of `total` segments
/// whose header is `header`: the plaintext they hold.
fn open(
    key: &AtRestKey,
    header: &[u8],
    first: u64,
    total: u64,
    sealed: &[u8],
) -> object_store::Result<Vec<u8>> {
    if header.len() != HEADER as usize || &header[..MAGIC.len()] != MAGIC {
        return Err(failed(
            "not an encrypted object (written without the key, or by another program)",
        ));
    }
    let object_key = key.object_key(&header[MAGIC.len()..]);
    let mut plain = Vec::with_capacity(sealed.len());
    for (k, chunk) in sealed.chunks(SEALED as usize).enumerate() {
        let index = first + k as u64;
        let mut segment = chunk.to_vec();
        let opened = object_key
            .open_in_place(nonce(index, index + 1 == total), Aad::empty(), &mut segment)
            .map_err(|_| {
                failed("a segment failed its check: a wrong key, or the object was altered")
            })?;
        plain.extend_from_slice(opened);
    }
    Ok(plain)
}

/// An object store whose objects are encrypted with one master key.
#[derive(Debug)]
pub struct EncryptedStore {
    inner: Arc<dyn ObjectStore>,
    key: AtRestKey,
}

impl std::fmt::Display for EncryptedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encrypted({})", self.inner)
    }
}

impl EncryptedStore {
    /// `inner`, its objects encrypted under `key`.
    pub fn new(inner: Arc<dyn ObjectStore>, key: AtRestKey) -> Self {
        Self { inner, key }
    }

    /// `meta` as seen through the store: its plaintext size.
    fn plain_meta(mut meta: ObjectMeta) -> object_store::Result<ObjectMeta> {
        meta.size = plain_len(meta.size).ok_or_else(|| {
            failed(&format!(
                "{} is not an encrypted object ({} bytes)",
                meta.location, meta.size
            ))
        })?;
        Ok(meta)
    }

    /// The stored bytes in `range` of `location`, and the object's metadata.
    async fn stored(
        &self,
        location: &Path,
        range: Range<u64>,
        options: &GetOptions,
    ) -> object_store::Result<(Bytes, ObjectMeta)> {
        let got = self
            .inner
            .get_opts(
                location,
                GetOptions {
                    range: Some(GetRange::Bounded(range)),
                    ..options.clone()
                },
            )
            .await?;
        let meta = got.meta.clone();
        Ok((got.bytes().await?, meta))
    }

    /// The plaintext bytes `range` of `location` (`range` clamped to the object).
    async fn read(
        &self,
        location: &Path,
        range: Option<GetRange>,
        options: &GetOptions,
    ) -> object_store::Result<(Bytes, Range<u64>, ObjectMeta)> {
        // The header and the size first: a range from the end needs the size.
        let (header, meta) = self.stored(location, 0..HEADER, options).await?;
        let meta = Self::plain_meta(meta)?;
        let len = meta.size;
        let range = match range {
            None => 0..len,
            Some(r) => r.as_range(len).map_err(|e| object_store::Error::Generic {
                store: STORE,
                source: Box::new(e),
            })?,
        };
        let total = segments(len);
        let first = range.start / SEGMENT;
        let last = if range.end == range.start {
            first
        } else {
            (range.end - 1) / SEGMENT
        }
        .min(total - 1);
        let from = HEADER + first * SEALED;
        let to = (HEADER + (last + 1) * SEALED).min(sealed_len(len));
        let (sealed, _) = self.stored(location, from..to, options).await?;
        let plain = open(&self.key, &header, first, total, &sealed)?;
        let skip = (range.start - first * SEGMENT) as usize;
        let take = (range.end - range.start) as usize;
        let bytes = Bytes::from(plain).slice(skip..skip + take);
        Ok((bytes, range, meta))
    }
}

#[async_trait]
impl ObjectStore for EncryptedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let plain: Bytes = payload.into();
        let sealed = seal(&self.key, &plain)?;
        self.inner
            .put_opts(location, PutPayload::from(sealed), opts)
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(Gathered {
            store: Arc::clone(&self.inner),
            key: self.key.clone(),
            location: location.clone(),
            opts: Some(opts),
            parts: BytesMut::new(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head {
            let got = self.inner.get_opts(location, options).await?;
            let meta = Self::plain_meta(got.meta)?;
            return Ok(GetResult {
                payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
                range: 0..meta.size,
                meta,
                attributes: got.attributes,
            });
        }
        let (bytes, range, meta) = self.read(location, options.range.clone(), &options).await?;
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            range,
            meta,
            attributes: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner
            .list(prefix)
            .map(|meta| meta.and_then(Self::plain_meta))
            .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner
            .list_with_offset(prefix, offset)
            .map(|meta| meta.and_then(Self::plain_meta))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed.objects = listed
            .objects
            .into_iter()
            .map(Self::plain_meta)
            .collect::<object_store::Result<_>>()?;
        Ok(listed)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        // The stored bytes do not depend on the path: a copy is the same ciphertext.
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload gathered in memory, sealed and stored in one put when complete.
#[derive(Debug)]
struct Gathered {
    store: Arc<dyn ObjectStore>,
    key: AtRestKey,
    location: Path,
    opts: Option<PutMultipartOptions>,
    parts: BytesMut,
}

#[async_trait]
impl MultipartUpload for Gathered {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        for chunk in data.iter() {
            self.parts.extend_from_slice(chunk);
        }
        Box::pin(async { Ok(()) })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let opts = self.opts.take().unwrap_or_default();
        let sealed = seal(&self.key, &std::mem::take(&mut self.parts))?;
        let put = PutOptions {
            tags: opts.tags,
            attributes: opts.attributes,
            extensions: opts.extensions,
            ..Default::default()
        };
        self.store
            .put_opts(&self.location, PutPayload::from(sealed), put)
            .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.parts.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn key(byte: u8) -> AtRestKey {
        AtRestKey([byte; 32])
    }

    #[test]
    fn every_size_maps_to_its_stored_size_and_back() {
        for len in [
            0,
            1,
            100,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            5 * SEGMENT + 7,
        ] {
            assert_eq!(plain_len(sealed_len(len)), Some(len), "{len}");
        }
        assert_eq!(plain_len(HEADER), None, "no room for a tag");
        assert_eq!(plain_len(3), None);
        assert_eq!(
            plain_len(HEADER + SEALED + 1),
            None,
            "a segment of 1 byte has a tag"
        );
    }

    #[tokio::test]
    async fn what_is_put_reads_back_whole_and_by_any_range_and_is_unreadable_without_the_key() {
        let raw: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = EncryptedStore::new(Arc::clone(&raw), key(7));
        let plain: Vec<u8> = (0..(2 * SEGMENT + 1000))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let path = Path::from("t/part-0.parquet");
        store.put(&path, plain.clone().into()).await.unwrap();
        assert_eq!(store.head(&path).await.unwrap().size, plain.len() as u64);
        assert_eq!(
            store.get(&path).await.unwrap().bytes().await.unwrap(),
            plain
        );
        let len = plain.len() as u64;
        for range in [
            0..1,
            10..SEGMENT + 10,
            SEGMENT - 1..SEGMENT + 1,
            SEGMENT..2 * SEGMENT,
            len - 8..len,
        ] {
            let got = store.get_range(&path, range.clone()).await.unwrap();
            assert_eq!(
                got,
                plain[range.start as usize..range.end as usize],
                "{range:?}"
            );
        }
        let suffix = store
            .get_opts(
                &path,
                GetOptions {
                    range: Some(GetRange::Suffix(8)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(suffix.range, len - 8..len);
        assert_eq!(suffix.bytes().await.unwrap(), plain[plain.len() - 8..]);
        let listed: Vec<ObjectMeta> = store.list(None).map(Result::unwrap).collect().await;
        assert_eq!(listed[0].size, len);

        // What is stored holds no run of the plaintext, and another key cannot open it.
        let stored = raw.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.len() as u64, sealed_len(len));
        let runs: std::collections::HashSet<&[u8]> = plain.windows(16).collect();
        assert!(!stored.windows(16).any(|w| runs.contains(w)));
        let other = EncryptedStore::new(Arc::clone(&raw), key(8));
        let refused = other.get(&path).await.unwrap_err().to_string();
        assert!(refused.contains("wrong key"), "{refused}");

        // A segment moved or cut away fails its check.
        let mut cut = stored.to_vec();
        cut.truncate((HEADER + SEALED) as usize);
        raw.put(&path, cut.into()).await.unwrap();
        assert!(
            store.get(&path).await.is_err(),
            "the first segment posing as the last"
        );
        let mut swapped = stored.to_vec();
        let (a, b) = (HEADER as usize, (HEADER + SEALED) as usize);
        let first: Vec<u8> = swapped[a..b].to_vec();
        swapped.copy_within(b..b + SEALED as usize, a);
        swapped[b..b + SEALED as usize].copy_from_slice(&first);
        raw.put(&path, swapped.into()).await.unwrap();
        assert!(
            store.get_range(&path, 0..10).await.is_err(),
            "segments swapped"
        );
        // An object written around the store is refused by name, not read as garbage.
        raw.put(&path, plain.clone().into()).await.unwrap();
        assert!(store.get(&path).await.is_err());
    }

    #[tokio::test]
    async fn a_multipart_upload_and_an_empty_object_read_back() {
        let store = EncryptedStore::new(Arc::new(InMemory::new()), key(1));
        let path = Path::from("big");
        let mut upload = store.put_multipart(&path).await.unwrap();
        let part: Vec<u8> = vec![9; (SEGMENT + 5) as usize];
        upload.put_part(part.clone().into()).await.unwrap();
        upload.put_part(part.clone().into()).await.unwrap();
        upload.complete().await.unwrap();
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.len(), part.len() * 2);
        let empty = Path::from("empty");
        store.put(&empty, Vec::<u8>::new().into()).await.unwrap();
        assert!(
            store
                .get(&empty)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.head(&empty).await.unwrap().size, 0);
    }
}
