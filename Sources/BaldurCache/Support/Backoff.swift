import Foundation

/// Exponential backoff with jitter, for retrying after transient failures:
/// lock waits across a server restart, and reconnects to a server that
/// refuses connections.
///
/// Each delay is `initial * 2^(failures - 1)`, capped at `cap`, then cut to a
/// random 50-100% of itself, so that many callers that failed together do
/// not retry together.
struct Backoff: Sendable {
    let initial: Duration
    let cap: Duration
    /// Failures since the last ``reset()``.
    private(set) var failures = 0

    init(initial: Duration = .milliseconds(20), cap: Duration = .seconds(1)) {
        self.initial = initial
        self.cap = cap
    }

    /// Forgets the failures: the next delay is `initial` again.
    mutating func reset() { failures = 0 }

    /// Counts a failure and returns how long to wait before the next try.
    mutating func nextDelay() -> Duration {
        failures += 1
        let doubled = initial * (1 << min(failures - 1, 20))
        return min(doubled, cap) * Double.random(in: 0.5...1)
    }

    /// Counts a failure and sleeps its delay, cut short at `deadline`.
    ///
    /// - Returns: `false` (at once, without sleeping) when `deadline` has
    ///   passed: the caller's time is spent.
    mutating func sleep(until deadline: ContinuousClock.Instant?) -> Bool {
        var delay = nextDelay()
        if let deadline {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { return false }
            delay = min(delay, left)
        }
        Thread.sleep(forTimeInterval: Double(delay.nanoseconds) / 1e9)
        return true
    }
}
