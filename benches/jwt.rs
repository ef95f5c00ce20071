//! `Keys::verify` cost per token, HS256 and EdDSA, on real keys loaded from files: the work
//! every HTTP request, upgrade, `auth` frame and `renew` pays.

use std::hint::black_box;
use std::os::unix::fs::PermissionsExt;

use consult_edge::auth::{KeySettings, KeySource, Keys, MintRequest, Revocations, Role, TokenType};
use criterion::{criterion_group, criterion_main, Criterion};
use jwt_simple::prelude::Ed25519KeyPair;

const NOW: u64 = 1_700_000_000;

fn load(dir: &tempfile::TempDir, source: KeySource) -> Keys {
    let settings = KeySettings {
        source,
        ..KeySettings::default()
    };
    Keys::load(&settings, dir.path()).expect("bench keys load")
}

fn write_0600(path: &std::path::Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

fn bench_verify(c: &mut Criterion) {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let secret = dir.path().join("secret");
    write_0600(&secret, &[42u8; 32]);
    let ed = dir.path().join("ed.pem");
    write_0600(&ed, Ed25519KeyPair::generate().to_pem().as_bytes());

    let revoked = Revocations::new();
    // A realistic revocation set: lookups are a hash probe among many entries.
    for i in 0..10_000 {
        revoked.insert(&format!("revoked-{i}"), NOW + 3600);
    }
    for (name, keys) in [
        ("verify_hs256", load(&dir, KeySource::HsSecretFile(secret))),
        ("verify_eddsa", load(&dir, KeySource::EdPrivateKey(ed))),
    ] {
        let token = keys
            .mint(MintRequest {
                sub: "patient-1".into(),
                role: Role::Patient,
                sid: None,
                typ: TokenType::Access,
                ttl_s: 900,
                now_unix: NOW,
            })
            .expect("mint");
        c.bench_function(name, |b| {
            b.iter(|| {
                keys.verify(black_box(&token), TokenType::Access, NOW, &revoked)
                    .expect("verify")
            })
        });
    }
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
