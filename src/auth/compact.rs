//! The public parts of a compact JWS, read without jwt-simple's constant-time decoder.
//!
//! # Invariants
//!
//! - [`decode_b64url`] accepts exactly what jwt-simple's decoder accepts (ct_codecs
//!   `Base64UrlSafeNoPadding`, no ignored characters: the URL-safe alphabet, no `=`, a length
//!   that is not 1 mod 4, zero bits after the last byte) and yields the same bytes; a proptest
//!   checks it against ct_codecs.
//! - It is only used on data the client already holds: the header, the payload and the
//!   received signature. The one secret-dependent value, the MAC computed with our key, is
//!   never decoded here; it is compared with ct_codecs' constant-time `verify`.
//! - [`Header`] has jwt-simple's header fields with jwt-simple's types, so that a header is
//!   refused here exactly when jwt-simple's `Token::decode_metadata` refuses it.
//!
//! # Implementation
//!
//! A 256-entry table maps a byte to its 6-bit value or [`INVALID`]; whole groups of four
//! characters are decoded into three bytes at once, the last 2 or 3 characters one by one.
//! The constant-time decoder
//! spent ~90 instructions a character (three parts of a ~350-byte token, the header twice: ~30k
//! instructions per verify); the table needs a few.

use std::borrow::Cow;

use serde::Deserialize;

/// Table value of a byte outside the URL-safe base64 alphabet.
const INVALID: u8 = 0xff;

/// The bits a valid table value may have set: a base64 character carries 6 bits, so any
/// higher bit (as in [`INVALID`]) marks a byte outside the alphabet.
const SIX_BITS: u8 = 0x3f;

/// Bits of the accumulator that can still be pending after a byte is written: at most 4
/// (base64 packs 6 bits per character; 2 or 3 characters of a final group leave 4 or 2).
const MAX_PENDING_BITS: u32 = 4;

/// Each byte's 6-bit value in base64url (RFC 4648 §5), or [`INVALID`].
const DECODE: [u8; 256] = decode_table();

const fn decode_table() -> [u8; 256] {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 26 {
        table[b'A' as usize + i] = i as u8;
        table[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        table[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    table[b'-' as usize] = 62;
    table[b'_' as usize] = 63;
    table
}

/// Decodes unpadded base64url; `None` where jwt-simple's decoder returns an error.
pub(crate) fn decode_b64url(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    let mut groups = bytes.chunks_exact(4);
    for group in &mut groups {
        // Four characters, 24 bits, three bytes; an invalid character sets a high bit of `bad`.
        let (mut acc, mut bad) = (0u32, 0u8);
        for &c in group {
            // A `u8` index into a 256-entry table is always in bounds.
            let value = DECODE[usize::from(c)];
            bad |= value;
            acc = (acc << 6) | u32::from(value & SIX_BITS);
        }
        if bad & !SIX_BITS != 0 {
            return None;
        }
        let [_, b0, b1, b2] = acc.to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2]);
    }
    let mut acc: u32 = 0;
    let mut pending: u32 = 0;
    for &c in groups.remainder() {
        let value = DECODE[usize::from(c)];
        if value == INVALID {
            return None;
        }
        acc = (acc << 6) | u32::from(value);
        pending += 6;
        if pending >= 8 {
            pending -= 8;
            out.push((acc >> pending) as u8);
            acc &= (1 << pending) - 1;
        }
    }
    // A lone final character (6 pending bits), or non-zero bits after the last byte.
    if pending > MAX_PENDING_BITS || acc != 0 {
        return None;
    }
    Some(out)
}

/// A JWS header with the fields and types of jwt-simple's `JWTHeader` (which is private).
/// Only `alg`, `kid`, `typ`, `crit` and `salt` are used; the others are here so that an
/// ill-typed one is refused, as jwt-simple refuses it.
#[derive(Debug, Deserialize)]
pub(crate) struct Header<'a> {
    /// `alg`: the signing algorithm the token claims.
    #[serde(borrow)]
    pub(crate) alg: Cow<'a, str>,
    /// `kid`: which of our keys signed it; `None` means the primary key.
    #[serde(default, borrow)]
    pub(crate) kid: Option<Cow<'a, str>>,
    /// `typ`: when present, `JWT` or `...+JWT` (any case).
    #[serde(default, borrow)]
    pub(crate) typ: Option<Cow<'a, str>>,
    /// `crit`: extensions the verifier must understand; we understand none.
    #[serde(default)]
    pub(crate) crit: Option<Vec<String>>,
    /// `salt`: jwt-simple's salted keys; ours have no salt, so a token with one is refused.
    #[serde(default)]
    pub(crate) salt: Option<String>,
    #[serde(default, rename = "cty")]
    _cty: Option<String>,
    #[serde(default, rename = "x5c")]
    _x5c: Option<Vec<String>>,
    #[serde(default, rename = "jku")]
    _jku: Option<String>,
    #[serde(default, rename = "jwk")]
    _jwk: Option<String>,
    #[serde(default, rename = "x5u")]
    _x5u: Option<String>,
    #[serde(default, rename = "x5t")]
    _x5t: Option<String>,
    #[serde(default, rename = "x5t#S256")]
    _x5t_s256: Option<String>,
}

impl<'a> Header<'a> {
    /// The header from its decoded JSON, or `None` where jwt-simple would refuse it.
    pub(crate) fn parse(json: &'a [u8]) -> Option<Header<'a>> {
        serde_json::from_slice(json).ok()
    }

    /// jwt-simple's header rules beyond `alg` and `kid`: no critical extension, a `typ` of
    /// `JWT` or `...+JWT` when present, no salt (our keys have none).
    pub(crate) fn acceptable(&self) -> bool {
        let crit_ok = self.crit.as_ref().is_none_or(Vec::is_empty);
        let typ_ok = self.typ.as_deref().is_none_or(|typ| {
            typ == "JWT" || {
                let upper = typ.to_uppercase();
                upper == "JWT" || upper.ends_with("+JWT")
            }
        });
        crit_ok && typ_ok && self.salt.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder, Encoder};
    use proptest::prelude::*;

    fn reference(text: &str) -> Option<Vec<u8>> {
        Base64UrlSafeNoPadding::decode_to_vec(text, None).ok()
    }

    #[test]
    fn b64url_round_trips_every_length() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = Base64UrlSafeNoPadding::encode_to_string(&bytes).unwrap_or_default();
            assert_eq!(decode_b64url(&text), Some(bytes), "len={len} text={text}");
        }
    }

    #[test]
    fn b64url_refuses_what_ct_codecs_refuses() {
        for text in [
            "A", "AB", "AAAAA", "AB==", "a+b/", "ab c", "ab.c", "AAB", "AAAB",
        ] {
            assert_eq!(decode_b64url(text), reference(text), "text={text:?}");
        }
        assert_eq!(decode_b64url("AB"), None, "non-zero trailing bits");
        assert_eq!(decode_b64url("AA"), Some(vec![0]));
    }

    proptest! {
        #[test]
        fn b64url_matches_ct_codecs_on_any_text(text in "[A-Za-z0-9_=+/. -]{0,24}") {
            prop_assert_eq!(decode_b64url(&text), reference(&text));
        }

        #[test]
        fn b64url_matches_ct_codecs_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            let text = String::from_utf8_lossy(&bytes);
            prop_assert_eq!(decode_b64url(&text), reference(&text));
        }
    }

    #[test]
    fn header_typ_rules_follow_jwt_simple() {
        let ok = |json: &str| Header::parse(json.as_bytes()).is_some_and(|h| h.acceptable());
        assert!(ok(r#"{"alg":"HS256","typ":"JWT"}"#));
        assert!(ok(r#"{"alg":"HS256","typ":"jwt"}"#));
        assert!(ok(r#"{"alg":"HS256","typ":"at+jwt"}"#));
        assert!(ok(r#"{"alg":"HS256"}"#));
        assert!(ok(r#"{"alg":"HS256","crit":[]}"#));
        assert!(!ok(r#"{"alg":"HS256","typ":"JOSE"}"#));
        assert!(!ok(r#"{"alg":"HS256","crit":["b64"]}"#));
        assert!(!ok(r#"{"alg":"HS256","salt":"AA"}"#));
    }

    #[test]
    fn header_ill_typed_field_refused() {
        assert!(Header::parse(br#"{"alg":"HS256","kid":5}"#).is_none());
        assert!(Header::parse(br#"{"alg":"HS256","x5u":true}"#).is_none());
        assert!(Header::parse(br#"{"kid":"k"}"#).is_none());
        assert!(Header::parse(br#"{"alg":"HS\u0032""#).is_none());
        let escaped = Header::parse(br#"{"alg":"HS\u00326"}"#);
        assert_eq!(
            escaped.map(|h| h.alg.into_owned()),
            Some("HS26".to_string())
        );
    }
}
