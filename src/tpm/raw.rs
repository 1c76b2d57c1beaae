//! TPM2_HMAC_Start / TPM2_SequenceUpdate / TPM2_SequenceComplete as raw TPM commands.
//!
//! tss-esapi 7.7 (the last release that builds against Debian bookworm's tpm2-tss 3.2) does not
//! wrap the sequence commands, and its ESAPI context cannot be reached from safe code. So for
//! data longer than the TPM's input buffer the worker closes its ESAPI connection, sends these
//! three commands itself (password authorization with the empty auth of the identity key) over
//! the same transport the TCTI names, flushes the sequence object if anything fails, and
//! reopens the ESAPI connection. Transports: `device:` (the character device), `swtpm:` (raw
//! commands on the TCP port) and `mssim:` (the simulator framing). `tabrmd` (D-Bus) is not
//! reachable this way and gets a clear error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{State, tpm_error};
use crate::error::{Error, ErrorKind, Result};

const TPM_ST_NO_SESSIONS: u16 = 0x8001;
const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_CC_HMAC_START: u32 = 0x0000_015B;
const TPM_CC_SEQUENCE_UPDATE: u32 = 0x0000_015C;
const TPM_CC_SEQUENCE_COMPLETE: u32 = 0x0000_013E;
const TPM_CC_FLUSH_CONTEXT: u32 = 0x0000_0165;
const TPM_RS_PW: u32 = 0x4000_0009;
const TPM_RH_NULL: u32 = 0x4000_0007;
const TPM_ALG_SHA256: u16 = 0x000B;
/// The mssim protocol's TPM_SEND_COMMAND.
const MSSIM_SEND_COMMAND: u32 = 8;
/// Largest response accepted (TPM2_PT_MAX_RESPONSE_SIZE is 4096 on common TPMs).
const MAX_RESPONSE: usize = 8192;

/// HMAC-SHA256 of `data` with the identity key through a sequence; runs on the worker.
pub(crate) fn hmac_sequence(st: &mut State, data: &[u8]) -> Result<Vec<u8>> {
    let mut link = Link::for_tcti(&st.tcti_text)?;
    // The ESAPI connection must let go of the TPM first (swtpm and mssim serve one client,
    // /dev/tpm0 opens once).
    st.ctx = None;
    let result = sequence(st, &mut link, data);
    drop(link);
    let reopened = st.reopen();
    let digest = result?;
    reopened?;
    Ok(digest)
}

fn sequence(st: &mut State, link: &mut Link, data: &[u8]) -> Result<Vec<u8>> {
    let chunk = st.input_buffer;
    let mut params = Vec::with_capacity(4);
    params.extend_from_slice(&0u16.to_be_bytes()); // auth of the sequence object: empty
    params.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    st.count(1);
    let resp = link.call(
        "TPM2_HMAC_Start",
        &command(TPM_CC_HMAC_START, &[st.identity_handle], &params, true),
    )?;
    let seq = read_u32(&resp, 10, "TPM2_HMAC_Start")?;
    let result = (|| -> Result<Vec<u8>> {
        let split = data.len() - data.len().min(chunk);
        // Every update but the last carries a full buffer; SequenceComplete takes the rest.
        let (body, last) = data.split_at(split);
        for piece in body.chunks(chunk) {
            st.count(1);
            link.call(
                "TPM2_SequenceUpdate",
                &command(TPM_CC_SEQUENCE_UPDATE, &[seq], &tpm2b(piece), true),
            )?;
        }
        let mut params = tpm2b(last);
        params.extend_from_slice(&TPM_RH_NULL.to_be_bytes());
        st.count(1);
        let resp = link.call(
            "TPM2_SequenceComplete",
            &command(TPM_CC_SEQUENCE_COMPLETE, &[seq], &params, true),
        )?;
        // header (10), parameterSize (4), then TPM2B_DIGEST result.
        let len = usize::from(read_u16(&resp, 14, "TPM2_SequenceComplete")?);
        resp.get(16..16 + len)
            .map(|d| d.to_vec())
            .ok_or_else(|| truncated("TPM2_SequenceComplete"))
    })();
    if result.is_err() {
        // SequenceComplete flushes the object itself; after a failure it may still exist.
        st.count(1);
        let _ = link.call(
            "TPM2_FlushContext",
            &command(TPM_CC_FLUSH_CONTEXT, &[], &seq.to_be_bytes(), false),
        );
    }
    result
}

/// A TPM command: header, handles, an authorization area with one empty password session
/// (when `auth`), then the parameters.
fn command(cc: u32, handles: &[u32], params: &[u8], auth: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + params.len());
    let tag = if auth {
        TPM_ST_SESSIONS
    } else {
        TPM_ST_NO_SESSIONS
    };
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // size, patched below
    out.extend_from_slice(&cc.to_be_bytes());
    for h in handles {
        out.extend_from_slice(&h.to_be_bytes());
    }
    if auth {
        // TPMS_AUTH_COMMAND: handle, nonce (empty), attributes (none), hmac = password (empty)
        out.extend_from_slice(&9u32.to_be_bytes());
        out.extend_from_slice(&TPM_RS_PW.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.push(0);
        out.extend_from_slice(&0u16.to_be_bytes());
    }
    out.extend_from_slice(params);
    let size = out.len() as u32;
    out[2..6].copy_from_slice(&size.to_be_bytes());
    out
}

fn tpm2b(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 2);
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn truncated(step: &str) -> Error {
    Error::new(
        ErrorKind::Tpm,
        format!("{step}: the TPM response is truncated"),
    )
}

fn read_u16(b: &[u8], at: usize, step: &str) -> Result<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or_else(|| truncated(step))
}

fn read_u32(b: &[u8], at: usize, step: &str) -> Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| truncated(step))
}

/// The transport a TCTI string names.
enum Link {
    Device(std::fs::File),
    Swtpm(TcpStream),
    Mssim(TcpStream),
}

impl Link {
    fn for_tcti(tcti: &str) -> Result<Link> {
        let (name, conf) = tcti.split_once(':').unwrap_or((tcti, ""));
        let unreachable = |e: std::io::Error| {
            Error::new(
                ErrorKind::Tpm,
                format!("cannot reach the TPM at '{tcti}' for an HMAC sequence: {e}"),
            )
        };
        match name {
            "device" => {
                let path = if conf.is_empty() { "/dev/tpm0" } else { conf };
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map(Link::Device)
                    .map_err(unreachable)
            }
            "swtpm" | "mssim" => {
                let mut host = "localhost";
                let mut port = 2321u16;
                for kv in conf.split(',') {
                    match kv.split_once('=') {
                        Some(("host", h)) => host = h,
                        Some(("port", p)) => {
                            port = p.parse().map_err(|_| {
                                Error::new(
                                    ErrorKind::InvalidArgument,
                                    format!("malformed port in TCTI '{tcti}'"),
                                )
                            })?
                        }
                        _ => {}
                    }
                }
                let stream = connect(host, port).map_err(unreachable)?;
                Ok(if name == "swtpm" {
                    Link::Swtpm(stream)
                } else {
                    Link::Mssim(stream)
                })
            }
            _ => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "HMAC over data longer than the TPM input buffer needs a device:, swtpm: or \
                     mssim: TCTI, not '{tcti}'"
                ),
            )),
        }
    }

    /// Sends one command and returns the response, or the TPM's error code as an error.
    fn call(&mut self, step: &str, cmd: &[u8]) -> Result<Vec<u8>> {
        let io = |e: std::io::Error| {
            Error::new(
                ErrorKind::Tpm,
                format!("{step} failed: the TPM connection broke: {e}"),
            )
        };
        let resp = match self {
            Link::Device(f) => {
                f.write_all(cmd).map_err(io)?;
                let mut buf = vec![0u8; MAX_RESPONSE];
                let n = f.read(&mut buf).map_err(io)?;
                buf.truncate(n);
                buf
            }
            Link::Swtpm(s) => {
                s.write_all(cmd).map_err(io)?;
                read_response(s).map_err(io)?
            }
            Link::Mssim(s) => {
                let mut framed = Vec::with_capacity(cmd.len() + 9);
                framed.extend_from_slice(&MSSIM_SEND_COMMAND.to_be_bytes());
                framed.push(0); // locality
                framed.extend_from_slice(&(cmd.len() as u32).to_be_bytes());
                framed.extend_from_slice(cmd);
                s.write_all(&framed).map_err(io)?;
                let mut len = [0u8; 4];
                s.read_exact(&mut len).map_err(io)?;
                let len = u32::from_be_bytes(len) as usize;
                if len > MAX_RESPONSE {
                    return Err(truncated(step));
                }
                let mut buf = vec![0u8; len];
                s.read_exact(&mut buf).map_err(io)?;
                let mut ack = [0u8; 4];
                s.read_exact(&mut ack).map_err(io)?;
                buf
            }
        };
        let rc = read_u32(&resp, 6, step)?;
        if rc != 0 {
            return Err(Error::new(
                ErrorKind::Tpm,
                format!("{step} failed: TPM_RC {rc:#010x}"),
            ));
        }
        Ok(resp)
    }
}

fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn read_response(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 10];
    s.read_exact(&mut header)?;
    let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if !(10..=MAX_RESPONSE).contains(&size) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("response size {size}"),
        ));
    }
    let mut buf = header.to_vec();
    buf.resize(size, 0);
    s.read_exact(&mut buf[10..])?;
    Ok(buf)
}

impl State {
    /// Opens the ESAPI connection again (after a raw sequence, or after the connection broke)
    /// and resolves the handles anew.
    pub(crate) fn reopen(&mut self) -> Result<()> {
        let ctx = tss_esapi::Context::new(self.tcti.clone()).map_err(|e| {
            tpm_error(
                &format!("reconnecting to the TPM through TCTI '{}'", self.tcti_text),
                &e,
            )
        })?;
        self.ctx = Some(ctx);
        self.identity = None;
        let missing = |what: &str, h: u32| {
            Error::new(
                ErrorKind::Tpm,
                format!("the {what} at {h:#010x} disappeared from the TPM"),
            )
        };
        let resolved = (|| -> Result<_> {
            let ek = self
                .persistent(self.ek_handle)?
                .ok_or_else(|| missing("EK", self.ek_handle))?;
            let srk = self
                .persistent(self.srk_handle)?
                .ok_or_else(|| missing("SRK", self.srk_handle))?;
            let identity = self.persistent(self.identity_handle)?;
            Ok((ek, srk, identity))
        })();
        match resolved {
            Ok((ek, srk, identity)) => {
                (self.ek, self.srk, self.identity) = (ek, srk, identity);
            }
            Err(e) => {
                // Never keep a context whose EK/SRK handles were not resolved in it.
                self.ctx = None;
                return Err(e);
            }
        }
        Ok(())
    }
}
