import Foundation
import Synchronization

/// Where a ``DistributedLock`` keeps its key: Redis for ``RedisCacheAdapter``,
/// process memory for ``InMemoryCacheAdapter``.
protocol LockStore: Sendable {
    /// `SET key owner NX PX ttl`: `true` when this owner now holds the lock.
    func tryAcquire(key: String, owner: String, ttl: Duration) throws(RedisError) -> Bool
    /// Deletes the key iff it holds `owner`: `true` when deleted.
    func release(key: String, owner: String) throws(RedisError) -> Bool
    /// Sets (or adds to) the key's time to live iff it holds `owner`: `true` when done.
    func extend(key: String, owner: String, by duration: Duration, adding: Bool) throws(RedisError) -> Bool
    /// The owner stored at `key`, or `nil` when nobody holds it.
    func owner(key: String) throws(RedisError) -> String?
}

/// A lock shared by every process that uses the same key: Python Baldur
/// services included (same key, same `SET NX PX` protocol).
///
/// Get one from ``CacheProvider/getLock(_:timeout:blockingTimeout:)``; the
/// storage key is resolved once, there, and never shifts afterwards.
///
/// ```swift
/// let lock = cache.getLock("payments:settle", timeout: .seconds(30))
/// try lock.withLock {
///     try settlePayments()
/// }
/// ```
///
/// The lock expires after `timeout` even if its holder dies; a holder that
/// runs longer must ``extend(by:)`` or ``extend(to:)`` in time. Release and
/// extend check ownership atomically (one Lua script), so a holder whose lock
/// expired and was taken by someone else never deletes the other owner's key:
/// it gets ``RedisError/Code/lockNotOwned`` instead.
public final class DistributedLock: Sendable {
    /// The storage key, prefix included.
    public let key: String
    /// This handle's owner token: `host:pid:swift:<128 random bits in hex>`.
    /// It belongs to the handle, not to a thread.
    public let owner: String
    /// How long the lock lives without an extension (`PX`).
    public let timeout: Duration
    /// How long ``acquire(blocking:timeout:)`` waits by default; `nil` waits forever.
    public let blockingTimeout: Duration?

    private let store: any LockStore
    private let held = Atomic<Bool>(false)

    init(key: String, store: any LockStore, timeout: Duration, blockingTimeout: Duration?) {
        self.key = key
        self.store = store
        self.timeout = timeout
        self.blockingTimeout = blockingTimeout
        self.owner = Self.makeOwner()
    }

    /// Takes the lock: `SET key owner NX PX timeout`, retried while blocking.
    ///
    /// - Parameters:
    ///   - blocking: `false` tries once.
    ///   - timeout: How long to wait when blocking; defaults to the lock's `blockingTimeout`
    ///     (`nil` there: forever).
    /// - Returns: `true` when this handle now holds the lock.
    /// - Throws: ``RedisError`` when the store cannot be reached.
    @discardableResult
    public func acquire(blocking: Bool = true, timeout: Duration? = nil) throws(RedisError) -> Bool {
        guard self.timeout >= .milliseconds(1) else {
            throw RedisError(.invalidArgument, "a lock timeout must be at least 1 ms, not \(self.timeout)")
        }
        let wait = timeout ?? blockingTimeout
        let deadline = wait.map { ContinuousClock.now + $0 }
        var pause = Duration.milliseconds(2)
        while true {
            if try store.tryAcquire(key: key, owner: owner, ttl: self.timeout) {
                held.store(true, ordering: .releasing)
                return true
            }
            guard blocking else { return false }
            let now = ContinuousClock.now
            if let deadline, now >= deadline { return false }
            // Back off from 2 ms to 100 ms with jitter, never past the deadline.
            var sleep = pause * Double.random(in: 0.8...1.2)
            if let deadline, now + sleep > deadline { sleep = deadline - now }
            Thread.sleep(forTimeInterval: Double(sleep.components.seconds) + Double(sleep.components.attoseconds) / 1e18)
            pause = min(pause * 2, .milliseconds(100))
        }
    }

    /// Releases the lock: one script deletes the key only if it still holds this owner.
    ///
    /// - Throws: ``RedisError/Code/lockNotOwned`` when this handle does not
    ///   hold the lock (never acquired, already released, or expired and
    ///   perhaps taken by someone else, whose key is left alone).
    public func release() throws(RedisError) {
        let wasHeld = held.exchange(false, ordering: .acquiringAndReleasing)
        guard wasHeld else {
            throw RedisError(.lockNotOwned, "lock '\(key)' is not held by this handle")
        }
        guard try store.release(key: key, owner: owner) else {
            throw RedisError(.lockNotOwned, "lock '\(key)' expired before it was released; another owner may hold it")
        }
    }

    /// `true` when anyone holds the lock (`EXISTS`-like).
    public func locked() throws(RedisError) -> Bool {
        try store.owner(key: key) != nil
    }

    /// `true` when this handle holds the lock now (the stored owner is this handle's token).
    public func owned() throws(RedisError) -> Bool {
        try store.owner(key: key) == owner
    }

    /// Adds `duration` to the lock's remaining time (`PTTL` + `PEXPIRE`, in one script).
    ///
    /// - Throws: ``RedisError/Code/lockNotOwned`` when this handle does not hold the lock.
    public func extend(by duration: Duration) throws(RedisError) {
        try extend(duration, adding: true)
    }

    /// Sets the lock's remaining time to `duration` (`PEXPIRE`, in one script),
    /// as Python's `extend` does.
    ///
    /// - Throws: ``RedisError/Code/lockNotOwned`` when this handle does not hold the lock.
    public func extend(to duration: Duration) throws(RedisError) {
        try extend(duration, adding: false)
    }

    /// Runs `body` while holding the lock and releases it on every path, throws included.
    ///
    /// - Throws: ``RedisError/Code/lockNotAcquired`` when the lock could not be
    ///   had within `blockingTimeout`; whatever `body` throws; and
    ///   ``RedisError/Code/lockNotOwned`` when `body` succeeded but the lock
    ///   had expired before the release (the critical section was not exclusive to the end).
    public func withLock<R>(_ body: () throws -> R) throws -> R {
        guard try acquire() else {
            throw RedisError(.lockNotAcquired, "lock '\(key)' was not acquired within \(blockingTimeout.map { "\($0)" } ?? "the wait")")
        }
        let result: R
        do {
            result = try body()
        } catch {
            try? release()
            throw error
        }
        try release()
        return result
    }

    private func extend(_ duration: Duration, adding: Bool) throws(RedisError) {
        guard duration >= .milliseconds(1) else {
            throw RedisError(.invalidArgument, "a lock extension must be at least 1 ms, not \(duration)")
        }
        guard held.load(ordering: .acquiring) else {
            throw RedisError(.lockNotOwned, "lock '\(key)' is not held by this handle")
        }
        guard try store.extend(key: key, owner: owner, by: duration, adding: adding) else {
            held.store(false, ordering: .releasing)
            throw RedisError(.lockNotOwned, "lock '\(key)' expired before it was extended; another owner may hold it")
        }
    }

    private static func makeOwner() -> String {
        var generator = SystemRandomNumberGenerator()
        let random = (0..<2).map { _ in String(generator.next() as UInt64, radix: 16).leftPadded(to: 16) }.joined()
        return "\(ProcessInfo.processInfo.hostName):\(getpid()):swift:\(random)"
    }
}

extension String {
    func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so that a positive duration never becomes 0.
    var wholeMillisecondsRoundedUp: Int64 {
        let (seconds, attoseconds) = components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return attoseconds % 1_000_000_000_000_000 > 0 ? milliseconds + 1 : milliseconds
    }
}
