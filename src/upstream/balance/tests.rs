use super::*;
use proptest::prelude::*;

fn policy(failures: u32, base_ms: u64, max_ms: u64, percent: u32) -> OutlierPolicy {
    OutlierPolicy {
        consecutive_failures: failures,
        base_ejection: Duration::from_millis(base_ms),
        max_ejection: Duration::from_millis(max_ms),
        max_ejection_percent: percent,
    }
}

fn eject(b: &Balancer, i: usize, now: u64) {
    for _ in 0..b.policy.consecutive_failures.max(1) {
        b.record(i, false, now);
    }
    assert!(b.ejected(i, now), "replica {i} ejected");
}

#[test]
fn picks_the_less_loaded_of_two() {
    let b = Balancer::new(2, OutlierPolicy::default());
    for _ in 0..3 {
        b.begin(0);
    }
    b.begin(1);
    for r in 0..200u64 {
        assert_eq!(b.pick(0, r.wrapping_mul(0x9E37_79B9_7F4A_7C15), 0), 1);
    }
    b.end(0);
    b.end(0);
    b.end(0);
    for r in 0..200u64 {
        assert_eq!(b.pick(0, r.wrapping_mul(0x9E37_79B9_7F4A_7C15), 0), 0);
    }
    assert_eq!(b.view(0, 0).map(|v| (v.outstanding, v.calls)), Some((0, 3)));
}

#[test]
fn ties_spread_over_all_replicas() {
    let b = Balancer::new(3, OutlierPolicy::default());
    let mut seen = [0u32; 3];
    let mut x = 0x1234_5678_9abc_def1u64;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seen[b.pick(0, x, 0)] += 1;
    }
    assert!(seen.iter().all(|n| *n > 700), "{seen:?}");
}

#[test]
fn a_failing_replica_loses_to_a_healthy_one() {
    let b = Balancer::new(2, OutlierPolicy::default());
    b.record(0, false, 0);
    b.begin(1);
    for r in 0..100u64 {
        assert_eq!(b.pick(999, r * 7919, 0), 1);
    }
    // A second later it competes again (by load), so it can show it recovered.
    for r in 0..100u64 {
        assert_eq!(b.pick(1000, r * 7919, 0), 0);
    }
    b.record(0, true, 1);
    assert_eq!(b.view(0, 1).map(|v| v.failures), Some(0));
}

#[test]
fn skips_ejected_and_avoided_replicas() {
    let b = Balancer::new(3, policy(2, 1000, 10_000, 100));
    eject(&b, 1, 10);
    for r in 0..200u64 {
        let p = b.pick(20, r * 104_729, 0);
        assert_ne!(p, 1);
        assert_ne!(b.pick(20, r * 104_729, 1 << 0), 0, "avoided");
    }
    // Avoiding every live replica: a live one still beats an ejected one.
    assert_ne!(b.pick(20, 5, 0b101), 1);
    // Back after the ejection period.
    assert!(!b.ejected(1, 1010));
    let mut seen = [false; 3];
    for r in 0..300u64 {
        seen[b.pick(1010, r * 104_729, 0)] = true;
    }
    assert_eq!(seen, [true; 3]);
}

#[test]
fn all_ejected_falls_back_to_the_one_ejected_longest_ago() {
    let b = Balancer::new(3, policy(1, 1000, 10_000, 100));
    eject(&b, 2, 5);
    eject(&b, 0, 6);
    eject(&b, 1, 7);
    for r in 0..50u64 {
        assert_eq!(b.pick(8, r, 0), 2);
    }
    assert_eq!(b.pick(8, 1, 1 << 2), 0, "then the next oldest");
    assert!(!b.others_available(0, 8));
}

#[test]
fn ejection_backs_off_and_is_capped() {
    let b = Balancer::new(2, policy(3, 100, 250, 50));
    // Two failures do not eject; a success resets the count.
    b.record(0, false, 0);
    b.record(0, false, 0);
    b.record(0, true, 0);
    b.record(0, false, 0);
    b.record(0, false, 0);
    assert!(!b.ejected(0, 0));
    assert!(b.record(0, false, 0), "third in a row ejects");
    assert_eq!(b.view(0, 0).map(|v| v.ejected_for_ms), Some(100));
    // Failures while ejected change nothing.
    for _ in 0..5 {
        assert!(!b.record(0, false, 50));
    }
    assert!(!b.ejected(0, 100));
    eject(&b, 0, 100);
    assert_eq!(b.view(0, 100).map(|v| v.ejected_for_ms), Some(200), "2x");
    eject(&b, 0, 300);
    assert_eq!(
        b.view(0, 300).map(|v| v.ejected_for_ms),
        Some(250),
        "capped"
    );
    assert_eq!(b.view(0, 300).map(|v| v.ejections), Some(3));
    // Serving well for max_ejection after it returned resets the multiplier.
    b.record(0, true, 550 + 250);
    eject(&b, 0, 1000);
    assert_eq!(b.view(0, 1000).map(|v| v.ejected_for_ms), Some(100));
}

#[test]
fn max_ejection_percent_keeps_replicas_in() {
    let b = Balancer::new(2, policy(1, 1000, 1000, 50));
    eject(&b, 0, 0);
    for _ in 0..10 {
        assert!(!b.record(1, false, 1), "a second of two would be 100%");
    }
    assert!(!b.ejected(1, 1));
    let off = Balancer::new(2, policy(0, 1000, 1000, 50));
    for _ in 0..10 {
        off.record(0, false, 0);
    }
    assert!(
        !off.ejected(0, 0),
        "consecutive_failures = 0: never ejected"
    );
}

proptest! {
    #[test]
    fn pick_is_in_range_and_never_ejected_while_one_is_live(
        n in 1usize..10,
        ejected in any::<u16>(),
        avoid in any::<u64>(),
        random in any::<u64>(),
        loads in proptest::collection::vec(0u32..5, 10),
    ) {
        let b = Balancer::new(n, policy(1, 1000, 1000, 100));
        for (i, load) in loads.iter().enumerate().take(n) {
            if ejected & (1 << i) != 0 {
                b.record(i, false, 0);
            }
            for _ in 0..*load {
                b.begin(i);
            }
        }
        let p = b.pick(1, random, avoid);
        prop_assert!(p < n);
        if (0..n).any(|i| !b.ejected(i, 1)) {
            prop_assert!(!b.ejected(p, 1));
        }
    }
}
