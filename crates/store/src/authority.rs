//! Accepting etcd 3.4 clients' URL-shaped HTTP/2 `:authority`.
//!
//! etcd 3.4's clientv3 dials one endpoint directly (Maintenance's Status, Defragment, HashKV:
//! `etcdctl endpoint status|hashkv`, `defrag`) as the gRPC target `passthrough:///http://h:p`,
//! and grpc-go then sends `:authority: http://h:p`. Go's HTTP/2 server takes it; the `h2` crate
//! (under hyper and tonic) refuses it as a malformed request with RST_STREAM PROTOCOL_ERROR
//! before any of our code runs. So the client's bytes pass through [`FixAuthority`], which
//! rewrites such an authority to `h:p` in HEADERS frames before h2 parses them.
//!
//! Only the literal that carries the authority is edited; everything else passes unchanged. The
//! HPACK dynamic tables stay in step: the edited value is what h2 stores and what later indexed
//! references resolve to, and its entry is only smaller than the client's, so h2 evicts no later
//! than the client does and every index the client sends still names the same entry.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// h2's default SETTINGS_MAX_FRAME_SIZE, which hyper keeps: rewritten blocks are cut to it.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is left to h2 (it refuses anything over 16 KiB anyway).
const MAX_BLOCK: usize = 1 << 20;

/// An accepted connection whose client-to-server HTTP/2 header blocks get their authority fixed.
pub struct FixAuthority<S> {
    inner: S,
    mode: Mode,
    /// Read from `inner`, not yet looked at.
    input: BytesMut,
    /// Ready for the reader.
    output: BytesMut,
    /// Frames of a header block waiting for its END_HEADERS.
    block_frames: BytesMut,
    eof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the first bytes tell HTTP/2 (the preface) from HTTP/1.1.
    Preface,
    /// HTTP/1.1, or given up: everything passes unchanged.
    Pass,
    /// Between frames, or within a frame payload with this many bytes left to pass.
    Frames { pass: usize },
}

impl<S> FixAuthority<S> {
    pub fn new(inner: S) -> Self {
        FixAuthority {
            inner,
            mode: Mode::Preface,
            input: BytesMut::new(),
            output: BytesMut::new(),
            block_frames: BytesMut::new(),
            eof: false,
        }
    }

    /// Moves what can be decided from `input` to `output`.
    fn process(&mut self) {
        loop {
            match self.mode {
                Mode::Pass => {
                    let all = self.input.split();
                    self.output.unsplit(all);
                    return;
                }
                Mode::Preface => {
                    let n = self.input.len().min(PREFACE.len());
                    if self.input[..n] != PREFACE[..n] {
                        self.mode = Mode::Pass;
                    } else if n == PREFACE.len() {
                        self.output.extend_from_slice(&self.input.split_to(n));
                        self.mode = Mode::Frames { pass: 0 };
                    } else {
                        return;
                    }
                }
                Mode::Frames { pass } if pass > 0 => {
                    let n = pass.min(self.input.len());
                    if n == 0 {
                        return;
                    }
                    self.output.extend_from_slice(&self.input.split_to(n));
                    self.mode = Mode::Frames { pass: pass - n };
                }
                Mode::Frames { .. } => {
                    if self.input.len() < FRAME_HEADER {
                        return;
                    }
                    let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]])
                        as usize;
                    let (kind, flags) = (self.input[3], self.input[4]);
                    let in_block = !self.block_frames.is_empty();
                    if kind != HEADERS && !(in_block && kind == CONTINUATION) {
                        if in_block {
                            // Not HTTP/2 as h2 accepts it: let h2 say so.
                            self.give_up();
                            continue;
                        }
                        self.output
                            .extend_from_slice(&self.input.split_to(FRAME_HEADER));
                        self.mode = Mode::Frames { pass: len };
                        continue;
                    }
                    if self.input.len() < FRAME_HEADER + len {
                        if self.block_frames.len() + self.input.len() > MAX_BLOCK {
                            self.give_up();
                            continue;
                        }
                        return;
                    }
                    let frame = self.input.split_to(FRAME_HEADER + len);
                    self.block_frames.extend_from_slice(&frame);
                    if flags & END_HEADERS != 0 {
                        let frames = self.block_frames.split();
                        match rewrite(&frames) {
                            Some(fixed) => self.output.extend_from_slice(&fixed),
                            None => self.output.unsplit(frames),
                        }
                    }
                }
            }
        }
    }

    /// Passes everything from here on unchanged, the held-back frames first.
    fn give_up(&mut self) {
        let held = self.block_frames.split();
        self.output.unsplit(held);
        self.mode = Mode::Pass;
    }
}

/// The frames of one header block (HEADERS then CONTINUATIONs) as one block with the authority
/// fixed, or None to pass them as they are (nothing to fix, or not something to touch).
fn rewrite(frames: &[u8]) -> Option<Vec<u8>> {
    let mut block = Vec::new();
    let (mut at, mut first_flags, mut priority) = (0, 0, None);
    while at < frames.len() {
        let len = u32::from_be_bytes([0, frames[at], frames[at + 1], frames[at + 2]]) as usize;
        let (kind, flags) = (frames[at + 3], frames[at + 4]);
        let stream = &frames[at + 5..at + 9];
        let mut payload = &frames[at + FRAME_HEADER..at + FRAME_HEADER + len];
        if kind == HEADERS {
            first_flags = flags;
            if flags & PADDED != 0 {
                let pad = *payload.first()? as usize;
                payload = payload.get(1..payload.len().checked_sub(pad)?)?;
            }
            if flags & PRIORITY != 0 {
                priority = Some((payload.get(..5)?.to_vec(), stream.to_vec()));
                payload = &payload[5..];
            } else {
                priority = Some((Vec::new(), stream.to_vec()));
            }
        }
        block.extend_from_slice(payload);
        at += FRAME_HEADER + len;
    }
    let (prio, stream) = priority?;
    let fixed = fix_block(&block)?;
    // One HEADERS (its END_STREAM and PRIORITY kept, no padding) and CONTINUATIONs as needed.
    let mut out = Vec::with_capacity(fixed.len() + prio.len() + 2 * FRAME_HEADER);
    let mut rest: &[u8] = &fixed;
    let mut first = true;
    loop {
        let room = MAX_FRAME - if first { prio.len() } else { 0 };
        let (piece, tail) = rest.split_at(rest.len().min(room));
        let mut flags = if tail.is_empty() { END_HEADERS } else { 0 };
        let len = piece.len() + if first { prio.len() } else { 0 };
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        if first {
            flags |= first_flags & (END_STREAM | PRIORITY);
            out.push(HEADERS);
        } else {
            out.push(CONTINUATION);
        }
        out.push(flags);
        out.extend_from_slice(&stream);
        if first {
            out.extend_from_slice(&prio);
        }
        out.extend_from_slice(piece);
        rest = tail;
        first = false;
        if rest.is_empty() {
            return Some(out);
        }
    }
}

/// An HPACK integer with an `n`-bit prefix at the start of `b`: (value, bytes used).
fn integer(b: &[u8], n: u8) -> Option<(usize, usize)> {
    let mask = (1usize << n) - 1;
    let mut v = (*b.first()? as usize) & mask;
    if v < mask {
        return Some((v, 1));
    }
    for (i, byte) in b.iter().enumerate().skip(1).take(5) {
        v += ((byte & 0x7f) as usize) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// An HPACK string at the start of `b`: (Huffman-coded?, its octets, bytes used).
fn string(b: &[u8]) -> Option<(bool, &[u8], usize)> {
    let huffman = *b.first()? & 0x80 != 0;
    let (len, n) = integer(b, 7)?;
    Some((huffman, b.get(n..n.checked_add(len)?)?, n + len))
}

fn octets(huffman: bool, raw: &[u8]) -> Option<Vec<u8>> {
    if huffman {
        loona_hpack::huffman::HuffmanDecoder::new().decode(raw).ok()
    } else {
        Some(raw.to_vec())
    }
}

/// The header block with every `scheme://host:port[/…]` authority literal made `host:port`, or
/// None if it has none (or does not parse: h2 then answers it as it would have).
fn fix_block(block: &[u8]) -> Option<Vec<u8>> {
    // (value's start, end, new value) for each literal to replace.
    let mut edits = Vec::new();
    let mut at = 0;
    while at < block.len() {
        let b = block[at];
        if b & 0x80 != 0 {
            // Indexed field: nothing literal.
            at += integer(&block[at..], 7)?.1;
            continue;
        }
        if b & 0xe0 == 0x20 {
            // Dynamic table size update.
            at += integer(&block[at..], 5)?.1;
            continue;
        }
        // Literal, with incremental indexing (01), without (0000) or never indexed (0001).
        let prefix = if b & 0x40 != 0 { 6 } else { 4 };
        let (name_index, n) = integer(&block[at..], prefix)?;
        at += n;
        // Static table entry 1 is `:authority`.
        let mut is_authority = name_index == 1;
        if name_index == 0 {
            let (huffman, raw, n) = string(&block[at..])?;
            at += n;
            is_authority = raw.len() <= 16 && octets(huffman, raw)? == b":authority";
        }
        let (huffman, raw, n) = string(&block[at..])?;
        if is_authority {
            let value = octets(huffman, raw)?;
            if let Some(fixed) = strip_scheme(&value) {
                edits.push((at, at + n, fixed));
            }
        }
        at += n;
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(block.len());
    let mut from = 0;
    for (start, end, value) in edits {
        out.extend_from_slice(&block[from..start]);
        // A plain (not Huffman-coded) string: its length with a 7-bit prefix, then the octets.
        let mut len = value.len();
        if len < 0x7f {
            out.push(len as u8);
        } else {
            out.push(0x7f);
            len -= 0x7f;
            while len >= 0x80 {
                out.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            out.push(len as u8);
        }
        out.extend_from_slice(&value);
        from = end;
    }
    out.extend_from_slice(&block[from..]);
    Some(out)
}

/// `http://h:p` (or `https://h:p/...`) as `h:p`; None for anything that is not URL-shaped.
fn strip_scheme(value: &[u8]) -> Option<Vec<u8>> {
    let sep = value.windows(3).position(|w| w == b"://")?;
    let rest = &value[sep + 3..];
    let end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
    Some(rest[..end].to_vec())
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // What never completed a frame goes to h2 as it came.
                let rest = this.block_frames.split();
                this.output.unsplit(rest);
                let rest = this.input.split();
                this.output.unsplit(rest);
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if this.mode == Mode::Pass && this.input.is_empty() {
                // Nothing held back: read straight into the caller's buffer.
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            this.input.reserve(16 * 1024);
            let filled = {
                let spare = this.input.chunk_mut();
                // SAFETY: ReadBuf::uninit only lets the reader write initialised bytes, and we
                // advance by exactly what it reports as filled.
                let spare = unsafe { &mut *(spare as *mut _ as *mut [std::mem::MaybeUninit<u8>]) };
                let mut rb = ReadBuf::uninit(spare);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
                rb.filled().len()
            };
            if filled == 0 {
                this.eof = true;
                continue;
            }
            // SAFETY: `filled` bytes of the spare capacity were just written by the read.
            unsafe { this.input.advance_mut(filled) };
            this.process();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A listener whose connections pass through [`FixAuthority`].
pub struct Listener<L>(pub L);

impl<L: axum::serve::Listener> axum::serve::Listener for Listener<L> {
    type Io = FixAuthority<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (FixAuthority::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_frame(flags: u8, stream: u32, block: &[u8]) -> Vec<u8> {
        let mut f = (block.len() as u32).to_be_bytes()[1..].to_vec();
        f.push(HEADERS);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(block);
        f
    }

    /// A literal with incremental indexing on static name 1 (`:authority`), plain value.
    fn authority_literal(value: &[u8]) -> Vec<u8> {
        let mut b = vec![0x41, value.len() as u8];
        b.extend_from_slice(value);
        b
    }

    async fn pass(input: &[u8]) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        // Fed a few bytes at a time: frames split across reads must come out the same.
        let (mut w, r) = tokio::io::duplex(7);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in input.chunks(5) {
                w.write_all(piece).await.unwrap();
            }
        });
        FixAuthority::new(r).read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_url_authority_becomes_host_port() {
        // :method POST (static 3), then the authority, then :path literal without indexing.
        let mut block = vec![0x83];
        block.extend(authority_literal(b"http://127.0.0.1:2379"));
        block.extend([0x04, 0x02, b'/', b'x']);
        let mut want_block = vec![0x83];
        want_block.extend(authority_literal(b"127.0.0.1:2379"));
        want_block.extend([0x04, 0x02, b'/', b'x']);
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(END_HEADERS | END_STREAM, 1, &block));
        input.extend([0, 0, 1, 0, 1, 0, 0, 0, 1, b'z']); // DATA
        let mut want = PREFACE.to_vec();
        want.extend(headers_frame(END_HEADERS | END_STREAM, 1, &want_block));
        want.extend([0, 0, 1, 0, 1, 0, 0, 0, 1, b'z']);
        assert_eq!(pass(&input).await, want);
    }

    /// HPACK's Huffman code for the few characters the tests use (RFC 7541, appendix B).
    fn huffman(s: &[u8]) -> Vec<u8> {
        let (mut bits, mut n, mut out) = (0u64, 0u32, Vec::new());
        for c in s {
            let (code, len) = match c {
                b'h' => (0x27, 6),
                b't' => (0x9, 5),
                b'p' => (0x2b, 6),
                b':' => (0x5c, 7),
                b'/' => (0x18, 6),
                b'a' => (0x3, 5),
                b'1' => (0x1, 5),
                _ => unreachable!(),
            };
            bits = (bits << len) | code;
            n += len;
            while n >= 8 {
                out.push((bits >> (n - 8)) as u8);
                n -= 8;
            }
        }
        if n > 0 {
            // Padded with the EOS code's leading ones.
            out.push(((bits << (8 - n)) as u8) | (0xff >> n));
        }
        out
    }

    #[test]
    fn a_huffman_coded_url_authority_is_fixed_too() {
        let coded = huffman(b"http://a:1");
        let mut block = vec![0x82, 0x41, 0x80 | coded.len() as u8];
        block.extend(&coded);
        let fixed = fix_block(&block).expect("an edit");
        let headers = loona_hpack::Decoder::new().decode(&fixed).unwrap();
        assert_eq!(
            headers,
            vec![
                (b":method".to_vec(), b"GET".to_vec()),
                (b":authority".to_vec(), b"a:1".to_vec())
            ]
        );
        // RFC 7541 C.4.1: a Huffman-coded plain authority (www.example.com) is left alone.
        let rfc = hex::decode("828684418cf1e3c2e5f23a6ba0ab90f4ff").unwrap();
        assert!(fix_block(&rfc).is_none());
    }

    #[tokio::test]
    async fn everything_else_passes_unchanged() {
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(
            END_HEADERS,
            1,
            &authority_literal(b"127.0.0.1:2379"),
        ));
        assert_eq!(pass(&input).await, input);
        let http1 = b"GET /v2/keys/ HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec();
        assert_eq!(pass(&http1).await, http1);
        let cut = PREFACE[..10].to_vec();
        assert_eq!(pass(&cut).await, cut);
    }

    #[tokio::test]
    async fn a_block_split_over_continuations_is_joined() {
        let mut block = authority_literal(b"https://h:1/");
        block.extend([0x82]);
        let (a, b) = block.split_at(3);
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(0, 3, a));
        let mut cont = headers_frame(END_HEADERS, 3, b);
        cont[3] = CONTINUATION;
        input.extend(cont);
        let mut want_block = authority_literal(b"h:1");
        want_block.push(0x82);
        let mut want = PREFACE.to_vec();
        want.extend(headers_frame(END_HEADERS, 3, &want_block));
        assert_eq!(pass(&input).await, want);
    }
}
