import Logging
@testable import BaldurCache
import Dispatch
import Foundation
import Synchronization
import Testing

/// Hardening: lock waits ride out transient faults, never starve the pool,
/// never act after their deadline, and renewals of one lock never wait for
/// another's.
@Suite("Locks under faults")
struct LockFaultTests {
    @Test("blocking waiters ride out a server restart: connection errors inside the wait are retried until the budget is spent", .ownThread)
    func waitersSurviveRestart() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let cache = try RedisCacheAdapter(client: RedisClient(configuration: server.configuration(commandTimeout: .seconds(2))), keyPrefix: "")
        defer { cache.close() }
        let holder = cache.getLock("restart", timeout: .seconds(30))
        try holder.acquire()
        let acquired = Atomic<Int>(0)
        let failures = PlainMutex<[String]>([])
        let waiting = DispatchGroup()
        for _ in 0..<4 {
            waiting.enter()
            Thread {
                defer { waiting.leave() }
                let waiter = cache.getLock("restart", timeout: .seconds(30))
                do {
                    guard try waiter.acquire(timeout: .seconds(20)) else { return failures.withLock { $0.append("not acquired") } }
                    acquired.add(1, ordering: .relaxed)
                    try waiter.release()
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }.start()
        }
        Thread.sleep(forTimeInterval: 0.3)
        // The restart loses the holder's key (no persistence): the waiters may take it once the server is back.
        server.kill()
        Thread.sleep(forTimeInterval: 0.4)
        try server.start()
        waiting.wait()
        #expect(failures.withLock { $0 } == [])
        #expect(acquired.load(ordering: .relaxed) == 4)
    }

    @Test("a renewal stuck on a stalled server does not delay another lock's renewal on a healthy one", .ownThread)
    func renewalsAreIndependent() throws {
        let stalled = try TestRedisServer()
        defer { stalled.stop() }
        let slowCache = try RedisCacheAdapter(client: RedisClient(configuration: stalled.configuration(commandTimeout: .seconds(2))), keyPrefix: TestKeys().prefix)
        defer { slowCache.close() }
        let healthyCache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: TestKeys().prefix)
        defer { healthyCache.close() }

        let slow = slowCache.getLock("slow", timeout: .seconds(30))
        try slow.acquire()
        try slow.startAutoRenewal(every: .milliseconds(50))
        let quick = healthyCache.getLock("quick", timeout: .milliseconds(600))
        try quick.acquire()
        try quick.startAutoRenewal(every: .milliseconds(150))
        stalled.pause()
        defer { stalled.resume() }
        // The stalled server holds each of the slow lock's renewals for 2 s;
        // the quick lock's 600 ms lease must be renewed throughout.
        Thread.sleep(forTimeInterval: 1.8)
        #expect(quick.lostError == nil)
        #expect(try quick.owned())
        try quick.release()
    }

    @Test("four times maxConnections lock waiters leave the pool to other traffic: every get succeeds while they wait", .ownThread)
    func waitersDoNotStarveThePool() throws {
        var configuration = try TestEnvironment.configuration()
        configuration.pool.maxConnections = 4
        configuration.pool.timeout = .milliseconds(500)
        configuration.commandTimeout = .seconds(5)
        let cache = try RedisCacheAdapter(client: RedisClient(configuration: configuration), keyPrefix: TestKeys().prefix)
        defer {
            _ = try? cache.flushAll()
            cache.close()
        }
        let holder = cache.getLock("busy", timeout: .seconds(30))
        try holder.acquire()
        try cache.set("value", 7, ttl: .seconds(60))
        let waiting = DispatchGroup()
        for _ in 0..<16 {
            waiting.enter()
            Thread {
                defer { waiting.leave() }
                _ = try? cache.getLock("busy", timeout: .seconds(30)).acquire(timeout: .seconds(2.5))
            }.start()
        }
        Thread.sleep(forTimeInterval: 0.3)
        var errors: [RedisError.Code] = []
        for _ in 0..<20 {
            do { _ = try cache.get("value", as: Int.self) } catch { errors.append(error.code) }
            Thread.sleep(forTimeInterval: 0.05)
        }
        waiting.wait()
        #expect(errors == [])
        try holder.release()
    }

    @Test("no SET NX is attempted once the wait is over: a lock freed by expiry just after the deadline is not taken late", .ownThread, arguments: Provider.allCases)
    func noAttemptAfterDeadline(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let holder = cache.getLock("deadline", timeout: .milliseconds(200))
            try holder.acquire()
            // Polls every 60 s, so only the deadline ends its one wait; the
            // holder's key expires (no signal) 50 ms before that deadline.
            let template = cache.getLock("deadline", timeout: .seconds(30))
            let store: any LockStore = (cache as? RedisCacheAdapter).map { RedisLockStore(client: $0.rawClient) } ?? template.store
            let waiter = DistributedLock(key: template.key, store: store, timeout: .seconds(30), blockingTimeout: nil, pollInterval: .seconds(60))
            #expect(try !waiter.acquire(timeout: .milliseconds(250)))
            #expect(try !waiter.owned())
        }
    }

    @Test("a release that timed out can be retried on the same handle, and the retry releases the lock", .ownThread)
    func releaseRetriesAfterTimeout() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration(commandTimeout: .milliseconds(300))
        configuration.retry.onTimeout = false
        let cache = try RedisCacheAdapter(client: RedisClient(configuration: configuration), keyPrefix: "")
        defer { cache.close() }
        let lock = cache.getLock("retry-release", timeout: .seconds(30))
        try lock.acquire()
        server.pause()
        let error = #expect(throws: RedisError.self) { try lock.release() }
        #expect(error?.code == .readTimeout)
        server.resume()
        try lock.release()
        #expect(try !lock.locked())
        // Released for good: a third release is lockNotOwned.
        #expect((#expect(throws: RedisError.self) { try lock.release() })?.code == .lockNotOwned)
    }

    @Test("a second acquire on a handle that holds the lock is invalidArgument at once, not a wait on itself", .ownThread, arguments: Provider.allCases)
    func secondAcquireIsAnError(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let lock = cache.getLock("twice", timeout: .seconds(30))
            try lock.acquire()
            let start = ContinuousClock.now
            let error = #expect(throws: RedisError.self) { try lock.acquire(blocking: true, timeout: .seconds(3)) }
            #expect(error?.code == .invalidArgument)
            #expect(ContinuousClock.now - start < .seconds(2))
            #expect(try lock.owned())
            try lock.release()
            #expect(try lock.acquire(blocking: false))
            try lock.release()
        }
    }

    @Test("a fenced acquire whose reply was lost is recognised on the next attempt: the lock and its token are this handle's", .ownThread)
    func lostAcquireReplyIsRecognised() throws {
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: TestKeys().prefix)
        defer {
            _ = try? cache.flushAll()
            cache.close()
        }
        let lock = cache.getLock("in-doubt", timeout: .seconds(30))
        // As if a first fenced attempt had run on the server and its reply had been lost.
        let store = RedisLockStore(client: cache.rawClient)
        let token = try #require(try store.tryAcquireFenced(key: lock.key, owner: lock.owner, ttl: .seconds(30)))
        // The same owner retries through a store whose next attempt fails as a dropped connection would.
        let recovering = DistributedLock(key: lock.key, store: FailOnce(store), timeout: .seconds(30), blockingTimeout: .seconds(2), owner: lock.owner)
        #expect(try recovering.acquireWithFencingToken() == token)
        #expect(try recovering.owned())
        try recovering.release()
    }
}

/// A Redis lock store whose first acquire attempt fails with a dropped connection.
private final class FailOnce: LockStore {
    let base: RedisLockStore
    let failed = Atomic<Bool>(false)
    init(_ base: RedisLockStore) { self.base = base }
    private func failFirst() throws(RedisError) {
        if !failed.exchange(true, ordering: .relaxed) { throw RedisError(.connectionClosed, "dropped (test)") }
    }
    func tryAcquire(key: String, owner: String, ttl: Duration) throws(RedisError) -> Bool {
        try failFirst()
        return try base.tryAcquire(key: key, owner: owner, ttl: ttl)
    }
    func tryAcquireFenced(key: String, owner: String, ttl: Duration) throws(RedisError) -> Int64? {
        try failFirst()
        return try base.tryAcquireFenced(key: key, owner: owner, ttl: ttl)
    }
    func release(key: String, owner: String) throws(RedisError) -> LockReleaseOutcome { try base.release(key: key, owner: owner) }
    func extend(key: String, owner: String, by duration: Duration, adding: Bool) throws(RedisError) -> Bool {
        try base.extend(key: key, owner: owner, by: duration, adding: adding)
    }
    func owner(key: String) throws(RedisError) -> String? { try base.owner(key: key) }
    var telemetry: Telemetry { base.telemetry }
    var outageLimit: Duration { base.outageLimit }
    var logger: Logger? { base.logger }
    func currentFencingToken(key: String) throws(RedisError) -> Int64 { try base.currentFencingToken(key: key) }
    func waitForRelease(key: String, timeout: Duration) throws(RedisError) { try base.waitForRelease(key: key, timeout: timeout) }
}
