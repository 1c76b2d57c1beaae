//! Tests against a real software TPM (see [`super::swtpm`]): tpm2-tools performs the device's
//! side of PROTOCOL.md 5.4 on blobs this module builds.

use super::swtpm::Swtpm;
use super::*;

#[test]
fn swtpm_activates_the_blob_and_its_hmac_matches() {
    let tpm = Swtpm::start();
    let (ek, srk) = tpm.provision_ek_srk();
    ek.check_storage_key("EK").unwrap();
    srk.check_storage_key("SRK").unwrap();
    // Names as the TPM computes them (tpm2_readpublic -n).
    assert_eq!(ek.name(), tpm.read("ek.name"));
    assert_eq!(srk.name(), tpm.read("srk.name"));
    assert_eq!(ek.attributes, 0x0003_00b2);
    let reg_id = ek.registration_id();
    assert_eq!(reg_id.len(), 52);
    assert!(
        reg_id
            .bytes()
            .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
    );

    let key = HmacIdentityKey::generate().unwrap();
    let blob = ActivationBlob::build(&ek, &srk, &key).unwrap();
    // Through the wire form, as a device receives it.
    use base64::Engine;
    let wire = base64::engine::general_purpose::STANDARD
        .decode(blob.to_base64())
        .unwrap();
    let received = ActivationBlob::parse(&wire).unwrap();
    tpm.activate(&received, "id")
        .unwrap_or_else(|(tool, err)| panic!("{tool} refused our blob: {err}"));
    // The TPM's HMAC with the imported key equals ours, for a SAS string-to-sign and for data
    // longer than one TPM input buffer (tpm2_hmac then uses a sequence).
    let sr = format!("0ne00000001%2fregistrations%2f{reg_id}\n1700000000");
    assert_eq!(tpm.hmac("id", sr.as_bytes()), key.hmac(sr.as_bytes()));
    let long = vec![0x5au8; 3000];
    assert_eq!(tpm.hmac("id", &long), key.hmac(&long));
    assert!(key.verify(sr.as_bytes(), &tpm.hmac("id", sr.as_bytes())));

    // A second key (the hub key of the final answer) replaces nothing in the blob format.
    let hub = HmacIdentityKey::generate().unwrap();
    let blob2 = ActivationBlob::build(&ek, &srk, &hub).unwrap();
    tpm.activate(&blob2, "hub")
        .unwrap_or_else(|(tool, err)| panic!("{tool} refused the hub blob: {err}"));
    assert_eq!(tpm.hmac("hub", b"x"), hub.hmac(b"x"));
    assert_ne!(tpm.hmac("hub", b"x"), key.hmac(b"x"));
}

#[test]
fn swtpm_refuses_corrupted_blobs_and_blobs_for_another_ek() {
    let tpm = Swtpm::start();
    let (ek, srk) = tpm.provision_ek_srk();
    let key = HmacIdentityKey::generate().unwrap();
    let good = ActivationBlob::build(&ek, &srk, &key).unwrap();

    let mut bad = good.clone();
    bad.corrupt(Corruption::Credential);
    let (tool, err) = tpm.activate(&bad, "badcred").unwrap_err();
    assert_eq!(tool, "tpm2_activatecredential", "{err}");

    let mut bad = good.clone();
    bad.corrupt(Corruption::Duplicate);
    let (tool, err) = tpm.activate(&bad, "baddup").unwrap_err();
    assert_eq!(tool, "tpm2_import", "{err}");

    // Protected to another TPM's EK (PROTOCOL.md V8, a real device): this TPM cannot recover
    // the seed.
    let other = RsaPublic::from_base64(super::public::tests::V8_EK).unwrap();
    let foreign = ActivationBlob::build(&other, &srk, &key).unwrap();
    let (tool, _) = tpm.activate(&foreign, "foreign").unwrap_err();
    assert_eq!(tool, "tpm2_activatecredential");

    // Bound to another object's Name: activation with this SRK fails too.
    let mut wrong_name = good.clone();
    let cred = make_credential(&ek, &[1u8; 16], &ek.name()).unwrap();
    wrong_name.credential_blob = cred.blob;
    wrong_name.encrypted_secret = cred.encrypted_seed;
    let (tool, _) = tpm.activate(&wrong_name, "wrongname").unwrap_err();
    assert_eq!(tool, "tpm2_activatecredential");

    // The untouched blob still works on this TPM after all the refusals.
    tpm.activate(&good, "good")
        .unwrap_or_else(|(tool, err)| panic!("{tool}: {err}"));
    assert_eq!(tpm.hmac("good", b"sas"), key.hmac(b"sas"));
}
