//! Generated names and identifiers: uids, `generateName` suffixes, the pod-template-hash.

use serde_json::Value;

/// The alphabet Kubernetes uses for generated suffixes (no vowels, no look-alikes).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A random 5-character suffix, as `generateName` and ReplicaSets' pods get.
pub fn suffix() -> String {
    (0..5)
        .map(|_| SAFE[fastrand::usize(..SAFE.len())] as char)
        .collect()
}

/// A 5-character suffix derived from `seed`, for names that must stay stable.
pub fn stable_suffix(seed: &str) -> String {
    let mut h = fnv32a(seed.as_bytes());
    (0..5)
        .map(|_| {
            let c = SAFE[(h % SAFE.len() as u32) as usize] as char;
            h /= SAFE.len() as u32;
            c
        })
        .collect()
}

/// A random RFC 4122 version-4 uid.
pub fn uid() -> String {
    let b: [u8; 16] = std::array::from_fn(|i| match i {
        6 => 0x40 | (fastrand::u8(..) & 0x0f),
        8 => 0x80 | (fastrand::u8(..) & 0x3f),
        _ => fastrand::u8(..),
    });
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `n` hexadecimal digits derived from `seed` (container ids, sandbox ids, event names).
pub fn hex_id(seed: &str, n: usize) -> String {
    let mut out = String::new();
    let mut round = 0u32;
    while out.len() < n {
        let h = fnv32a(format!("{round}/{seed}").as_bytes());
        out.push_str(&format!("{h:08x}"));
        round += 1;
    }
    out.truncate(n);
    out
}

pub fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The pod-template-hash of a Deployment's template, computed the way the deployment
/// controller does (fnv32a, then each decimal digit mapped into the safe alphabet), so it
/// is 8–10 characters long and equal templates always hash alike. serde_json keeps object
/// keys sorted, so the serialisation is canonical.
pub fn template_hash(template: &Value) -> String {
    let h = fnv32a(template.to_string().as_bytes());
    h.to_string()
        .bytes()
        .map(|b| SAFE[b as usize % SAFE.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_names_have_the_kubernetes_shape() {
        assert_eq!(suffix().len(), 5);
        assert_eq!(stable_suffix("a"), stable_suffix("a"));
        let u = uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        let h = template_hash(&json!({"metadata": {"labels": {"app": "x"}}}));
        assert!((1..=10).contains(&h.len()), "{h}");
        assert!(h.bytes().all(|b| SAFE.contains(&b)));
        assert_eq!(hex_id("pod", 64).len(), 64);
    }
}
