import Dispatch
import Foundation
import Synchronization

/// A lock over N independent Redis masters (antirez's Redlock): held when a
/// majority of the masters granted it within its validity time.
///
/// ```swift
/// let lock = try Redlock(key: "baldur:reports:nightly", ttl: .seconds(30),
///                        urls: ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"])
/// if let lease = try lock.acquire() {
///     defer { lock.release() }
///     // Safe to act until lease.validUntil, minus your own margin.
/// }
/// ```
///
/// - Every master gets `SET key owner NX PX ttl` at once, each with a
///   per-node timeout far below the TTL, so a dead node costs little.
/// - The lock is held when at least `N/2 + 1` masters said yes and the
///   validity left, `ttl - elapsed - drift` (monotonic clock; drift = 1% of
///   the TTL + 2 ms), is positive. ``RedlockLease/validity`` reports exactly that.
/// - A failed attempt releases the key on every master, including those
///   that did not answer in time, then retries after a random delay.
///
/// Redlock's safety rests on bounded clock drift and process pauses; for
/// correctness under long pauses, pair it with fencing tokens on the resource
/// (see `DistributedLock/acquireWithFencingToken(blocking:timeout:)`).
public final class Redlock: Sendable {
    /// The key set on every master.
    public let key: String
    /// This handle's owner token (128 random bits).
    public let owner: String
    /// How long each master keeps the key.
    public let ttl: Duration
    /// One client per independent master.
    public let clients: [RedisClient]
    /// How many masters must grant the lock: `N/2 + 1`.
    public var quorum: Int { clients.count / 2 + 1 }

    /// Creates a Redlock over existing clients.
    ///
    /// - Throws: ``RedisError/Code/invalidConfiguration`` when there is no
    ///   client, or a client's `commandTimeout` is missing or not well below
    ///   the TTL (at most a third of it).
    public init(key: String, ttl: Duration, clients: [RedisClient]) throws(RedisError) {
        guard !clients.isEmpty else { throw RedisError(.invalidConfiguration, "Redlock needs at least one Redis master") }
        _ = try ttl.checked("a Redlock TTL", in: .milliseconds(10)...Duration.longestAccepted)
        for client in clients {
            guard let timeout = client.configuration.commandTimeout, timeout * 3 <= ttl else {
                throw RedisError(.invalidConfiguration, "Redlock needs per-node socket timeouts of at most a third of the TTL (\(ttl)); \(client.configuration) has \(client.configuration.commandTimeout.map { "\($0)" } ?? "none")")
            }
        }
        self.key = key
        self.ttl = ttl
        self.clients = clients
        self.owner = DistributedLock.makeOwner()
    }

    /// Creates a Redlock over masters given by URL, with per-node connect and
    /// socket timeouts of a twentieth of the TTL (between 5 ms and 100 ms).
    public convenience init(key: String, ttl: Duration, urls: [String]) throws(RedisError) {
        let nodeTimeout = min(max(ttl / 20, .milliseconds(5)), .milliseconds(100))
        var clients: [RedisClient] = []
        for url in urls {
            var configuration = try RedisConfiguration(url: url)
            configuration.commandTimeout = nodeTimeout
            configuration.connectTimeout = nodeTimeout
            configuration.retry.onTimeout = false
            clients.append(try RedisClient(configuration: configuration))
        }
        try self.init(key: key, ttl: ttl, clients: clients)
    }

    /// Tries to take the lock on a majority of masters, up to `attempts` times.
    ///
    /// - Parameters:
    ///   - attempts: How many rounds to try (at least 1).
    ///   - retryDelay: The most to wait between rounds (a random part of it, to break ties).
    /// - Returns: The lease when held, `nil` when no round reached a quorum with validity left.
    /// - Throws: ``RedisError/Code/invalidArgument`` when `attempts` is not
    ///   1...1000 or `retryDelay` is not 0 to 1 hour.
    public func acquire(attempts: Int = 3, retryDelay: Duration = .milliseconds(200)) throws(RedisError) -> RedlockLease? {
        try checkAcquire(attempts: attempts, retryDelay: retryDelay)
        for attempt in 1...attempts {
            let start = ContinuousClock.now
            let granted = onEveryNode { client in (try? client.send(self.setCommand)) == .status("OK") }.filter { $0 }.count
            if let lease = lease(granted: granted, since: start) { return lease }
            release()
            if attempt < attempts { Thread.sleep(forTimeInterval: Double(pause(retryDelay).nanoseconds) / 1e9) }
        }
        return nil
    }

    /// Takes the lock as ``acquire(attempts:retryDelay:)-(_,_)`` does, asking
    /// every master at once from child tasks; no thread waits.
    public func acquire(attempts: Int = 3, retryDelay: Duration = .milliseconds(200)) async throws -> RedlockLease? {
        try checkAcquire(attempts: attempts, retryDelay: retryDelay)
        for attempt in 1...attempts {
            let start = ContinuousClock.now
            let command = setCommand
            let granted = await withTaskGroup(of: Bool.self) { group in
                for client in clients { group.addTask { (try? await client.send(command)) == .status("OK") } }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            if let lease = lease(granted: granted, since: start) { return lease }
            await release()
            if attempt < attempts { try await Task.sleep(for: pause(retryDelay)) }
        }
        return nil
    }

    /// Releases on every master at once, as ``release()-()`` does.
    public func release() async {
        let (key, owner) = (key, owner)
        await withTaskGroup(of: Void.self) { group in
            for client in clients {
                group.addTask {
                    _ = try? await BaldurScripts.releaseLock.run(
                        on: client, keys: [RedisArgument(key), RedisLockStore.signalKey(key)], arguments: [RedisArgument(owner)]
                    )
                }
            }
        }
    }

    private func checkAcquire(attempts: Int, retryDelay: Duration) throws(RedisError) {
        guard (1...1000).contains(attempts) else {
            throw RedisError(.invalidArgument, "Redlock attempts must be between 1 and 1000, not \(attempts)")
        }
        _ = try retryDelay.checked("a Redlock retry delay", in: .zero...(.seconds(3600)))
    }

    /// `SET key owner NX PX ttl`.
    private var setCommand: [RedisArgument] {
        ["SET", RedisArgument(key), RedisArgument(owner), "NX", "PX", RedisArgument(ttl.wholeMillisecondsRoundedUp)]
    }

    /// The lease when `granted` nodes make a quorum with validity left after the round that began at `start`.
    private func lease(granted: Int, since start: ContinuousClock.Instant) -> RedlockLease? {
        let elapsed = ContinuousClock.now - start
        let drift = ttl * 0.01 + .milliseconds(2)
        let validity = ttl - elapsed - drift
        guard granted >= quorum, validity > .zero else { return nil }
        return RedlockLease(validity: validity, validUntil: start + ttl - drift, grantedBy: granted, of: clients.count)
    }

    /// A random part of `retryDelay`, to break ties between contenders.
    private func pause(_ retryDelay: Duration) -> Duration {
        .milliseconds(retryDelay.wholeMillisecondsRoundedUp) * Double.random(in: 0.1...1)
    }

    /// Deletes the key on every master where it still holds this owner (the
    /// compare-and-delete script). Errors on unreachable masters are ignored:
    /// the key expires there by itself.
    public func release() {
        _ = onEveryNode { client in
            (try? BaldurScripts.releaseLock.run(on: client, keys: [RedisArgument(self.key), RedisLockStore.signalKey(self.key)],
                                                arguments: [RedisArgument(self.owner)])) != nil
        }
    }

    /// Closes every client.
    public func close() {
        for client in clients { client.close() }
    }

    /// Runs `body` against every master at once, each on a thread of its own.
    private func onEveryNode(_ body: @escaping @Sendable (RedisClient) -> Bool) -> [Bool] {
        let outcomes = Outcomes(count: clients.count)
        let clients = self.clients
        runOnThreads(clients.count) { index in
            let outcome = body(clients[index])
            outcomes.values.withLock { $0[index] = outcome }
        }
        return outcomes.values.withLock { $0 }
    }

    private final class Outcomes: Sendable {
        let values: PlainMutex<[Bool]>
        init(count: Int) { values = PlainMutex([Bool](repeating: false, count: count)) }
    }
}

/// A held ``Redlock``.
public struct RedlockLease: Sendable, Hashable {
    /// The validity left when the lock was acquired: TTL - elapsed - drift.
    public let validity: Duration
    /// The monotonic instant after which the lock must be assumed lost.
    public let validUntil: ContinuousClock.Instant
    /// How many masters granted the lock.
    public let grantedBy: Int
    /// How many masters there are.
    public let of: Int

    /// The validity left now.
    public var remainingValidity: Duration { max(ContinuousClock.now.duration(to: validUntil), .zero) }
}
