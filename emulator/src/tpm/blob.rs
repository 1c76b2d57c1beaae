//! The DPS activation blob (PROTOCOL.md 5.4, step 3): the `authenticationKey` of the 401
//! challenge and of `registrationState.tpm` in the final answer. Six TPM structures back to back:
//!
//! | # | field             | TPM type                | what                                   |
//! |---|-------------------|-------------------------|----------------------------------------|
//! | 1 | `credentialBlob`  | TPM2B_ID_OBJECT         | MakeCredential(EK, innerKey, Name(SRK))|
//! | 2 | `encryptedSecret` | TPM2B_ENCRYPTED_SECRET  | its seed, RSA-OAEP "IDENTITY" to EK    |
//! | 3 | `dupBlob`         | TPM2B_PRIVATE           | the HMAC key duplicated to the SRK     |
//! | 4 | `encWrapKey`      | TPM2B_ENCRYPTED_SECRET  | its seed, RSA-OAEP "DUPLICATE" to SRK  |
//! | 5 | `idKeyPub`        | TPM2B_PUBLIC            | the HMAC key's public area             |
//! | 6 | `encUriData`      | TPM2B                   | unused by every client; empty here     |

use base64::Engine;

use super::TpmError;
use super::credential::{duplicate, make_credential};
use super::crypto::random;
use super::identity::HmacIdentityKey;
use super::marshal::Reader;
use super::public::RsaPublic;

/// The six marshalled fields, each with its u16 size prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct ActivationBlob {
    pub credential_blob: Vec<u8>,
    pub encrypted_secret: Vec<u8>,
    pub dup_blob: Vec<u8>,
    pub enc_wrap_key: Vec<u8>,
    pub id_key_pub: Vec<u8>,
    pub enc_uri_data: Vec<u8>,
}

impl std::fmt::Debug for ActivationBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivationBlob")
            .field("len", &self.to_bytes().len())
            .finish_non_exhaustive()
    }
}

/// What part of a blob a fault damages (`corrupt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// One bit of the credential's integrity HMAC: TPM2_ActivateCredential fails
    /// (TPM_RC_INTEGRITY), so the device never gets the inner wrapper key.
    Credential,
    /// One bit of the duplicate's encrypted sensitive area: ActivateCredential succeeds but
    /// TPM2_Import fails its integrity check.
    Duplicate,
}

impl ActivationBlob {
    /// Protects `key` for the device whose EK and SRK these are: a fresh 16-byte inner
    /// wrapper key encrypts the duplicate (to the SRK) and is itself the credential
    /// (to the EK, bound to Name(SRK)).
    pub fn build(
        ek: &RsaPublic,
        srk: &RsaPublic,
        key: &HmacIdentityKey,
    ) -> Result<ActivationBlob, TpmError> {
        let mut inner_key = [0u8; 16];
        random(&mut inner_key)?;
        Self::build_with_inner_key(ek, srk, key, &inner_key)
    }

    /// [`ActivationBlob::build`] with a given inner wrapper key (the caller draws it fresh).
    pub fn build_with_inner_key(
        ek: &RsaPublic,
        srk: &RsaPublic,
        key: &HmacIdentityKey,
        inner_key: &[u8; 16],
    ) -> Result<ActivationBlob, TpmError> {
        let inner_key = *inner_key;
        let dup = duplicate(srk, &key.public_area(), &key.sensitive(), &inner_key)?;
        let cred = make_credential(ek, &inner_key, &srk.name())?;
        Ok(ActivationBlob {
            credential_blob: cred.blob,
            encrypted_secret: cred.encrypted_seed,
            dup_blob: dup.blob,
            enc_wrap_key: dup.encrypted_seed,
            id_key_pub: key.tpm2b_public(),
            enc_uri_data: vec![0, 0],
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        [
            &self.credential_blob[..],
            &self.encrypted_secret,
            &self.dup_blob,
            &self.enc_wrap_key,
            &self.id_key_pub,
            &self.enc_uri_data,
        ]
        .concat()
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.to_bytes())
    }

    /// Splits a blob into its fields (the device's reading of it). The last field may be
    /// absent, as the clients treat it as optional.
    pub fn parse(bytes: &[u8]) -> Result<ActivationBlob, TpmError> {
        let mut r = Reader::new(bytes);
        let credential_blob = r.tpm2b_raw("credentialBlob")?.to_vec();
        let encrypted_secret = r.tpm2b_raw("encryptedSecret")?.to_vec();
        let dup_blob = r.tpm2b_raw("dupBlob")?.to_vec();
        let enc_wrap_key = r.tpm2b_raw("encWrapKey")?.to_vec();
        let id_key_pub = r.tpm2b_raw("idKeyPub")?.to_vec();
        let enc_uri_data = if r.remaining() == 0 {
            vec![0, 0]
        } else {
            r.tpm2b_raw("encUriData")?.to_vec()
        };
        r.finish("activation blob")?;
        Ok(ActivationBlob {
            credential_blob,
            encrypted_secret,
            dup_blob,
            enc_wrap_key,
            id_key_pub,
            enc_uri_data,
        })
    }

    /// Damages the blob for a fault test (the structure stays parseable).
    pub fn corrupt(&mut self, what: Corruption) {
        match what {
            // Size (2), integrity size (2), then the HMAC's first byte.
            Corruption::Credential => self.credential_blob[4] ^= 0x01,
            Corruption::Duplicate => {
                if let Some(b) = self.dup_blob.last_mut() {
                    *b ^= 0x01;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::public::tests::V8_EK;
    use super::*;

    #[test]
    fn layout_round_trips_through_parse() {
        let ek = RsaPublic::from_base64(V8_EK).unwrap();
        // V8's EK stands in for an SRK too: same template class (restricted decrypt, AES-128-CFB).
        let key = HmacIdentityKey::generate().unwrap();
        let blob = ActivationBlob::build(&ek, &ek, &key).unwrap();
        let bytes = blob.to_bytes();
        // credential 54, secret 258, duplicate 2 + 34 + (34 + 74), seed 258, public 50, uri 2
        assert_eq!(blob.credential_blob.len(), 2 + 2 + 32 + 18);
        assert_eq!(blob.encrypted_secret.len(), 2 + 256);
        assert_eq!(blob.dup_blob.len(), 2 + 2 + 32 + (2 + 32 + 2 + 72));
        assert_eq!(blob.enc_wrap_key.len(), 2 + 256);
        assert_eq!(blob.id_key_pub, key.tpm2b_public());
        assert_eq!(bytes.len(), 54 + 258 + 144 + 258 + 50 + 2);
        assert_eq!(ActivationBlob::parse(&bytes).unwrap(), blob);
        // Without the optional trailing field, and with garbage after it.
        assert_eq!(
            ActivationBlob::parse(&bytes[..bytes.len() - 2]).unwrap(),
            blob
        );
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0, 1, 9, 9]);
        assert!(ActivationBlob::parse(&longer).is_err());
        assert!(ActivationBlob::parse(&bytes[..300]).is_err());
        // Two blobs for one key differ (fresh inner key and seeds).
        assert_ne!(ActivationBlob::build(&ek, &ek, &key).unwrap(), blob);
        assert!(!format!("{blob:?}").contains(&blob.to_base64()[..8]));
    }

    #[test]
    fn corruption_changes_one_bit() {
        let ek = RsaPublic::from_base64(V8_EK).unwrap();
        let key = HmacIdentityKey::generate().unwrap();
        let blob = ActivationBlob::build(&ek, &ek, &key).unwrap();
        for what in [Corruption::Credential, Corruption::Duplicate] {
            let mut bad = blob.clone();
            bad.corrupt(what);
            let diff: u32 = blob
                .to_bytes()
                .iter()
                .zip(bad.to_bytes())
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(diff, 1, "{what:?}");
        }
    }
}
