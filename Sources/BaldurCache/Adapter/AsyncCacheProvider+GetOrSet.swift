import ServiceLifecycle

extension AsyncCacheProvider {
    /// Returns the cached value of `key`, or computes it with `factory`,
    /// stores it and returns it, stampede-safe, without blocking a thread:
    /// the rules of the synchronous ``CacheProvider/getOrSet(_:as:ttl:lockTimeout:waitTimeout:factory:)``
    /// (one computation per process by single-flight, one per fleet by the
    /// `singleflight:lock:<key>` lock, fail-open), with waiting callers suspended.
    ///
    /// ```swift
    /// let profile = try await cache.getOrSet("profile:42", ttl: .seconds(300)) {
    ///     try await database.loadProfile(42)
    /// }
    /// ```
    ///
    /// - Returns: The cached or computed value.
    /// - Throws: whatever `factory` throws; `invalidArgument` for an
    ///   out-of-range timeout; `CancellationError` when the task is cancelled;
    ///   ``RedisError/Code/lockNotAcquired`` when the service shuts down
    ///   gracefully (swift-service-lifecycle) while another process computes
    ///   the value and this call waits for it.
    public func getOrSet<T: Codable & Sendable>(
        _ key: String,
        as type: T.Type = T.self,
        ttl: Duration? = nil,
        lockTimeout: Duration = .seconds(10),
        waitTimeout: Duration = .seconds(10),
        factory: sending () async throws -> T
    ) async throws -> T {
        let telemetry = try getOrSetTelemetry(lockTimeout: lockTimeout, waitTimeout: waitTimeout)
        if let cached = try? await get(key, as: T.self) {
            telemetry.cacheLookup("getOrSet", hits: 1, misses: 0)
            return cached
        }
        telemetry.cacheLookup("getOrSet", hits: 0, misses: 1)
        let flight = getOrSetFlight(key, as: T.self)
        return try await telemetry.operation("getOrSet") {
            while true {
                do {
                    return try await AsyncSingleFlight.shared.run(flight) {
                        try await missPath(key, ttl: ttl, lockTimeout: lockTimeout, waitTimeout: waitTimeout, factory: factory)
                    }
                } catch is AsyncSingleFlight.Retry {
                    if let cached = try? await get(key, as: T.self) { return cached }
                }
            }
        }
    }

    /// The miss, as ``GetOrSetPlan`` decides it (factory errors propagate).
    private func missPath<T: Codable & Sendable>(
        _ key: String, ttl: Duration?, lockTimeout: Duration, waitTimeout: Duration, factory: () async throws -> T
    ) async throws -> T {
        let lock = getLock("singleflight:lock:\(key)", timeout: lockTimeout, blockingTimeout: nil)
        var plan = GetOrSetPlan(waitTimeout: waitTimeout)
        var step = plan.start
        while true {
            switch step {
            case .elect:
                do { step = plan.elected(try await lock.acquire(blocking: false)) } catch { step = try plan.failed(error) }
            case .poll(let pause):
                // Checked every poll, so a graceful shutdown ends the wait
                // without a task watching for it.
                if Task.isShuttingDownGracefully {
                    throw RedisError(.lockNotAcquired, "gave up waiting for '\(key)' to be computed elsewhere: the service is shutting down")
                }
                try await Task.sleep(for: pause)
                do {
                    if let value = try await get(key, as: T.self) { return value }
                    step = plan.polled(won: try await lock.acquire(blocking: false))
                } catch {
                    step = try plan.failed(error)
                }
            case .computeAsWinner:
                return try await computeAsWinner(key, ttl: ttl, lock: lock, factory: factory)
            case .lastLook:
                if let value = try? await get(key, as: T.self) { return value }
                return try await computeAndStore(key, ttl: ttl, factory: factory)
            case .compute:
                return try await computeAndStore(key, ttl: ttl, factory: factory)
            }
        }
    }

    private func computeAsWinner<T: Codable & Sendable>(
        _ key: String, ttl: Duration?, lock: DistributedLock, factory: () async throws -> T
    ) async throws -> T {
        let result: Result<T, any Error>
        do {
            if let value = try? await get(key, as: T.self) {
                result = .success(value)
            } else {
                result = .success(try await computeAndStore(key, ttl: ttl, factory: factory))
            }
        } catch {
            result = .failure(error)
        }
        try? await lock.release()  // a failed release expires with the lock's timeout
        return try result.get()
    }

    private func computeAndStore<T: Codable & Sendable>(_ key: String, ttl: Duration?, factory: () async throws -> T) async throws -> T {
        let value = try await factory()
        try? await set(key, value, ttl: ttl)  // a value already computed is returned even if storing it fails
        return value
    }
}
