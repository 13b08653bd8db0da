import DequeModule

/// The lock waiters of one client that are not in a `BLPOP` (the
/// ``BlockingWaiterBudget`` is spent), by lock key, oldest first, and how
/// many of its waiters are in a `BLPOP` for each key.
///
/// A release this client makes wakes one waiter, so a handoff between the
/// client's own callers never waits for the poll interval: the release's
/// signal in Redis (`{key}:signal`) wakes a `BLPOP` waiter when the client
/// has one on that key (or one in another process); when it has none, the
/// key's oldest waiter here wakes at once. One contender per release, not
/// two racing. A release by another process reaches the waiters here
/// through a `BLPOP` waiter of this client that took the lock and released
/// it in turn, or at the poll interval.
final class LocalLockWaiters: Sendable {
    private struct Waiting {
        var sleepers: [String: Deque<ReleaseSignal>] = [:]
        var popping: [String: Int] = [:]
    }

    private let waiting = PlainMutex(Waiting())

    /// A waiter of this client is in a `BLPOP` for `key` while `body` runs.
    func popping<R, E: Error>(_ key: String, _ body: () throws(E) -> R) throws(E) -> R {
        countPopping(key, by: 1)
        defer { countPopping(key, by: -1) }
        return try body()
    }

    /// ``popping(_:_:)`` for async waiters.
    func popping<R>(_ key: String, _ body: () async throws -> R) async rethrows -> R {
        countPopping(key, by: 1)
        defer { countPopping(key, by: -1) }
        return try await body()
    }

    private func countPopping(_ key: String, by change: Int) {
        waiting.withLock { waiting in
            let count = (waiting.popping[key] ?? 0) + change
            waiting.popping[key] = count > 0 ? count : nil
        }
    }

    /// A new waiter for `key`, last in line: its signal fires when this
    /// client releases `key` while it is the oldest waiter.
    func enter(_ key: String) -> ReleaseSignal {
        let signal = ReleaseSignal()
        waiting.withLock { $0.sleepers[key, default: []].append(signal) }
        return signal
    }

    /// Takes `signal` out of `key`'s waiters (its wait ended, however).
    func leave(_ signal: ReleaseSignal, key: String) {
        waiting.withLock { waiting in
            guard var queue = waiting.sleepers[key], let index = queue.firstIndex(where: { $0 === signal }) else { return }
            queue.remove(at: index)
            waiting.sleepers[key] = queue.isEmpty ? nil : queue
        }
    }

    /// This client released `key`: wakes its oldest waiter without a
    /// `BLPOP`, unless one of its waiters is in a `BLPOP` for `key` (the
    /// release's signal wakes that one).
    func released(_ key: String) {
        let next = waiting.withLock { waiting -> ReleaseSignal? in
            guard waiting.popping[key] == nil, var queue = waiting.sleepers[key], let first = queue.popFirst() else { return nil }
            waiting.sleepers[key] = queue.isEmpty ? nil : queue
            return first
        }
        next?.signal()
    }
}
