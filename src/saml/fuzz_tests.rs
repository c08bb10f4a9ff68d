//! A mutation fuzzer for the ACS input path (`flow::peek` and `response::verify`), run by
//! the test suite: genuine responses in several forms (signed Response, signed Assertion,
//! encrypted) are bent at random — bytes flipped, dropped, duplicated; XML tokens, DTDs,
//! comments and entities inserted; elements duplicated and swapped between responses — and
//! each mutant is judged. The properties: nothing panics, and no mutant signs in anyone
//! but the genuine user with the genuine attributes.
//!
//! `LANYARD_FUZZ_ITERATIONS` sets the number of mutants (default 3000, a few seconds);
//! the seed is printed so that a failure can be replayed with `LANYARD_FUZZ_SEED`.

use rand::{Rng, SeedableRng};

use super::response::{verify, Expected};
use super::testkit::*;

const TOKENS: &[&str] = &[
    "<",
    ">",
    "\"",
    "'",
    "&",
    "&amp;",
    "&lt;",
    "&#x3c;",
    "<!---->",
    "<!--",
    "-->",
    "<![CDATA[x]]>",
    "<?pi?>",
    "<!DOCTYPE x>",
    "<!ENTITY e \"v\">",
    "&e;",
    " ID=\"_dup\"",
    "xmlns=\"urn:x\"",
    "xmlns:saml=\"urn:x\"",
    "</saml:Assertion>",
    "<saml:Assertion>",
    "<ds:Signature>",
    "</ds:Signature>",
    "\u{0}",
    "\u{feff}",
    "é",
];

fn mutate(rng: &mut rand::rngs::StdRng, src: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = src.to_vec();
    for _ in 0..rng.gen_range(1..=3) {
        if v.is_empty() {
            break;
        }
        let at = rng.gen_range(0..v.len());
        match rng.gen_range(0..7) {
            0 => v[at] ^= 1 << rng.gen_range(0..8),
            1 => {
                let n = rng.gen_range(1..=16).min(v.len() - at);
                v.drain(at..at + n);
            }
            2 => {
                let t = TOKENS[rng.gen_range(0..TOKENS.len())].as_bytes();
                v.splice(at..at, t.iter().copied());
            }
            3 => {
                let n = rng.gen_range(1..=200).min(v.len() - at);
                let chunk = v[at..at + n].to_vec();
                v.splice(at..at, chunk);
            }
            4 if !other.is_empty() => {
                let from = rng.gen_range(0..other.len());
                let n = rng.gen_range(1..=300).min(other.len() - from);
                v.splice(at..at, other[from..from + n].iter().copied());
            }
            5 => v.truncate(at),
            _ => {
                // Move an element-sized chunk elsewhere.
                let n = rng.gen_range(1..=400).min(v.len() - at);
                let chunk: Vec<u8> = v.drain(at..at + n).collect();
                let to = rng.gen_range(0..=v.len());
                v.splice(to..to, chunk);
            }
        }
    }
    v
}

#[test]
fn mutated_responses_never_panic_and_never_sign_in_anyone_else() {
    let iterations: usize = std::env::var("LANYARD_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let seed: u64 = std::env::var("LANYARD_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    println!("ACS fuzz: {iterations} mutants, LANYARD_FUZZ_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let sp_key = key(KEY_A, CERT_A);
    let decryption = [sp_key.clone()];
    let genuine: Vec<Vec<u8>> = vec![
        response(&Build::default()).into_bytes(),
        response(&Build { sign_response: false, ..Build::default() }).into_bytes(),
        response(&Build { sign_assertion: false, ..Build::default() }).into_bytes(),
        {
            let b = Build { sign_response: false, ..Build::default() };
            response_with(&b, &encrypt(&assertion(&b), &sp_key, "aes128-gcm", false, true)).into_bytes()
        },
    ];
    let certs = certs_a();
    let exp: Expected = expected(&certs);
    let dec = |doc: &str| super::decrypt::decrypt(doc, &decryption);
    let reference = verify(&genuine[0], &exp, &dec).expect("the genuine response verifies");
    let (mut accepted, mut refused) = (0usize, 0usize);
    for i in 0..iterations {
        let src = &genuine[i % genuine.len()];
        let other = &genuine[(i + 1) % genuine.len()];
        let m = mutate(&mut rng, src, other);
        let _ = super::flow::peek(&m);
        match verify(&m, &exp, &dec) {
            Ok(v) => {
                accepted += 1;
                assert_eq!(v.username, reference.username, "seed {seed}, mutant {i}: {}", String::from_utf8_lossy(&m));
                assert_eq!(v.attributes, reference.attributes, "seed {seed}, mutant {i}");
                assert_eq!(v.assertion_id, reference.assertion_id, "seed {seed}, mutant {i}");
            }
            Err(_) => refused += 1,
        }
    }
    println!("ACS fuzz: {iterations} executions, 0 crashes, {refused} refused, {accepted} accepted unchanged");
}
