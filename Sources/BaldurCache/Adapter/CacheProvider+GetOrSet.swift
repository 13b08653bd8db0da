import Foundation
import Synchronization

extension CacheProvider {
    /// Returns the cached value of `key`, or computes it with `factory`,
    /// stores it and returns it — stampede-safe: on a miss, many concurrent
    /// callers run `factory` once, not once each.
    ///
    /// - In this process, callers of the same key on the same provider share
    ///   one miss (single-flight): one caller does the work, the others get its
    ///   result or its error.
    /// - Across processes, a non-blocking lock (`singleflight:lock:<key>`)
    ///   elects one winner, which re-reads the key, runs `factory` and stores
    ///   the value. Losers poll the *value* (every ~50 ms, with jitter), retrying
    ///   the lock so that a crashed winner is replaced.
    /// - Fail-open: when the backend fails at any step, or `waitTimeout`
    ///   passes, the caller computes the value itself and stores it best-effort,
    ///   as Python Baldur does. `factory` may then run more than once; guard
    ///   side effects that must never repeat yourself.
    ///
    /// ```swift
    /// let profile = try cache.getOrSet("profile:42", ttl: .seconds(300)) {
    ///     try database.loadProfile(42)
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - key: The cache key.
    ///   - type: The value's type (inferred when the context names it).
    ///   - ttl: The TTL of a computed value (`nil`: the provider's default).
    ///   - lockTimeout: How long the winner's lock lives, bounding how long a crashed winner blocks takeover.
    ///   - waitTimeout: How long a loser waits for the winner's value before computing it itself.
    ///   - factory: Computes the value; its errors reach the caller (and this process's waiters).
    /// - Returns: The cached or computed value.
    // Disfavoured so that `async` code on a provider with both contracts
    // gets the suspending `getOrSet` even for a factory that does not await.
    @_disfavoredOverload
    public func getOrSet<T: Codable & Sendable>(
        _ key: String,
        as type: T.Type = T.self,
        ttl: Duration? = nil,
        lockTimeout: Duration = .seconds(10),
        waitTimeout: Duration = .seconds(10),
        factory: () throws -> T
    ) throws -> T {
        let telemetry = try getOrSetTelemetry(lockTimeout: lockTimeout, waitTimeout: waitTimeout)
        if let cached = try? get(key, as: T.self) {
            telemetry.cacheLookup("getOrSet", hits: 1, misses: 0)
            return cached
        }
        telemetry.cacheLookup("getOrSet", hits: 0, misses: 1)
        let flight = getOrSetFlight(key, as: T.self)
        return try telemetry.operation("getOrSet") {
            try SingleFlight.shared.run(flight) {
                try missPath(key, ttl: ttl, lockTimeout: lockTimeout, waitTimeout: waitTimeout, factory: factory)
            }
        }
    }

    /// The miss, as ``GetOrSetPlan`` decides it; `factory`'s errors
    /// propagate from outside the do/catch blocks, so it never runs twice for them.
    private func missPath<T: Codable & Sendable>(
        _ key: String, ttl: Duration?, lockTimeout: Duration, waitTimeout: Duration, factory: () throws -> T
    ) throws -> T {
        let lock = getLock("singleflight:lock:\(key)", timeout: lockTimeout, blockingTimeout: nil)
        var plan = GetOrSetPlan(waitTimeout: waitTimeout)
        var step = plan.start
        while true {
            switch step {
            case .elect:
                do { step = plan.elected(try lock.acquire(blocking: false)) } catch { step = try plan.failed(error) }
            case .poll(let pause):
                Thread.sleep(forTimeInterval: Double(pause.nanoseconds) / 1e9)
                do {
                    if let value = try get(key, as: T.self) { return value }
                    step = plan.polled(won: try lock.acquire(blocking: false))
                } catch {
                    step = try plan.failed(error)
                }
            case .computeAsWinner:
                return try computeAsWinner(key, ttl: ttl, lock: lock, factory: factory)
            case .lastLook:
                if let value = try? get(key, as: T.self) { return value }
                return try computeAndStore(key, ttl: ttl, factory: factory)
            case .compute:
                return try computeAndStore(key, ttl: ttl, factory: factory)
            }
        }
    }

    private func computeAsWinner<T: Codable & Sendable>(
        _ key: String, ttl: Duration?, lock: DistributedLock, factory: () throws -> T
    ) throws -> T {
        defer { try? lock.release() }  // a failed release expires with the lock's timeout
        if let value = try? get(key, as: T.self) { return value }
        return try computeAndStore(key, ttl: ttl, factory: factory)
    }

    private func computeAndStore<T: Codable & Sendable>(_ key: String, ttl: Duration?, factory: () throws -> T) throws -> T {
        let value = try factory()
        try? set(key, value, ttl: ttl)  // a value already computed is returned even if storing it fails
        return value
    }
}
