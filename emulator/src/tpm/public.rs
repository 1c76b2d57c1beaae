//! TPM2B_PUBLIC of the device's RSA keys (EK, SRK): parsing, checks, Name, and the default
//! registration ID derived from the EK (PROTOCOL.md 5.4, vector V8).

use base64::Engine;

use super::TpmError;
use super::crypto::sha256;
use super::marshal::Reader;

pub(crate) const TPM_ALG_RSA: u16 = 0x0001;
pub(crate) const TPM_ALG_HMAC: u16 = 0x0005;
pub(crate) const TPM_ALG_AES: u16 = 0x0006;
pub(crate) const TPM_ALG_KEYEDHASH: u16 = 0x0008;
pub(crate) const TPM_ALG_SHA256: u16 = 0x000b;
pub(crate) const TPM_ALG_NULL: u16 = 0x0010;
pub(crate) const TPM_ALG_RSAES: u16 = 0x0015;
pub(crate) const TPM_ALG_CFB: u16 = 0x0043;

/// TPMA_OBJECT bits (Part 2, 8.3).
pub(crate) mod attr {
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;
}

/// The symmetric definition of a storage key (TPMT_SYM_DEF_OBJECT), when not NULL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymDef {
    pub algorithm: u16,
    pub key_bits: u16,
    pub mode: u16,
}

/// A parsed RSA TPM2B_PUBLIC. Public data only, so `Debug` shows everything but the modulus.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublic {
    /// The bytes as received, including the 2-byte size prefix.
    tpm2b: Vec<u8>,
    pub name_alg: u16,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub symmetric: Option<SymDef>,
    pub scheme: u16,
    pub key_bits: u16,
    /// The public exponent (the TPM's 0 already replaced by 65537).
    pub exponent: u32,
    pub modulus: Vec<u8>,
}

impl std::fmt::Debug for RsaPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPublic")
            .field("name_alg", &format_args!("{:#06x}", self.name_alg))
            .field("attributes", &format_args!("{:#010x}", self.attributes))
            .field("symmetric", &self.symmetric)
            .field("key_bits", &self.key_bits)
            .field("name", &super::hex(&self.name()))
            .finish()
    }
}

impl RsaPublic {
    /// Parses a marshalled TPM2B_PUBLIC (size prefix included) holding an RSA key.
    pub fn parse(tpm2b: &[u8]) -> Result<RsaPublic, TpmError> {
        let mut outer = Reader::new(tpm2b);
        let area = outer.tpm2b("TPM2B_PUBLIC")?;
        outer.finish("TPM2B_PUBLIC")?;
        let mut r = Reader::new(area);
        let ty = r.u16("TPMT_PUBLIC.type")?;
        if ty != TPM_ALG_RSA {
            return Err(TpmError::Unsupported(format!(
                "key type {ty:#06x} (only RSA, 0x0001, is accepted)"
            )));
        }
        let name_alg = r.u16("TPMT_PUBLIC.nameAlg")?;
        if name_alg != TPM_ALG_SHA256 {
            return Err(TpmError::Unsupported(format!(
                "nameAlg {name_alg:#06x} (only SHA-256, 0x000b, is accepted)"
            )));
        }
        let attributes = r.u32("TPMT_PUBLIC.objectAttributes")?;
        let auth_policy = r.tpm2b("TPMT_PUBLIC.authPolicy")?.to_vec();
        let sym_alg = r.u16("TPMS_RSA_PARMS.symmetric.algorithm")?;
        let symmetric = if sym_alg == TPM_ALG_NULL {
            None
        } else {
            let key_bits = r.u16("TPMS_RSA_PARMS.symmetric.keyBits")?;
            let mode = r.u16("TPMS_RSA_PARMS.symmetric.mode")?;
            Some(SymDef {
                algorithm: sym_alg,
                key_bits,
                mode,
            })
        };
        let scheme = r.u16("TPMS_RSA_PARMS.scheme.scheme")?;
        if scheme != TPM_ALG_NULL && scheme != TPM_ALG_RSAES {
            r.u16("TPMS_RSA_PARMS.scheme.details.hashAlg")?;
        }
        let key_bits = r.u16("TPMS_RSA_PARMS.keyBits")?;
        let exponent = match r.u32("TPMS_RSA_PARMS.exponent")? {
            0 => 65537,
            e => e,
        };
        let modulus = r.tpm2b("TPMT_PUBLIC.unique.rsa")?.to_vec();
        r.finish("TPMT_PUBLIC")?;
        if modulus.len() * 8 != key_bits as usize {
            return Err(TpmError::Malformed(format!(
                "RSA modulus of {} bytes for keyBits {key_bits}",
                modulus.len()
            )));
        }
        Ok(RsaPublic {
            tpm2b: tpm2b.to_vec(),
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            key_bits,
            exponent,
            modulus,
        })
    }

    /// Parses the base64 form a device sends (`tpm.endorsementKey`, `tpm.storageRootKey`) and
    /// an enrollment holds.
    pub fn from_base64(b64: &str) -> Result<RsaPublic, TpmError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| TpmError::Malformed(format!("not base64: {e}")))?;
        RsaPublic::parse(&bytes)
    }

    /// The marshalled TPM2B_PUBLIC, size prefix included.
    pub fn as_tpm2b(&self) -> &[u8] {
        &self.tpm2b
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.tpm2b)
    }

    /// The TPMT_PUBLIC (without the size prefix).
    pub fn public_area(&self) -> &[u8] {
        &self.tpm2b[2..]
    }

    /// Name = nameAlg (u16) || SHA-256(TPMT_PUBLIC): 34 bytes.
    pub fn name(&self) -> Vec<u8> {
        object_name(self.public_area())
    }

    /// Checks what the service needs to protect a secret to this key, as the TPM itself checks
    /// a parent in ActivateCredential/Import: a restricted decryption key with an AES-128-CFB
    /// symmetric definition (the key size of the seed-derived AES key comes from it).
    pub fn check_storage_key(&self, role: &str) -> Result<(), TpmError> {
        let a = self.attributes;
        if a & attr::RESTRICTED == 0 || a & attr::DECRYPT == 0 || a & attr::SIGN != 0 {
            return Err(TpmError::Unsupported(format!(
                "{role}: attributes {a:#010x} are not a restricted decryption key"
            )));
        }
        let expected = SymDef {
            algorithm: TPM_ALG_AES,
            key_bits: 128,
            mode: TPM_ALG_CFB,
        };
        if self.symmetric != Some(expected) {
            return Err(TpmError::Unsupported(format!(
                "{role}: symmetric definition {:?} (only AES-128-CFB is accepted)",
                self.symmetric
            )));
        }
        if self.scheme != TPM_ALG_NULL {
            return Err(TpmError::Unsupported(format!(
                "{role}: scheme {:#06x} (a restricted decryption key has scheme NULL)",
                self.scheme
            )));
        }
        if !(2048..=4096).contains(&self.key_bits) {
            return Err(TpmError::Unsupported(format!(
                "{role}: RSA-{} (2048 to 4096 bits are accepted)",
                self.key_bits
            )));
        }
        Ok(())
    }

    /// The default DPS registration ID of a device whose EK this is:
    /// lowercase unpadded base32 (RFC 4648) of SHA-256 over the whole TPM2B_PUBLIC.
    pub fn registration_id(&self) -> String {
        registration_id_from_ek(&self.tpm2b)
    }
}

/// Name of an object with nameAlg SHA-256 from its TPMT_PUBLIC.
pub(crate) fn object_name(public_area: &[u8]) -> Vec<u8> {
    let mut n = TPM_ALG_SHA256.to_be_bytes().to_vec();
    n.extend_from_slice(&sha256(&[public_area]));
    n
}

/// Lowercase base32 of SHA-256(TPM2B_PUBLIC(EK)) without padding (52 characters).
pub fn registration_id_from_ek(ek_tpm2b: &[u8]) -> String {
    base32_lower_nopad(&sha256(&[ek_tpm2b]))
}

fn base32_lower_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut nbits = 0;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        nbits += 8;
        while nbits >= 5 {
            nbits -= 5;
            out.push(ALPHABET[((acc >> nbits) & 31) as usize] as char);
        }
        acc &= (1 << nbits) - 1;
    }
    if nbits > 0 {
        out.push(ALPHABET[((acc << (5 - nbits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// PROTOCOL.md vector V8: a real EK (TPM2B_PUBLIC, 316 bytes) from a DPS request.
    pub(crate) const V8_EK: &str = "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAopqgkUBwtpr1sCgVJcEZxsJtpmtOAt9K7SjGFe4hsp6DJ/dd2E5UFzBC+Jp8Fzqf5ukRBkqrAgIuAvHRsruIedk1uarJSLhbDpFLHxFd7iDNcYfrvdgVNT2T9zrvkh2y04WuRQg2D5qf0tZF82jeTjR/YJK7uWhaRwWOwZ3b1XD9l6wFOrwK/Ic0PEsjneFXQzL0n9uKyuHmHNz+wHppmOiMAabvnXXEin9ou7/iowY/+YhFm3j7atsVvxMI5HEM3Mq+W4imUuzPxVX7fZH+oWPKP5ofpWBTf+MdttGby1AjGnv8JE69JriOYoZG2/4qbsfv9M7a7NFrBlaW7Rt36w==";

    #[test]
    fn v8_registration_id_from_the_ek() {
        let ek = RsaPublic::from_base64(V8_EK).unwrap();
        assert_eq!(ek.as_tpm2b().len(), 316);
        assert_eq!(
            ek.registration_id(),
            "6rek5qncnygnkzflohxz4u6zlfly6ktm4klsc7xrbgvesqyllnfa"
        );
        // Hashing without the size prefix gives the wrong ID quoted in PROTOCOL.md.
        assert_eq!(
            base32_lower_nopad(&sha256(&[ek.public_area()])),
            "u47axosnwxfzqzxvsbqclx6rlnj6sguzknyx5bmrjlexllab4oba"
        );
    }

    #[test]
    fn v8_ek_fields_match_the_standard_template() {
        let ek = RsaPublic::from_base64(V8_EK).unwrap();
        assert_eq!(ek.name_alg, TPM_ALG_SHA256);
        assert_eq!(ek.attributes, 0x0003_00b2);
        assert_eq!(
            super::super::hex(&ek.auth_policy),
            "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"
        );
        assert_eq!(ek.key_bits, 2048);
        assert_eq!(ek.exponent, 65537);
        assert_eq!(ek.modulus.len(), 256);
        ek.check_storage_key("EK").unwrap();
        let name = ek.name();
        assert_eq!(name.len(), 34);
        assert_eq!(&name[..2], &[0x00, 0x0b]);
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 section 10, lowercased and unpadded.
        for (i, o) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32_lower_nopad(i.as_bytes()), o);
        }
    }

    #[test]
    fn refuses_bad_keys_with_clear_errors() {
        let ek = base64::engine::general_purpose::STANDARD
            .decode(V8_EK)
            .unwrap();
        let e = RsaPublic::parse(&ek[..100]).unwrap_err().to_string();
        assert!(e.contains("TPM2B_PUBLIC"), "{e}");
        let mut longer = ek.clone();
        longer.push(0);
        assert!(
            RsaPublic::parse(&longer)
                .unwrap_err()
                .to_string()
                .contains("trailing")
        );
        let mut ecc = ek.clone();
        ecc[3] = 0x23;
        assert!(
            RsaPublic::parse(&ecc)
                .unwrap_err()
                .to_string()
                .contains("only RSA")
        );
        let mut sha1 = ek.clone();
        sha1[5] = 0x04;
        assert!(
            RsaPublic::parse(&sha1)
                .unwrap_err()
                .to_string()
                .contains("nameAlg")
        );
        let mut signing = RsaPublic::parse(&ek).unwrap();
        signing.attributes = attr::SIGN | attr::RESTRICTED;
        assert!(signing.check_storage_key("SRK").is_err());
        assert!(RsaPublic::from_base64("%%%").is_err());
    }
}
