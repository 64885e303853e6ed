//! Signing: good signatures verify and survive the file, any change to a
//! signed manifest is refused, foreign or forged signatures are told apart,
//! and key files parse only in their one shape.

use super::*;
use crate::manifest::sign::{self, SignError};
use crate::manifest::ManifestSignature;
use ed25519_dalek::VerifyingKey;

fn signed(key: &SigningKey) -> Manifest {
    let mut m = manifest(varied_entries());
    sign::sign(&mut m, key);
    m
}

#[test]
fn good_signature_verifies_and_survives_the_file_round_trip() {
    let key = sign::from_seed(&[42; 32]);
    let other = signing_key(7);
    let m = signed(&key);
    let sig = m.signature.as_ref().expect("signed");
    assert_eq!(sig.key_id, sign::key_id(&key.verifying_key()));
    assert_eq!(sig.key_id.len(), 16);
    let trusted = [other.verifying_key(), key.verifying_key()];
    assert_eq!(sign::verify(&m, &trusted), Ok(sig.key_id.clone()));
    let back = Manifest::from_bytes(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(back, m);
    assert_eq!(sign::verify(&back, &trusted), Ok(sig.key_id.clone()));
    let text = String::from_utf8(format::encode_text(&m)).unwrap();
    let last = text.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "signature ed25519 {} {}",
            sig.key_id,
            to_hex(&sig.signature)
        )
    );
}

#[test]
fn signing_is_deterministic() {
    let key = signing_key(1);
    assert_eq!(
        format::encode_text(&signed(&key)),
        format::encode_text(&signed(&key))
    );
    assert_ne!(
        sign::key_id(&signing_key(1).verifying_key()),
        sign::key_id(&signing_key(2).verifying_key())
    );
}

#[test]
fn a_flipped_byte_in_the_body_is_a_digest_mismatch() {
    let key = signing_key(1);
    let trusted = [key.verifying_key()];
    let mut m = base_manifest();
    sign::sign(&mut m, &key);
    let text = format::encode_text(&m);
    let body_len = body_of(&m).len();
    for i in 0..body_len {
        let mut t = text.clone();
        t[i] ^= 0x01;
        match Manifest::from_bytes(&t) {
            Err(FormatError::Other(msg)) if msg.contains("digest mismatch") => {}
            // The body's final newline merges the last entry with the digest
            // line: the trailer itself is then malformed.
            Err(FormatError::Line { .. }) if i == body_len - 1 => {}
            other => panic!(
                "byte {i} ({:?}) flipped: expected a digest mismatch, got {other:?}",
                text[i] as char
            ),
        }
        // The rest is slow in a debug build (zstd, ed25519): a sample of
        // positions, the first byte of every line included.
        if i % 23 != 0 && text[i.saturating_sub(1)] != b'\n' {
            continue;
        }
        // Also through the compressed form.
        let z = format::compress(&t).unwrap();
        assert!(Manifest::from_bytes(&z).is_err(), "byte {i}, compressed");
        // An attacker without the key recomputes the digest: the signature
        // must then fail.
        let (body, _, sig) = match format::split_trailer(&t) {
            Ok(parts) => parts,
            Err(_) => continue,
        };
        let mut forged = with_digest(body);
        let sig = sig.expect("signature line untouched");
        forged.extend_from_slice(
            format!(
                "signature ed25519 {} {}\n",
                sig.key_id,
                to_hex(&sig.signature)
            )
            .as_bytes(),
        );
        if let Ok(m) = Manifest::from_bytes(&forged) {
            assert_eq!(
                sign::verify(&m, &trusted),
                Err(SignError::BadSignature(sig.key_id.clone())),
                "byte {i} flipped and digest recomputed: the signature still verified"
            );
        }
    }
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let key = signing_key(3);
    let trusted = [key.verifying_key()];
    let mut m = base_manifest();
    sign::sign(&mut m, &key);
    let text = format::encode_text(&m);
    for i in 0..text.len() {
        for mask in [0x01u8, 0x80] {
            let mut t = text.clone();
            t[i] ^= mask;
            if let Ok(m) = Manifest::from_bytes(&t) {
                assert!(
                    sign::verify(&m, &trusted).is_err(),
                    "byte {i} ^ {mask:#04x} ({:?}) was accepted",
                    text[i] as char
                );
            }
        }
    }
}

#[test]
fn signature_from_another_key_is_unknown_key() {
    let trusted_key = signing_key(1);
    let rogue = signing_key(2);
    let m = signed(&rogue);
    let rogue_id = sign::key_id(&rogue.verifying_key());
    let trusted_id = sign::key_id(&trusted_key.verifying_key());
    assert_eq!(
        sign::verify(&m, &[trusted_key.verifying_key()]),
        Err(SignError::UnknownKey(rogue_id.clone(), trusted_id))
    );
    assert_eq!(
        sign::verify(&m, &[]),
        Err(SignError::UnknownKey(rogue_id, String::new()))
    );
}

#[test]
fn forged_signature_with_the_right_key_id_is_bad_signature() {
    let key = signing_key(1);
    let id = sign::key_id(&key.verifying_key());
    let trusted = [key.verifying_key()];
    let mut m = manifest(varied_entries());
    // Random-looking bytes.
    for fill in [0x00u8, 0x55, 0xff] {
        m.signature = Some(ManifestSignature {
            key_id: id.clone(),
            signature: [fill; 64],
        });
        assert_eq!(
            sign::verify(&m, &trusted),
            Err(SignError::BadSignature(id.clone())),
            "fill {fill:#x}"
        );
    }
    // A real signature by another key, relabelled with the trusted id.
    let mut relabelled = signed(&signing_key(2));
    relabelled.signature.as_mut().unwrap().key_id = id.clone();
    assert_eq!(
        sign::verify(&relabelled, &trusted),
        Err(SignError::BadSignature(id.clone()))
    );
    // A real signature by the trusted key, over another manifest.
    let mut other = manifest(vec![Entry::new(&b"/"[..], FileKind::Dir)]);
    sign::sign(&mut other, &key);
    let mut replayed = manifest(varied_entries());
    replayed.signature = other.signature.clone();
    assert_eq!(
        sign::verify(&replayed, &trusted),
        Err(SignError::BadSignature(id.clone()))
    );
    // ... and through the file: the text still parses, the signature fails.
    let back = Manifest::from_bytes(&format::encode_text(&replayed)).unwrap();
    assert_eq!(
        sign::verify(&back, &trusted),
        Err(SignError::BadSignature(id))
    );
}

#[test]
fn unsigned_is_refused() {
    let m = manifest(varied_entries());
    assert_eq!(
        sign::verify(&m, &[signing_key(1).verifying_key()]),
        Err(SignError::Unsigned)
    );
    assert_eq!(sign::verify(&m, &[]), Err(SignError::Unsigned));
}

#[test]
fn stripping_the_signature_line_gives_an_unsigned_manifest() {
    let key = signing_key(4);
    let m = signed(&key);
    let text = format::encode_text(&m);
    let sig_start = text[..text.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let stripped = Manifest::from_bytes(&text[..sig_start]).unwrap();
    assert_eq!(stripped.signature, None);
    assert_eq!(
        sign::verify(&stripped, &[key.verifying_key()]),
        Err(SignError::Unsigned)
    );
}

#[test]
fn key_files_round_trip() {
    let key = signing_key(9);
    let secret = sign::encode_secret(&key);
    let public = sign::encode_public(&key.verifying_key());
    assert!(secret.starts_with("driftd-ed25519-secret-key ") && secret.ends_with('\n'));
    assert!(public.starts_with("driftd-ed25519-public-key ") && public.ends_with('\n'));
    assert_eq!(
        sign::parse_secret(&secret).unwrap().to_bytes(),
        key.to_bytes()
    );
    assert_eq!(
        sign::parse_public(&public).unwrap(),
        key.verifying_key(),
        "public key"
    );
    // Surrounding whitespace (an editor's extra newline) is tolerated.
    assert!(sign::parse_public(&format!("\n  {public}\n\n")).is_ok());
    assert!(sign::parse_secret(secret.trim_end()).is_ok());
}

#[test]
fn key_file_errors() {
    let key = signing_key(9);
    let secret = sign::encode_secret(&key);
    let public = sign::encode_public(&key.verifying_key());
    let hex = to_hex(key.as_bytes());
    let bad_secret = SignError::BadKeyFile("secret", "driftd-ed25519-secret-key");
    let bad_public = SignError::BadKeyFile("public", "driftd-ed25519-public-key");
    let garbage = [
        String::new(),
        "\n".into(),
        "garbage".into(),
        hex.clone(),
        format!("driftd-ed25519-secret-key{hex}"),
        format!("driftd-ed25519-secret-key {}", &hex[..62]),
        format!("driftd-ed25519-secret-key {hex}00"),
        format!("driftd-ed25519-secret-key {}zz", &hex[..62]),
        format!("DRIFTD-ED25519-SECRET-KEY {hex}"),
        format!("driftd-ed25519-secret-key {hex} extra"),
        format!("driftd-ed25519-secret-key {hex}\ndriftd-ed25519-secret-key {hex}"),
        format!("ssh-ed25519 {hex}"),
        "\u{fffd}\0\u{1}".into(),
    ];
    for g in &garbage {
        assert_eq!(
            sign::parse_secret(g).err(),
            Some(bad_secret.clone()),
            "parse_secret({g:?})"
        );
        let as_public = g.replace("secret", "public").replace("SECRET", "PUBLIC");
        assert_eq!(
            sign::parse_public(&as_public).err(),
            Some(bad_public.clone()),
            "parse_public({as_public:?})"
        );
    }
    // A key pasted into the wrong flag is recognised.
    assert_eq!(sign::parse_secret(&public).err(), Some(bad_secret));
    assert_eq!(sign::parse_public(&secret).err(), Some(bad_public));
    // 32 bytes that are not a curve point.
    let not_a_point = (0..=255u8)
        .map(|b| {
            let mut bytes = [0u8; 32];
            bytes[0] = b;
            bytes
        })
        .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
        .expect("some y coordinate is not on the curve");
    assert_eq!(
        sign::parse_public(&format!(
            "driftd-ed25519-public-key {}",
            to_hex(&not_a_point)
        ))
        .err(),
        Some(SignError::BadPublicKey)
    );
}
