import ServiceLifecycle

/// The lock's `async` calls: the same protocol and rules as the blocking
/// ones, but a waiting task suspends (on the lock's signal list, `BLPOP` on
/// a dedicated connection, or a timer) and holds no thread.
extension DistributedLock {
    /// Takes the lock (`SET key owner NX PX timeout`), waiting without
    /// blocking a thread; see ``acquire(blocking:timeout:)-(_,_)``.
    ///
    /// - Throws: as the blocking form; `CancellationError` when the task is
    ///   cancelled while it waits, and ``RedisError/Code/lockNotAcquired``
    ///   when the service it runs in (swift-service-lifecycle's
    ///   `ServiceGroup`) shuts down gracefully while it waits: a wait never
    ///   holds a service's shutdown. The lock is then not held.
    @discardableResult
    public func acquire(blocking: Bool = true, timeout: Duration? = nil) async throws -> Bool {
        try await acquire(blocking: blocking, timeout: timeout, fenced: false) != nil
    }

    /// Takes the lock and returns a fencing token (one script: `SET NX PX`
    /// and `INCR key:fence`); see ``acquireWithFencingToken(blocking:timeout:)-(_,_)``.
    public func acquireWithFencingToken(blocking: Bool = true, timeout: Duration? = nil) async throws -> Int64? {
        try await acquire(blocking: blocking, timeout: timeout, fenced: true)
    }

    private func acquire(blocking: Bool, timeout: Duration?, fenced: Bool) async throws -> Int64? {
        var plan = try beginAcquire(blocking: blocking, timeout: timeout)
        var step = plan.next()
        while true {
            switch step {
            case .attempt(let afterDoubt):
                do {
                    if let token = try await attempt(fenced: fenced, afterDoubt: afterDoubt) {
                        return acquired(token, fenced: fenced, plan: plan)
                    }
                    step = plan.refused(telemetry: store.telemetry)
                } catch let error as RedisError {
                    step = try plan.failed(error, attempting: true)
                } catch {
                    // Cancelled while the SET was in flight: it may have
                    // landed. Delete the key if it is ours, so the lock is
                    // not held for its whole timeout by nobody.
                    let (store, key, owner) = (store, key, owner)
                    Task.detached { _ = try? await store.release(key: key, owner: owner) }
                    throw error
                }
            case .waitForRelease(let pause):
                do {
                    let (store, key) = (store, key)
                    try await endingAtShutdown { try await store.waitForRelease(key: key, timeout: pause) }
                    step = plan.waited()
                } catch let error as RedisError {
                    step = try plan.failed(error, attempting: false)
                }
            case .sleep(let delay):
                try await endingAtShutdown { try await Task.sleep(for: delay) }
                step = plan.next()
            case .giveUp:
                return nil
            case .fail(let error):
                throw error
            }
        }
    }

    /// Runs one wait, cancelled when the service this task runs in begins a
    /// graceful shutdown; the cancellation then surfaces as `lockNotAcquired`.
    private func endingAtShutdown(_ wait: @escaping @Sendable () async throws -> Void) async throws {
        do {
            try await cancelWhenGracefulShutdown(wait)
        } catch is CancellationError where Task.isShuttingDownGracefully && !Task.isCancelled {
            throw RedisError(.lockNotAcquired, "gave up waiting for lock '\(key)': the service is shutting down")
        }
    }

    private func attempt(fenced: Bool, afterDoubt inDoubt: Bool) async throws -> Int64? {
        let token: Int64?
        if fenced {
            token = try await store.tryAcquireFenced(key: key, owner: owner, ttl: timeout)
        } else {
            token = try await store.tryAcquire(key: key, owner: owner, ttl: timeout) ? 0 : nil
        }
        guard token == nil, inDoubt, try await store.owner(key: key) == owner else { return token }
        return fenced ? try await store.currentFencingToken(key: key) : 0
    }

    /// Releases the lock (one script: compare-and-delete, then signal one
    /// waiter); see ``release()-()``.
    public func release() async throws {
        let inDoubt = try beginRelease()
        let outcome: LockReleaseOutcome
        do {
            outcome = try await store.release(key: key, owner: owner)
        } catch let error as RedisError {
            releaseFailed(error)
            throw error
        }
        try finishRelease(outcome, inDoubt: inDoubt)
    }

    /// `true` when anyone holds the lock (`GET`).
    public func locked() async throws -> Bool {
        try await store.owner(key: key) != nil
    }

    /// `true` when this handle holds the lock now (`GET`).
    public func owned() async throws -> Bool {
        try await store.owner(key: key) == owner
    }

    /// Adds `duration` to the lock's remaining time (one script).
    public func extend(by duration: Duration) async throws {
        try await extend(duration, adding: true)
    }

    /// Sets the lock's remaining time to `duration` (one script, `PEXPIRE`).
    public func extend(to duration: Duration) async throws {
        try await extend(duration, adding: false)
    }

    private func extend(_ duration: Duration, adding: Bool) async throws {
        try beginExtend(duration)
        guard try await store.extend(key: key, owner: owner, by: duration, adding: adding) else { throw extensionRefused() }
    }

    /// Runs `body` while holding the lock and releases it on every path:
    /// success, a thrown error, or cancellation.
    ///
    /// ```swift
    /// try await cache.getLock("payments:settle", timeout: .seconds(30)).withLock(autoRenew: true) {
    ///     try await settlePayments()
    /// }
    /// ```
    ///
    /// - Throws: ``RedisError/Code/lockNotAcquired`` when the lock could not
    ///   be had within `blockingTimeout`; whatever `body` throws; and
    ///   ``RedisError/Code/lockNotOwned`` when the lock was lost before the release.
    public func withLock<R>(autoRenew: Bool = false, _ body: sending () async throws -> R) async throws -> R {
        guard try await acquire() else { throw notAcquired() }
        if autoRenew {
            do { try startAutoRenewal() } catch {
                try? await release()
                throw error
            }
        }
        let result: R
        do {
            result = try await body()
        } catch {
            try? await release()
            throw error
        }
        try await release()
        return result
    }
}
