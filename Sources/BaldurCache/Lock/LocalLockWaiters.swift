import DequeModule

/// The lock waiters of one client that are not in a `BLPOP` (the
/// ``BlockingWaiterBudget`` is spent), by lock key, oldest first.
///
/// A release this client makes wakes the key's oldest such waiter at once,
/// so a handoff between the client's own callers never waits for the poll
/// interval; the release's signal in Redis (`{key}:signal`) still wakes a
/// `BLPOP` waiter, here or in another process. A release by another process
/// reaches these waiters through a `BLPOP` waiter of this client that took
/// the lock and released it in turn, or at the poll interval.
final class LocalLockWaiters: Sendable {
    private let waiting = PlainMutex<[String: Deque<ReleaseSignal>]>([:])

    /// A new waiter for `key`, last in line: its signal fires when this
    /// client releases `key` while it is the oldest waiter.
    func enter(_ key: String) -> ReleaseSignal {
        let signal = ReleaseSignal()
        waiting.withLock { $0[key, default: []].append(signal) }
        return signal
    }

    /// Takes `signal` out of `key`'s waiters (its wait ended, however).
    func leave(_ signal: ReleaseSignal, key: String) {
        waiting.withLock { waiting in
            guard var queue = waiting[key], let index = queue.firstIndex(where: { $0 === signal }) else { return }
            queue.remove(at: index)
            waiting[key] = queue.isEmpty ? nil : queue
        }
    }

    /// This client released `key`: wakes its oldest waiter.
    func released(_ key: String) {
        let next = waiting.withLock { waiting -> ReleaseSignal? in
            guard var queue = waiting[key], let first = queue.popFirst() else { return nil }
            waiting[key] = queue.isEmpty ? nil : queue
            return first
        }
        next?.signal()
    }
}
