import Synchronization

/// How many callers of one client may block in a lock wait (`BLPOP`) at once.
final class BlockingWaiterBudget: Sendable {
    /// The most at once: a quarter of the pool, at least one.
    let limit: Int
    private let inside = Atomic<Int>(0)

    init(maxConnections: Int) { limit = max(1, maxConnections / 4) }

    /// Takes a place when one is free; `false` when all are taken.
    func enter() -> Bool {
        var current = inside.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = inside.compareExchange(expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Gives back a place taken by ``enter()``.
    func leave() { inside.subtract(1, ordering: .releasing) }
}
