//! Without a TPM: the registration ID (V8), base32, the blob parser, TCTI strings.

use base64::Engine as _;

use super::super::activation::ActivationBlob;
use super::super::*;

/// PROTOCOL.md section 7, vector V8 (a real EK and the registration ID DPS saw).
const V8_EK: &str = "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAopqgkUBwtpr1sCgVJcEZxsJtpmtOAt9K7SjGFe4hsp6DJ/dd2E5UFzBC+Jp8Fzqf5ukRBkqrAgIuAvHRsruIedk1uarJSLhbDpFLHxFd7iDNcYfrvdgVNT2T9zrvkh2y04WuRQg2D5qf0tZF82jeTjR/YJK7uWhaRwWOwZ3b1XD9l6wFOrwK/Ic0PEsjneFXQzL0n9uKyuHmHNz+wHppmOiMAabvnXXEin9ou7/iowY/+YhFm3j7atsVvxMI5HEM3Mq+W4imUuzPxVX7fZH+oWPKP5ofpWBTf+MdttGby1AjGnv8JE69JriOYoZG2/4qbsfv9M7a7NFrBlaW7Rt36w==";

#[test]
fn registration_id_vector_v8() {
    let ek = base64::engine::general_purpose::STANDARD
        .decode(V8_EK)
        .unwrap();
    assert_eq!(ek.len(), 316);
    assert_eq!(
        registration_id_from_ek(&ek),
        "6rek5qncnygnkzflohxz4u6zlfly6ktm4klsc7xrbgvesqyllnfa"
    );
    // Without the size prefix the ID is wrong (the prefix is part of the hash).
    assert_eq!(
        registration_id_from_ek(&ek[2..]),
        "u47axosnwxfzqzxvsbqclx6rlnj6sguzknyx5bmrjlexllab4oba"
    );
}

#[test]
fn base32_rfc4648_vectors_lowercase_unpadded() {
    for (input, out) in [
        ("", ""),
        ("f", "my"),
        ("fo", "mzxq"),
        ("foo", "mzxw6"),
        ("foob", "mzxw6yq"),
        ("fooba", "mzxw6ytb"),
        ("foobar", "mzxw6ytboi"),
    ] {
        assert_eq!(base32_lower_unpadded(input.as_bytes()), out, "{input}");
    }
}

fn tpm2b(b: &[u8]) -> Vec<u8> {
    [&(b.len() as u16).to_be_bytes()[..], b].concat()
}

fn blob(uri: Option<&[u8]>) -> Vec<u8> {
    let mut v = Vec::new();
    for f in [&b"cred"[..], b"secret", b"dup", b"seed", b"pub"] {
        v.extend(tpm2b(f));
    }
    if let Some(u) = uri {
        v.extend(tpm2b(u));
    }
    v
}

#[test]
fn blob_parser_accepts_the_layout_and_refuses_garbage() {
    ActivationBlob::parse(&blob(None)).expect("five fields");
    ActivationBlob::parse(&blob(Some(b""))).expect("empty encUriData");
    ActivationBlob::parse(&blob(Some(b"uri data"))).expect("encUriData");
    let dbg = format!("{:?}", ActivationBlob::parse(&blob(None)).unwrap());
    assert!(
        dbg.contains("dup_blob_len: 3") && !dbg.contains("100, 117"),
        "{dbg}"
    );

    let good = blob(Some(b"uri"));
    for (name, bad) in [
        ("empty", Vec::new()),
        ("one byte", vec![0]),
        ("cut in a field", good[..good.len() - 10].to_vec()),
        ("cut in encUriData", good[..good.len() - 1].to_vec()),
        ("stray byte", [blob(None), vec![7]].concat()),
        ("two trailing fields", [good.clone(), tpm2b(b"x")].concat()),
        (
            "oversized length",
            [vec![0xff, 0xff], good.clone()].concat(),
        ),
        (
            "empty credentialBlob",
            [tpm2b(b""), good[6..].to_vec()].concat(),
        ),
    ] {
        let err = ActivationBlob::parse(&bad).expect_err(name);
        assert_eq!(err.kind, ErrorKind::TpmActivationFailed, "{name}");
        assert!(err.message.contains("malformed"), "{name}: {}", err.message);
    }
}

#[test]
fn tcti_strings() {
    for ok in [
        "device:/dev/tpmrm0",
        "device",
        "swtpm:host=127.0.0.1,port=2321",
        "mssim:host=localhost,port=2321",
        "tabrmd",
        "tabrmd:bus_type=session",
    ] {
        parse_tcti(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // The device and bare tabrmd TCTIs are built without tss-esapi's parser: the same result.
    for direct in ["device:/dev/tpmrm0", "device", "device:", "tabrmd"] {
        assert_eq!(
            parse_tcti(direct).unwrap(),
            <tss_esapi::tcti_ldr::TctiNameConf as std::str::FromStr>::from_str(direct).unwrap(),
            "{direct}"
        );
    }
    for bad in [
        "",
        "tcp:1.2.3.4",
        "swtpm:port=notanumber",
        "libtpms",
        "swtpm:host=",
    ] {
        let err = parse_tcti(bad).expect_err(bad);
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "{bad}");
        assert!(err.message.contains("TCTI"), "{bad}: {}", err.message);
    }
    let d = TpmOptions::default();
    assert_eq!(
        (
            d.tcti.as_str(),
            d.ek_handle,
            d.srk_handle,
            d.identity_handle,
            d.create_missing
        ),
        (
            "device:/dev/tpmrm0",
            0x8101_0001,
            0x8100_0001,
            0x8100_0100,
            false
        )
    );
}

#[test]
fn bad_handles_and_unreachable_tpms_are_clear_errors() {
    let err = Tpm::open(&TpmOptions {
        identity_handle: 0x8000_0000,
        ..TpmOptions::default()
    })
    .expect_err("transient handle");
    assert_eq!(err.kind, ErrorKind::InvalidArgument);
    assert!(
        err.message.contains("identity handle 0x80000000"),
        "{}",
        err.message
    );

    // A port nobody listens on: the TCTI fails at once, with the TCTI named.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let err = Tpm::open(&TpmOptions {
        tcti: tcti.clone(),
        ..TpmOptions::default()
    })
    .expect_err("nothing listening");
    assert_eq!(err.kind, ErrorKind::Tpm);
    assert!(err.message.contains(&tcti), "{}", err.message);
}

#[test]
fn a_missing_device_is_a_clear_error() {
    let err = Tpm::open(&TpmOptions {
        tcti: "device:/nonexistent/tpmrm9".into(),
        ..TpmOptions::default()
    })
    .expect_err("no such device");
    assert_eq!(err.kind, ErrorKind::Tpm);
    assert!(
        err.message.contains("device:/nonexistent/tpmrm9"),
        "{}",
        err.message
    );
}

#[test]
fn tpm_and_its_key_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tpm>();
    check::<TpmHmacKey>();
}

#[test]
fn tpm_error_codes_are_stable() {
    assert_eq!(ErrorKind::Tpm.code(), 220);
    assert_eq!(ErrorKind::TpmActivationFailed.code(), 221);
}

#[test]
#[should_panic(expected = "is not in PATH: the TPM tests need the Debian packages")]
fn a_missing_tool_fails_the_test_with_the_packages_to_install() {
    super::harness::require("swtpm-that-does-not-exist");
}
