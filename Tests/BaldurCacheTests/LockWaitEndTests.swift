import BaldurCache
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// Lock waits end when the service ends or the server stays away: a wait
/// never holds a service's shutdown, and never waits forever for a server
/// it cannot reach.
@Suite("Lock waits end", .serialized)
struct LockWaitEndTests {
    /// A service that waits (for a lock, or a value computed elsewhere) and records how the wait ended.
    struct Waiter: Service {
        let wait: @Sendable () async throws -> String
        let outcome = PlainMutex<String?>(nil)

        func run() async throws {
            do {
                let result = try await wait()
                outcome.withLock { $0 = result }
            } catch let error as RedisError {
                outcome.withLock { $0 = "\(error.code): \(error.message)" }
            } catch {
                outcome.withLock { $0 = "\(type(of: error))" }
            }
        }
    }

    /// Runs `waiter` in a service group, checks it is still waiting after
    /// 300 ms, shuts the group down gracefully, and returns how the wait
    /// ended and how long after the shutdown began.
    private func outcomeOfAShutdown(during waiter: Waiter) async throws -> (outcome: String, after: Duration) {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let group = ServiceGroup(configuration: .init(services: [.init(service: waiter, successTerminationBehavior: .gracefullyShutdownGroup)], logger: logger))
        let running = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(300))
        #expect(waiter.outcome.withLock { $0 } == nil, "still waiting before the shutdown")
        let shutdown = ContinuousClock.now
        await group.triggerGracefulShutdown()
        try await running.value
        return (waiter.outcome.withLock { $0 } ?? "none", ContinuousClock.now - shutdown)
    }

    @Test("a graceful shutdown ends an async lock wait with lockNotAcquired, while another holder keeps the lock", .timeLimit(.minutes(1)))
    func gracefulShutdownEndsALockWait() async throws {
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: "bctest:\(UUID().uuidString):")
        defer { cache.close() }
        let holder = cache.getLock("job", timeout: .seconds(600))
        #expect(try await holder.acquire(blocking: false))
        defer { try? blockingRelease(holder) }
        let lock = cache.getLock("job", timeout: .seconds(30))
        let (outcome, _) = try await outcomeOfAShutdown(during: Waiter { "acquired: \(try await lock.acquire())" })
        #expect(outcome.hasPrefix("lockNotAcquired") && outcome.contains("shutting down"), "\(outcome)")
    }

    @Test("a graceful shutdown ends getOrSet's wait for a value another process computes, without running the factory", .timeLimit(.minutes(1)))
    func gracefulShutdownEndsAGetOrSetWait() async throws {
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: "bctest:\(UUID().uuidString):")
        defer { cache.close() }
        // Another process won the election for "report" and is still computing it.
        let elsewhere = cache.getLock("singleflight:lock:report", timeout: .seconds(600))
        #expect(try await elsewhere.acquire(blocking: false))
        defer { try? blockingRelease(elsewhere) }
        let factoryRuns = Counter()
        let (outcome, after) = try await outcomeOfAShutdown(during: Waiter {
            let value = try await cache.getOrSet("report", as: Int.self, waitTimeout: .seconds(20)) {
                factoryRuns.value.add(1, ordering: .relaxed)
                return 42
            }
            return "value: \(value)"
        })
        #expect(outcome.hasPrefix("lockNotAcquired") && outcome.contains("shutting down"), "\(outcome)")
        // Half the waitTimeout: the whole test process once stalled 6 s under
        // ThreadSanitizer in CI (every test's log stopped), past a 5 s bound.
        #expect(after < .seconds(10), "the wait ended with the service, not at its 20 s waitTimeout")
        #expect(factoryRuns.value.load(ordering: .relaxed) == 0)
    }

    /// What ends a wait on a server that cannot be reached.
    enum OutageEnd: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// No wait limit: `lockOutageLimit` (1 s here) ends it.
        case outageLimit
        /// A `blockingTimeout` (0.5 s) that runs out first.
        case blockingTimeout
        var testDescription: String { rawValue }
    }

    @Test(
        "a lock wait on an unreachable server ends with the connection error, not 'not acquired' and not never: without a limit once lockOutageLimit passes, with one when it runs out",
        .timeLimit(.minutes(1)), arguments: Mode.allCases, OutageEnd.allCases
    )
    func unreachableServerEndsAWait(mode: Mode, end: OutageEnd) async throws {
        var configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: try freeLoopbackPort()))
        configuration.retry.lockOutageLimit = .seconds(1)
        configuration.connectTimeout = .milliseconds(200)
        let cache = try RedisCacheAdapter(client: RedisClient(configuration: configuration), keyPrefix: "bctest:")
        defer { cache.close() }
        let lock = cache.getLock("job", timeout: .seconds(30), blockingTimeout: end == .blockingTimeout ? .milliseconds(500) : nil)
        let failure: RedisError?
        switch mode {
        case .sync: failure = #expect(throws: RedisError.self) { try blockingAcquire(lock) }
        case .async: failure = await #expect(throws: RedisError.self) { try await lock.acquire() }
        }
        #expect(failure?.code == .connectionRefused, "\(String(describing: failure))")
    }

    @Test("a lock wait rides out a stall shorter than lockOutageLimit and acquires once the holder's lease ends", .timeLimit(.minutes(1)), arguments: Mode.allCases)
    func waitRidesOutAShortStall(mode: Mode) async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration(commandTimeout: .milliseconds(300))
        configuration.retry.lockOutageLimit = .seconds(20)
        let cache = try RedisCacheAdapter(client: RedisClient(configuration: configuration), keyPrefix: "bctest:")
        defer { cache.close() }
        let holder = cache.getLock("job", timeout: .seconds(2))
        #expect(try blockingAcquire(holder, blocking: false))
        let waiter = cache.getLock("job", timeout: .seconds(30))
        let acquiring = Task {
            switch mode {
            case .sync: try blockingAcquire(waiter)
            case .async: try await waiter.acquire()
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        server.pause()
        try await Task.sleep(for: .seconds(1))
        server.resume()
        #expect(try await acquiring.value, "acquired after the stall, once the holder's 2 s lease ended")
        try await waiter.release()
    }

    @Test("lockOutageLimit is range-checked: 1 s to 1 hour", .ownThread)
    func outageLimitIsRangeChecked() throws {
        for bad in [Duration.milliseconds(999), .seconds(3601), .seconds(-1)] {
            var configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: 6379))
            configuration.retry.lockOutageLimit = bad
            #expect(throws: RedisError.self) { try configuration.validate() }
        }
    }
}

/// The blocking calls, from async tests (where the async overloads win).
private func blockingAcquire(_ lock: DistributedLock, blocking: Bool = true) throws -> Bool { try lock.acquire(blocking: blocking) }
private func blockingRelease(_ lock: DistributedLock) throws { try lock.release() }

/// Waits for a dedicated connection end when their task is cancelled.
@Suite("Dedicated connection waits end")
struct DedicatedWaitTests {
    @Test("a task waiting for a dedicated connection (all held) ends at once with CancellationError when cancelled, not after pool.timeout", .timeLimit(.minutes(1)))
    func cancelledWaitForADedicatedConnectionEnds() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        // No socket timeout: the holder's BLPOP must not end on its own and hand the connection over.
        var configuration = try server.configuration(commandTimeout: nil)
        configuration.pool.maxConnections = 1
        configuration.pool.timeout = .seconds(600)
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let holding = Task {
            try await client.withConnection { connection in
                // Holds the one dedicated connection past the test's time limit.
                _ = try await connection.send(["BLPOP", "bctest:dedicated:never", "120"])
            }
        }
        try await Task.sleep(for: .milliseconds(300))
        let waiting = Task { try await client.withConnection { connection in try await connection.send(["PING"]) } }
        try await Task.sleep(for: .milliseconds(300))
        waiting.cancel()
        // Before the fix this waited for the holder (120 s) or poolTimeout (600 s): past the time limit.
        let result = await waiting.result
        #expect(throws: CancellationError.self) { try result.get() }
        holding.cancel()
        _ = await holding.result
    }
}
